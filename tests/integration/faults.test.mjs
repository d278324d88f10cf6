// Backend faults under traffic: PostgreSQL, Redis and the Kafka broker (a real
// one: SIGKILLed and restarted on its log directory, and hung by SIGSTOP) go away
// for a few seconds while clients keep sending. Throughout, every message gets
// an ack (ok, or unavailable and then retried with the same id) within the
// request deadline, the node recovers by itself (/readyz 200 again, live
// delivery again, supervisor restarts counted), and at the end every acked
// message is in PostgreSQL exactly once, with dense seqs per room (PROTOCOL.md
// "Guarantees" 1, 2 and 4).
import assert from 'node:assert/strict';
import {
    useCluster, connect, emitAck, waitFor, httpGet, uniq, until, sleep, slow, parseMetrics, metricSum,
} from './cluster.mjs';

const REQUEST_TIMEOUT = 2000;
const PRODUCE_TIMEOUT = 2000;
// an ack may take the produce deadline plus the request deadline; more is a hang
const ACK_DEADLINE = slow(REQUEST_TIMEOUT + PRODUCE_TIMEOUT + 2000);

const ctx = useCluster({
    nodes: 1,
    partitions: 4,
    args: ['--request-timeout-ms', String(REQUEST_TIMEOUT), '--produce-timeout-ms', String(PRODUCE_TIMEOUT),
        '--rate', '100000', '--rate-burst', '100000'],
});
const it = ctx.it;

const allAcked = []; // {room, user, id, text} of every ok ack, all scenarios
const allRooms = new Set();

class Traffic {
    constructor(url, { clients = 4, rooms = 3, pauseMs = 10 } = {}) {
        this.url = url;
        this.rooms = Array.from({ length: rooms }, () => uniq('flt'));
        for (const r of this.rooms) allRooms.add(r);
        this.pauseMs = pauseMs;
        this.acked = [];
        this.codes = {};
        this.hangs = [];
        this.unexpected = [];
        this.retried = 0;
        this.maxAckMs = 0;
        this.stopping = false;
        this.watcher = null;
        this.clients = Array.from({ length: clients }, (_, k) => this.client(`fu${k}`));
    }

    async joinAll(s) {
        for (const room of this.rooms) {
            for (;;) {
                let a;
                try { a = await emitAck(s, 'join', { room }, ACK_DEADLINE); } catch (e) {
                    if (!s.connected) return false;
                    this.hangs.push({ event: 'join', room, err: e.message });
                    continue;
                }
                if (a.ok) break;
                if (a.error.code !== 'unavailable') this.unexpected.push({ event: 'join', a });
                if (!s.connected) return false;
                await sleep(200);
            }
        }
        return true;
    }

    async client(user) {
        let s = null;
        let n = 0;
        let pending = null;
        const deadline = () => this.stopDeadline && Date.now() > this.stopDeadline;
        while ((!this.stopping || pending) && !deadline()) {
            if (!s || !s.connected) {
                if (s) s.close();
                try {
                    s = await connect(this.url, user);
                } catch {
                    s = null;
                    await sleep(200);
                    continue;
                }
                if (!(await this.joinAll(s))) continue;
            }
            if (!pending) {
                n++;
                pending = { room: this.rooms[n % this.rooms.length], user, id: `${user}-${n}`, text: `text ${user} ${n}` };
            }
            const t0 = Date.now();
            let a;
            try {
                a = await emitAck(s, 'message', { room: pending.room, id: pending.id, text: pending.text }, ACK_DEADLINE);
            } catch (e) {
                if (s.connected) this.hangs.push({ ...pending, err: e.message });
                continue; // retry the same id
            }
            this.maxAckMs = Math.max(this.maxAckMs, Date.now() - t0);
            const code = a.ok ? 'ok' : a.error.code;
            this.codes[code] = (this.codes[code] || 0) + 1;
            if (a.ok) {
                if (a.id !== pending.id) this.unexpected.push({ pending, a });
                this.acked.push(pending);
                allAcked.push(pending);
                pending = null;
            } else if (code === 'unavailable') {
                this.retried++;
                await sleep(100);
            } else if (code === 'not_member') {
                await this.joinAll(s);
            } else {
                this.unexpected.push({ pending, a });
                pending = null;
            }
            await sleep(this.pauseMs);
        }
        if (s) s.close();
        if (pending) this.unfinished = (this.unfinished || 0) + 1;
    }

