// PROTOCOL.md "Limits" and "HTTP on the same port": in-flight and burst
// allowances at the defaults, rate_limited past a configured rate (and the error
// order around it), the slow reader, /healthz, /readyz (200, and 503 naming
// what is down), /metrics, /.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import {
    useCluster, within, connect, emitAck, waitFor, rawConnect, httpGet, errCode, uniq, until, sleep, slow,
    parseMetrics, metricSum, ROOT,
} from './cluster.mjs';

const ctx = useCluster({ nodes: 1, partitions: 2 });
const it = ctx.it;

async function member(url, user, room) {
    const s = await connect(url, user);
    const a = await emitAck(s, 'join', { room });
    assert.equal(a.ok, true, `join ${room}: ${JSON.stringify(a)}`);
    return s;
}

const count = (acks) => {
    const n = {};
    for (const a of acks) {
        const k = a.ok ? 'ok' : a.error.code;
        n[k] = (n[k] || 0) + 1;
    }
    return n;
};

// ---- limits at the defaults ----------------------------------------------------

it('256 events in flight on one connection are not limited', async (t, c) => {
    const room = uniq('inflight');
    const s = await member(c.url(0), 'busy', room);
    await sleep(200); // let the join's token come back
    const acks = await Promise.all(Array.from({ length: 256 }, (_, i) => (i % 2
        ? emitAck(s, 'message', { room, id: `f${i}`, text: 'x' }, slow(20000))
        : emitAck(s, 'history', { room, limit: 1 }, slow(20000)))));
    assert.deepEqual(count(acks), { ok: 256 });
});

it('a burst of 200 messages is not limited', async (t, c) => {
    const room = uniq('burst');
    const s = await member(c.url(0), 'burster', room);
    const acks = await Promise.all(Array.from({ length: 200 }, (_, i) =>
        emitAck(s, 'message', { room, id: `b${i}`, text: `burst ${i}` }, slow(20000))));
    assert.deepEqual(count(acks), { ok: 200 });
    await until('200 delivered', () => s.got.message.filter((m) => m.room === room).length >= 200, slow(20000));
});

// ---- a configured rate -------------------------------------------------------------

let rateNode;
async function getRateNode(c) {
    rateNode ||= await c.startNode(['--roles', 'socket,producer,fanout', '--rate', '5', '--rate-burst', '10'], 'ratenode');
    return rateNode;
}

it('past the configured rate events are rate_limited, and allowed again later', async (t, c) => {
    const nd = await getRateNode(c);
    const room = uniq('rate');
    const s = await member(nd.url, 'hasty', room);
    await sleep(1200); // refill
    const acks = await Promise.all(Array.from({ length: 30 }, (_, i) =>
        emitAck(s, 'message', { room, id: `r${i}`, text: 'x' }, slow(15000))));
    const n = count(acks);
    assert.ok(n.ok >= 10 && n.ok <= 12, `ok ${n.ok} (burst 10, rate 5/s): ${JSON.stringify(n)}`);
    assert.equal(n.ok + n.rate_limited, 30, JSON.stringify(n));
    // the limited ones were not stored: only the ok ids arrive
    const okIds = acks.filter((a) => a.ok).map((a) => a.id).sort();
    await until('ok messages delivered', () => s.got.message.filter((m) => m.room === room).length >= okIds.length, slow(15000));
    await sleep(300);
    assert.deepEqual(s.got.message.filter((m) => m.room === room).map((m) => m.id).sort(), okIds);
    await sleep(1100);
    const later = await emitAck(s, 'message', { room, id: 'later', text: 'x' });
    assert.deepEqual(later, { ok: true, id: 'later' });
});

it('error order around rate_limited: bad_request, too_large, forbidden, not_member come first', async (t, c) => {
    const nd = await getRateNode(c);
    const room = uniq('rate2');
    const s = await member(nd.url, 'hasty2', room);
    // empty the bucket
    const acks = await Promise.all(Array.from({ length: 25 }, (_, i) => emitAck(s, 'presence', { room: `${room}x${i}` })));
    assert.ok(count(acks).rate_limited > 0, JSON.stringify(count(acks)));
    const checks = await Promise.all([
        emitAck(s, 'message', { room, id: '', text: 'x' }),
        emitAck(s, 'nosuchevent', {}),
        emitAck(s, 'message', { room, id: 'big', text: 'x'.repeat(5000) }),
        emitAck(s, 'message', { room: 'dm:alice:bob', id: 'x', text: 'x' }),
        emitAck(s, 'message', { room: uniq('notjoined'), id: 'x', text: 'x' }),
        emitAck(s, 'typing', { room: uniq('notjoined') }),
        emitAck(s, 'message', { room, id: 'limited', text: 'x' }),
    ]);
    assert.deepEqual(checks.map(errCode), ['bad_request', 'bad_request', 'too_large', 'forbidden', 'not_member',
        'not_member', 'rate_limited']);
});