    async stop(timeoutMs = slow(45000)) {
        this.stopping = true;
        this.stopDeadline = Date.now() + timeoutMs;
        await Promise.all(this.clients);
        return this;
    }

    check() {
        assert.deepEqual(this.hangs.slice(0, 5), [], `acks that did not come within ${ACK_DEADLINE} ms (${this.hangs.length})`);
        assert.deepEqual(this.unexpected.slice(0, 5), [], 'unexpected acks');
        assert.equal(this.unfinished || 0, 0, 'messages never acked ok after the fault');
        assert.ok(this.acked.length > 0);
    }

    summary() {
        return `acked ${this.acked.length}, codes ${JSON.stringify(this.codes)}, retried ${this.retried}, max ack ${this.maxAckMs} ms`;
    }
}

async function metrics(c) {
    return parseMetrics((await httpGet(`${c.url(0)}/metrics`)).body);
}

async function readyAgain(c, ms = slow(30000)) {
    await until('/readyz 200 again', async () => (await httpGet(`${c.url(0)}/readyz`)).status === 200, ms, 200);
}

// A member joined before the fault gets live messages again (a probe message
// arrives, possibly after a few tries).
async function liveAgain(c, room, watcher, sender) {
    await until('live delivery again', async () => {
        const id = uniq('probe');
        const a = await emitAck(sender, 'message', { room, id, text: 'probe' }, ACK_DEADLINE).catch(() => null);
        if (!a || !a.ok) return false;
        return waitFor(watcher, 'message', (m) => m.id === id, slow(3000)).then(() => true, () => false);
    }, slow(30000), 300);
}

async function scenario(c, t, name, fault) {
    const tr = new Traffic(c.url(0));
    const room = tr.rooms[0];
    const watcher = await connect(c.url(0), 'watcher');
    const sender = await connect(c.url(0), 'prober');
    for (const s of [watcher, sender]) assert.equal((await emitAck(s, 'join', { room })).ok, true);
    const before = await metrics(c);
    await sleep(1500);
    const t0 = Date.now();
    await fault();
    await readyAgain(c);
    const recovered = Date.now() - t0;
    await liveAgain(c, room, watcher, sender);
    await sleep(1000);
    await tr.stop();
    const after = await metrics(c);
    const restarts = {};
    for (const a of ['socket', 'producer', 'consumer', 'store', 'fanout']) {
        restarts[a] = metricSum(after, 'chatd_actor_restarts_total', { actor: a }) -
            metricSum(before, 'chatd_actor_restarts_total', { actor: a });
    }
    t.diagnostic(`${name}: ${tr.summary()}, ready again after ${recovered} ms, restarts ${JSON.stringify(restarts)}`);
    tr.check();
    assert.ok(c.nodes[0].running, 'the node is still running');
    watcher.close();
    sender.close();
    return { tr, restarts };
}

it('PostgreSQL down for 3 s during traffic: acks keep coming, the node recovers by itself', { timeout: slow(150000) }, async (t, c) => {
    const { restarts } = await scenario(c, t, 'postgres', async () => {
        await c.services.cmd('stop_postgres');
        await sleep(3000);
        await c.services.cmd('start_postgres');
    });
    assert.ok(restarts.store >= 1, `the store's supervisor restarts are visible in /metrics: ${JSON.stringify(restarts)}`);
});

it('PostgreSQL restarted (fast) during traffic', { timeout: slow(150000) }, async (t, c) => {
    await scenario(c, t, 'postgres restart', async () => {
        await c.services.cmd('restart_postgres');
    });
});

it('Redis down for 2 s during traffic: acks keep coming, live delivery resumes', { timeout: slow(150000) }, async (t, c) => {
    const { restarts } = await scenario(c, t, 'redis', async () => {
        await c.services.cmd('stop_redis');
        await sleep(2000);
        await c.services.cmd('start_redis');
    });
    assert.ok(restarts.fanout >= 1, `the fanout's supervisor restarts are visible in /metrics: ${JSON.stringify(restarts)}`);
});