// ---- slow reader -------------------------------------------------------------------

it('a reader too slow for its outgoing queue is closed and catches up with join since', async (t, c) => {
    const nd = await c.startNode(['--roles', 'socket,producer,fanout', '--send-queue', '32',
        '--rate', '100000', '--rate-burst', '100000'], 'queuenode');
    const room = uniq('slow');
    const r = await rawConnect(nd.url, { user: 'sloth' });
    r.send(`421["join",${JSON.stringify({ room })}]`);
    assert.equal((await r.ack(1)).ok, true);
    r.ws._socket.pause(); // stop reading: kernel buffers fill, then the server's queue
    const w = await member(nd.url, 'flood', room);
    const text = 'y'.repeat(4000);
    let sent = 0;
    const deadline = Date.now() + slow(30000);
    // the writer reads promptly but is a member too: its acks and deliveries
    // must stay well under the queue, so only 8 in flight
    while (!r.closeInfo && Date.now() < deadline) {
        for (let k = 0; k < 20; k++) {
            const batch = await Promise.all(Array.from({ length: 8 }, () =>
                emitAck(w, 'message', { room, id: `y${++sent}`, text }, slow(20000))));
            assert.deepEqual(count(batch), { ok: 8 });
        }
        // the close is only seen once we read again; peek at the metric instead
        const m = parseMetrics((await httpGet(`${nd.url}/metrics`)).body);
        if (metricSum(m, 'chatd_slow_consumer_closes_total') >= 1) break;
    }
    const m = parseMetrics((await httpGet(`${nd.url}/metrics`)).body);
    assert.ok(metricSum(m, 'chatd_slow_consumer_closes_total') >= 1, `not closed after ${sent} messages of 4000 bytes`);
    r.ws._socket.resume();
    const info = await within(r.closed, slow(10000));
    assert.ok(info, 'the slow reader was not closed');
    // catch up
    const s = await connect(nd.url, 'sloth');
    let since = 0;
    const seqs = [];
    for (;;) {
        const a = await emitAck(s, 'join', { room, since }, slow(20000));
        assert.equal(a.ok, true);
        seqs.push(...a.missed.map((x) => x.seq));
        if (!a.more) break;
        since = a.missed[a.missed.length - 1].seq;
    }
    assert.ok(seqs.length >= 1);
    for (let i = 0; i < seqs.length; i++) assert.equal(seqs[i], i + 1);
    // the writer was not affected
    assert.equal(w.connected, true);
    assert.equal((await nd.stop()).code, 0);
});

// ---- HTTP ------------------------------------------------------------------------

it('GET /healthz is 200', async (t, c) => {
    const r = await httpGet(`${c.url(0)}/healthz`);
    assert.equal(r.status, 200);
});

it('GET /readyz is 200 when Kafka, Redis and PostgreSQL are reachable', async (t, c) => {
    const r = await httpGet(`${c.url(0)}/readyz`);
    assert.equal(r.status, 200);
    assert.doesNotThrow(() => JSON.parse(r.body));
});

it('an idle node becomes ready without any client traffic', async (t, c) => {
    const nd = c.addNode(['--roles', 'socket,producer,fanout'], 'idlenode');
    await nd.waitReady(slow(20000));
    assert.equal((await nd.stop()).code, 0);
});

const FAMILIES = [
    'chatd_connections', 'chatd_events_total', 'chatd_acks_total', 'chatd_messages_produced_total',
    'chatd_messages_stored_total', 'chatd_messages_published_total', 'chatd_messages_delivered_total',
    'chatd_actor_restarts_total', 'chatd_mailbox_depth', 'chatd_mailbox_overflows_total', 'chatd_backend_up',
];

it('GET /metrics is Prometheus text with the required families', async (t, c) => {
    const r = await httpGet(`${c.url(0)}/metrics`);
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type'), /^text\/plain/);
    const lines = r.body.split('\n').filter((l) => l.length);
    for (const l of lines) {
        if (l.startsWith('#')) {
            assert.match(l, /^# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* .*/, l);
        } else {
            assert.match(l, /^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="(\\.|[^"\\])*",?)*\})? -?[0-9.e+Inf]+( [0-9]+)?$/, l);
        }
    }
    const m = parseMetrics(r.body);
    const names = new Set(m.map((x) => x.name));
    const missing = FAMILIES.filter((f) => !names.has(f));
    assert.deepEqual(missing, [], `missing families: ${missing}`);
    for (const f of FAMILIES) assert.match(r.body, new RegExp(`^# TYPE ${f} (counter|gauge)$`, 'm'), `TYPE of ${f}`);
    assert.match(r.body, /^# TYPE chatd_stage_seconds histogram$/m, 'TYPE of chatd_stage_seconds');
    for (const ev of ['join', 'leave', 'message', 'history', 'typing', 'presence']) {
        assert.ok(m.some((x) => x.name === 'chatd_events_total' && x.labels.event === ev), `events_total{event="${ev}"}`);
    }
    for (const res of ['ok', 'bad_request', 'too_large', 'forbidden', 'not_member', 'rate_limited', 'unavailable']) {
        assert.ok(m.some((x) => x.name === 'chatd_acks_total' && x.labels.result === res), `acks_total{result="${res}"}`);
    }
    for (const b of ['kafka', 'redis', 'postgres']) {
        assert.equal(metricSum(m, 'chatd_backend_up', { backend: b }), 1, `backend_up ${b}`);
    }
    for (const a of ['socket', 'producer', 'consumer', 'store', 'fanout']) {
        assert.ok(m.some((x) => x.name === 'chatd_actor_restarts_total' && x.labels.actor === a), `restarts of ${a}`);
    }
});

it('metrics move with traffic: connections, events, acks, produced, stored, published, delivered', async (t, c) => {
    const before = parseMetrics((await httpGet(`${c.url(0)}/metrics`)).body);
    const room = uniq('metrics');
    const s1 = await member(c.url(0), 'metric1', room);
    const s2 = await member(c.url(0), 'metric2', room);
    for (let i = 0; i < 5; i++) assert.equal((await emitAck(s1, 'message', { room, id: `m${i}`, text: 'x' })).ok, true);
    assert.equal(errCode(await emitAck(s1, 'message', { room, id: '', text: 'x' })), 'bad_request');
    await until('delivered to both', () => s2.got.message.filter((m) => m.room === room).length >= 5 &&
        s1.got.message.filter((m) => m.room === room).length >= 5, slow(15000));
    const after = parseMetrics((await httpGet(`${c.url(0)}/metrics`)).body);
    const d = (name, labels) => metricSum(after, name, labels) - metricSum(before, name, labels);
    assert.ok(metricSum(after, 'chatd_connections') >= 2, 'connections gauge');
    assert.ok(d('chatd_events_total', { event: 'message' }) >= 5, 'events message');
    assert.ok(d('chatd_events_total', { event: 'join' }) >= 2, 'events join');
    assert.ok(d('chatd_acks_total', { result: 'ok' }) >= 7, 'acks ok');
    assert.ok(d('chatd_acks_total', { result: 'bad_request' }) >= 1, 'acks bad_request');
    assert.ok(d('chatd_messages_produced_total') >= 5, 'produced');
    assert.ok(d('chatd_messages_stored_total') >= 5, 'stored');
    assert.ok(d('chatd_messages_published_total') >= 5, 'published');
    assert.ok(d('chatd_messages_delivered_total') >= 10, 'delivered');
    // every stage of the path saw these 5 messages once (delivered: once per
    // node, not per member), and a message's age only grows along its path
    const stages = ['acked', 'consumed', 'stored', 'published', 'received', 'delivered'];
    const age = {};
    for (const stage of stages) {
        const n = d('chatd_stage_seconds_count', { stage });
        assert.ok(n >= 5, `stage ${stage}: ${n} observations`);
        assert.equal(metricSum(after, 'chatd_stage_seconds_bucket', { stage, le: '+Inf' }),
            metricSum(after, 'chatd_stage_seconds_count', { stage }), `${stage}: +Inf bucket = count`);
        age[stage] = d('chatd_stage_seconds_sum', { stage }) / n;
        assert.ok(age[stage] > 0 && age[stage] < 30, `stage ${stage}: mean age ${age[stage]} s`);
    }
    for (const [a, b] of [['consumed', 'stored'], ['stored', 'published'], ['stored', 'delivered'],
        ['received', 'delivered']]) {
        assert.ok(age[a] <= age[b], `mean age at ${a} (${age[a]}) <= at ${b} (${age[b]})`);
    }
    s1.close();
    s2.close();
});

it('GET / serves the web chat page (with --web-root build/web)', async (t, c) => {
    // chatd serves the page from --web-root; scripts/run passes build/web once it is built
    const webRoot = path.join(ROOT, 'build', 'web');
    if (!fs.existsSync(path.join(webRoot, 'index.html'))) {
        t.skip('build/web/index.html not built (cd web && npm ci && npm run build)');
        return;
    }
    const nd = await c.startNode(['--roles', 'socket,producer,fanout', '--web-root', webRoot], 'webnode');
    const r = await httpGet(`${nd.url}/`);
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type') || '', /text\/html/);
    assert.match(r.body, /<html|<!doctype html/i);
});

it('GET of an unknown path is 404', async (t, c) => {
    const r = await httpGet(`${c.url(0)}/no/such/path`);
    assert.equal(r.status, 404);
});

// ---- readiness with a backend down (last: they stop services) ------------------------

async function readyz(url) {
    const r = await httpGet(`${url}/readyz`);
    return { status: r.status, body: r.body, json: (() => { try { return JSON.parse(r.body); } catch { return null; } })() };
}

it('GET /readyz is 503 naming redis while Redis is down; presence is unavailable; all recover', async (t, c) => {
    const room = uniq('redisdown');
    const s = await member(c.url(0), 'rd1', room);
    const s2 = await member(c.url(0), 'rd2', room);
    await c.services.cmd('stop_redis');
    try {
        const r = await until('readyz 503', async () => {
            const x = await readyz(c.url(0));
            return x.status === 503 ? x : null;
        }, slow(10000), 100);
        assert.ok(r.json, `503 body is JSON: ${r.body}`);
        assert.ok(JSON.stringify(r.json).includes('redis'), `body names redis: ${r.body}`);
        assert.ok(!JSON.stringify(r.json).includes('postgres'), `body names only what is down: ${r.body}`);
        const t0 = Date.now();
        const p = await emitAck(s, 'presence', { room }, slow(15000));
        assert.equal(errCode(p), 'unavailable', JSON.stringify(p));
        assert.ok(Date.now() - t0 < slow(6000), 'answered within the request timeout');
        // /healthz still answers (200 or 503), quickly
        const h = await httpGet(`${c.url(0)}/healthz`);
        assert.ok([200, 503].includes(h.status));
    } finally {
        await c.services.cmd('start_redis');
    }
    await until('readyz 200 again', async () => (await readyz(c.url(0))).status === 200, slow(20000), 200);
    // members joined before the outage get live messages again (resubscribed)
    await until('live delivery again', async () => {
        const id = uniq('x');
        const a = await emitAck(s, 'message', { room, id, text: 'back' }, slow(15000));
        if (!a.ok) return false;
        return waitFor(s2, 'message', (m) => m.id === id, slow(3000)).then(() => true, () => false);
    }, slow(20000), 200);
    assert.deepEqual(await emitAck(s, 'presence', { room }), { ok: true, users: ['rd1', 'rd2'] });
});

it('GET /readyz is 503 naming postgres while PostgreSQL is down; history is unavailable; all recover', async (t, c) => {
    const room = uniq('pgdown');
    const s = await member(c.url(0), 'pg1', room);
    await c.services.cmd('stop_postgres');
    try {
        const r = await until('readyz 503', async () => {
            const x = await readyz(c.url(0));
            return x.status === 503 ? x : null;
        }, slow(15000), 100);
        assert.ok(JSON.stringify(r.json).includes('postgres'), `body names postgres: ${r.body}`);
        const t0 = Date.now();
        const h = await emitAck(s, 'history', { room }, slow(15000));
        assert.equal(errCode(h), 'unavailable', JSON.stringify(h));
        assert.ok(Date.now() - t0 < slow(6000), 'answered within the request timeout');
    } finally {
        await c.services.cmd('start_postgres');
    }
    await until('readyz 200 again', async () => (await readyz(c.url(0))).status === 200, slow(30000), 200);
    await until('history again', async () => (await emitAck(s, 'history', { room })).ok, slow(15000), 200);
    const m = parseMetrics((await httpGet(`${c.url(0)}/metrics`)).body);
    assert.ok(metricSum(m, 'chatd_actor_restarts_total', { actor: 'store' }) >= 1 ||
        metricSum(m, 'chatd_backend_up', { backend: 'postgres' }) === 1);
});