it('Kafka broker SIGKILLed during traffic and restarted on its log directory: acks ok or unavailable, never late; retries are safe', { timeout: slow(180000) }, async (t, c) => {
    let downSeen = false;
    const { tr } = await scenario(c, t, 'broker', async () => {
        await c.services.cmd('kill_kafka');
        const t0 = Date.now();
        while (Date.now() - t0 < 3000) {
            const r = await httpGet(`${c.url(0)}/readyz`);
            if (r.status === 503 && r.body.includes('kafka')) downSeen = true;
            await sleep(100);
        }
        const t1 = Date.now();
        await c.services.cmd('restart_kafka');
        t.diagnostic(`broker restarted on its log directory in ${Date.now() - t1} ms`);
    });
    assert.ok(tr.codes.unavailable >= 1, `no message was refused while the broker was dead: ${tr.summary()}`);
    t.diagnostic(`readyz named kafka while down: ${downSeen}`);
});

it('Kafka broker hung (SIGSTOP) for 3 s during traffic: acks are ok or unavailable, never late', { timeout: slow(180000) }, async (t, c) => {
    const { tr } = await scenario(c, t, 'broker-hung', async () => {
        await c.services.cmd('pause_kafka');
        await sleep(3000);
        await c.services.cmd('resume_kafka');
    });
    assert.ok(tr.codes.unavailable >= 1, `no message was refused while the broker hung: ${tr.summary()}`);
});

it('every acked message is stored exactly once, seqs dense per room', { timeout: slow(120000) }, async (t, c) => {
    assert.ok(allAcked.length > 0, 'the fault tests acked nothing');
    const rooms = [...allRooms];
    const inList = rooms.map((r) => `'${r}'`).join(',');
    let rows;
    const want = new Set(allAcked.map((m) => `${m.room}\u0001${m.user}\u0001${m.id}`));
    await until('every acked message stored', () => {
        rows = c.sql(`SELECT room, seq, user_name, id, convert_from(body, 'UTF8') FROM messages WHERE room IN (${inList}) ORDER BY room, seq`);
        const have = new Set(rows.map((r) => `${r[0]}\u0001${r[2]}\u0001${r[3]}`));
        for (const k of want) if (!have.has(k)) return false;
        return true;
    }, slow(60000), 500).catch((e) => {
        const have = new Set(rows.map((r) => `${r[0]}\u0001${r[2]}\u0001${r[3]}`));
        const missing = [...want].filter((k) => !have.has(k));
        throw new Error(`${missing.length} acked messages not in PostgreSQL, e.g. ${JSON.stringify(missing.slice(0, 5))}: ${e.message}`);
    });
    const seen = new Map();
    const byRoom = new Map();
    for (const [room, seq, user, id, text] of rows) {
        const k = `${room}\u0001${user}\u0001${id}`;
        assert.ok(!seen.has(k), `stored twice: ${room} ${user} ${id}`);
        seen.set(k, text);
        if (!byRoom.has(room)) byRoom.set(room, []);
        byRoom.get(room).push(Number(seq));
    }
    for (const [room, seqs] of byRoom) {
        for (let i = 0; i < seqs.length; i++) {
            assert.equal(seqs[i], i + 1, `${room}: seqs not dense at ${i}: ${seqs.slice(Math.max(0, i - 2), i + 3)}`);
        }
    }
    // the first (and only) text of each acked id
    for (const m of allAcked) assert.equal(seen.get(`${m.room}\u0001${m.user}\u0001${m.id}`), m.text);
    // and the node agrees with the table
    const s = await connect(c.url(0), 'auditor');
    for (const [room, seqs] of byRoom) {
        const a = await emitAck(s, 'join', { room });
        assert.equal(a.seq, seqs.length, `${room}: join seq ${a.seq}, table has ${seqs.length}`);
    }
    t.diagnostic(`${allAcked.length} acked messages in ${byRoom.size} rooms, ${rows.length} rows`);
});
