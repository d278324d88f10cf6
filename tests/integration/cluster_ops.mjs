// tests/integration/cluster_ops.mjs: what the cluster tests need on top of
// cluster.mjs:
//
//   kill9(nd)                 SIGKILL, wait for the exit (Node.kill)
//   terminate(nd)             SIGTERM, wait; {code, signal} (Node.stop)
//   restart(nd)               start the same node again on the same port and
//                             --node-id, wait for /readyz (or for `readyLog`)
//                             (Node.restart)
//   useSplitCluster(opts)     edge nodes (socket,producer) + storage nodes
//                             (consumer,store), which have no HTTP port
//   warmupVia(c, nodes)       cluster.mjs's warmup, through the given nodes only
//   waitLog(nd, re, from)     a line of a node's log matching re (Node.waitLog)
//   metric(nd, name, labels)  one summed metric of a node
//   pgMessages(c, room)       the stored rows of a room, by seq, via psql
//   ChatClient                a reconnecting, retrying client for failover tests
//   settleAndCheck(...)       the end checks of a failover test (PostgreSQL
//                             exactly once, dense seqs, every client complete)
//
// Why warmupVia: Cluster.warmup connects to every node by default, and a
// storage node serves no HTTP (no socket role), so it would fail there.

import { before, after } from 'node:test';
import {
    Cluster, connect, emitAck, waitFor, sleep, slow, until, metricSum, it,
} from './cluster.mjs';
import assert from 'node:assert/strict';

export const EDGE = ['--roles', 'socket,producer'];
export const STORAGE = ['--roles', 'consumer,store'];

export const kill9 = (nd) => nd.kill();
export const terminate = (nd, timeoutMs) => nd.stop(timeoutMs);
export const restart = (nd, opts) => nd.restart(opts);
export const hasHttp = (nd) => nd.hasHttp;
export const waitLog = (nd, re, from, timeoutMs) => nd.waitLog(re, from, timeoutMs);

export async function metric(nd, name, labels = {}) {
    return metricSum(await nd.metrics(), name, labels);
}

// Stored rows of a room: [{seq, id, user, text, ts}] ascending by seq.
export function pgMessages(c, room) {
    const q = `SELECT seq, id, user_name, convert_from(body, 'UTF8'), ts FROM messages ` +
        `WHERE room = '${room.replace(/'/g, "''")}' ORDER BY seq`;
    return c.sql(q).map(([seq, id, user, text, ts]) => ({ seq: Number(seq), id, user, text, ts: Number(ts) }));
}

// Cluster.warmup, through `nodes` only (a storage node has no HTTP port).
export function warmupVia(c, nodes, timeoutMs = slow(60000)) {
    return c.warmup(timeoutMs, nodes);
}

// A cluster of `edges` edge nodes (socket,producer) and `storage` storage nodes
// (consumer,store). ctx.edges / ctx.storage are the Node objects; ctx.c the Cluster
// (its .nodes holds them all, so Cluster.stop stops them all and checks exit 0).
export function useSplitCluster({ edges = 2, storage = 1, partitions = 4, args = [] } = {}) {
    const ctx = { c: null, edges: [], storage: [] };
    before(async () => {
        const c = await Cluster.start({
            nodes: edges, partitions, warmup: false,
            args, nodeArgs: Array.from({ length: edges }, () => EDGE),
        });
        ctx.c = c;
        ctx.edges = c.nodes.slice();
        for (let i = 0; i < storage; i++) {
            const nd = c.addNode(args.concat(STORAGE), `store${i}`);
            ctx.storage.push(nd);
        }
        await Promise.all(ctx.storage.map(async (nd) => {
            await nd._portPromise;
            await waitLog(nd, /rebalance: assigned/, 0, slow(60000));
        }));
        await warmupVia(c, ctx.edges);
    }, { timeout: slow(180000) });
    after(async () => {
        if (ctx.c) await ctx.c.stop();
    }, { timeout: slow(180000) });
    ctx.it = (name, o, fn) => it(ctx, name, o, fn);
    return ctx;
}

// A chat client for failover tests: member of `rooms`, connected to node `home`
// or, when that is down, the next running node; on disconnect it reconnects and
// joins every room again with since = the last seq it has without a gap; a live
// seq past a gap makes it catch up with join since (counted in gapFills); a send
// is retried with the same id on `unavailable` or a lost ack. Records every
// message by seq, and order violations of live events within one connection.
export class ChatClient {
    constructor(c, user, home, rooms, nodes = c.nodes) {
        Object.assign(this, { c, user, home, rooms, nodes });
        this.seen = new Map(rooms.map((r) => [r, new Map()])); // room -> seq -> message
        this.live = new Map(rooms.map((r) => [r, new Set()])); // room -> seqs received live
        this.filling = new Set(); // rooms being caught up after a live gap
        this.acked = [];       // {room, id, text} with an ok ack
        this.sent = new Set(); // every id ever emitted (acked or not)
        this.sock = null;
        this.connecting = null;
        this.session = 0;
        this.reconnects = 0;
        this.gapFills = [];    // {room, from, to, session} filled by join since while connected
        this.violations = [];  // live order violations within one session
        this.errors = [];
        this.stopped = false;
    }

    contig(room) {
        const m = this.seen.get(room);
        let k = 0;
        while (m.has(k + 1)) k++;
        return k;
    }

    merge(m) {
        const r = this.seen.get(m.room);
        if (!r) return;
        const old = r.get(m.seq);
        if (old && (old.id !== m.id || old.user !== m.user || old.text !== m.text)) {
            this.violations.push(`seq ${m.seq} of ${m.room} seen as ${old.user}/${old.id} and ${m.user}/${m.id}`);
        }
        r.set(m.seq, m);
    }

    async catchUp(s, room) {
        for (let guard = 0; guard < 100; guard++) {
            const since = this.contig(room);
            const a = await emitAck(s, 'join', { room, since }, slow(5000));
            if (!a.ok) throw new Error(`join ${room} since ${since}: ${JSON.stringify(a)}`);
            for (const m of a.missed) this.merge(m);
            if (!a.more) return a;
        }
        throw new Error('join since: more forever');
    }

    ensure() {
        if (this.sock?.connected) return Promise.resolve(this.sock);
        if (!this.connecting) {
            this.connecting = this._connect().finally(() => { this.connecting = null; });
        }
        return this.connecting;
    }

    async _connect() {
        const n = this.nodes.length;
        for (let attempt = 0; ; attempt++) {
            if (this.stopped) throw new Error('stopped');
            const nd = this.nodes[(this.home + attempt) % n];
            if (!nd.running) { await sleep(50); continue; }
            let s;
            try {
                s = await connect(nd.url, this.user, { timeout: 2000 });
            } catch {
                await sleep(100);
                continue;
            }
            const session = ++this.session;
            const last = new Map();
            s.on('message', (m) => {
                if (!this.seen.has(m.room)) return;
                const prev = last.get(m.room) || 0;
                if (m.seq <= prev) this.violations.push(`session ${session} on ${nd.id}: ${m.room} seq ${m.seq} after ${prev}`);
                last.set(m.room, Math.max(prev, m.seq));
                const gapFrom = this.contig(m.room);
                this.merge(m);
                this.live.get(m.room).add(m.seq);
                if (m.seq > gapFrom + 1 && !this.stopped && this.sock === s && !this.filling.has(m.room)) {
                    // a gap in live delivery: a client catches up with join since
                    this.gapFills.push({ room: m.room, from: gapFrom + 1, to: m.seq - 1, node: nd.id, session });
                    this.filling.add(m.room);
                    this.catchUp(s, m.room).catch(() => { /* a reconnect will catch up */ })
                        .finally(() => this.filling.delete(m.room));
                }
            });
            try {
                for (const room of this.rooms) {
                    const a = await this.catchUp(s, room);
                    // live events before this join's ack cannot be checked for order
                    last.set(room, Math.max(last.get(room) || 0, a.seq));
                }
            } catch {
                s.close();
                await sleep(100);
                continue;
            }
            if (this.session > 1) this.reconnects++;
            s.on('disconnect', () => {
                if (this.sock === s) this.sock = null;
                if (!this.stopped) this.ensure().catch(() => {});
            });
            this.sock = s;
            this.node = nd;
            if (!s.connected) continue;
            return s;
        }
    }

    // Sends until an ok ack (same id on every retry); false if `deadline` passed.
    async send(room, id, text, deadline) {
        this.sent.add(`${room}/${id}`);
        while (Date.now() < deadline) {
            let s;
            try {
                s = await this.ensure();
            } catch { return false; }
            let a = null;
            try {
                a = await emitAck(s, 'message', { room, id, text }, slow(4000));
            } catch { /* no ack: lost with the connection, or late */ }
            if (a?.ok) {
                this.acked.push({ room, id, text });
                return true;
            }
            if (a && a.error?.code !== 'unavailable') {
                this.errors.push(`${room}/${id}: ${JSON.stringify(a)}`);
                return false;
            }
            await sleep(a ? 200 : 50);
        }
        return false;
    }

    async traffic(stopAt, gapMs) {
        let k = 0;
        while (!this.trafficStop && Date.now() < stopAt) {
            const room = this.rooms[k % this.rooms.length];
            const id = `${this.user}-${k}`;
            await this.send(room, id, `${this.user} says ${k}`, Date.now() + slow(30000));
            k++;
            await sleep(gapMs);
        }
    }
}

// After the traffic stopped: waits until every acked message is stored, sends one
// last message per room (from a client whose home is node `anchorHome`) so a tail
// gap shows, lets the clients catch up, then checks: PostgreSQL holds every acked
// message exactly once with its text and nothing never sent, seqs dense per room;
// every client has every message of its rooms (live + join since, by seq), no
// error ack, no live order violation.
export async function settleAndCheck(t, c, clients, rooms, log, anchorHome = 0, t0 = 0) {
    const ackedBy = new Map(); // room -> Map(user/id -> text)
    for (const cl of clients) {
        for (const a of cl.acked) {
            if (!ackedBy.has(a.room)) ackedBy.set(a.room, new Map());
            ackedBy.get(a.room).set(`${cl.user}/${a.id}`, a.text);
        }
    }
    const missingAcked = (rows) => {
        const missing = [];
        for (const [room, keys] of ackedBy) {
            const have = new Set(rows.get(room).map((m) => `${m.user}/${m.id}`));
            for (const k of keys.keys()) if (!have.has(k)) missing.push(`${room}:${k}`);
        }
        return missing;
    };
    let rows;
    // the group may still be rebalancing after the last kill
    await until('every acked message in PostgreSQL', () => {
        rows = new Map(rooms.map((r) => [r, pgMessages(c, r)]));
        return missingAcked(rows).length === 0;
    }, slow(60000), 500).catch((e) => {
        const missing = missingAcked(rows);
        throw new Error(`${e.message}: ${missing.length} acked messages missing: ${missing.slice(0, 20).join(' ')}`);
    });
    log('all acked stored');

    // one last message per room, so a client can see a gap at the tail
    for (const room of rooms) {
        const sender = clients.find((cl) => cl.rooms.includes(room) && cl.home === anchorHome) ||
            clients.find((cl) => cl.rooms.includes(room));
        assert.ok(await sender.send(room, `${sender.user}-last`, 'last', Date.now() + slow(20000)), `last message to ${room}`);
    }
    await until('the last messages stored', () => {
        rows = new Map(rooms.map((r) => [r, pgMessages(c, r)]));
        return missingAcked(rows).length === 0 && rooms.every((r) => rows.get(r).some((m) => m.text === 'last'));
    }, slow(30000), 200);
    for (const cl of clients) {
        for (const a of cl.acked) ackedBy.get(a.room).set(`${cl.user}/${a.id}`, a.text);
    }
    await until('every client has every message of its rooms', () => clients.every((cl) =>
        cl.rooms.every((r) => cl.contig(r) >= rows.get(r).length)), slow(30000), 200).catch(() => {});
    for (const cl of clients) cl.stopped = true;

    let total = 0;
    for (const room of rooms) {
        const rs = rows.get(room);
        total += rs.length;
        assert.deepEqual(rs.map((m) => m.seq), rs.map((_, i) => i + 1), `${room}: seqs not dense`);
        const keys = new Map();
        for (const m of rs) {
            const k = `${m.user}/${m.id}`;
            assert.ok(!keys.has(k), `${room}: ${k} stored twice (seqs ${keys.get(k)} and ${m.seq})`);
            keys.set(k, m.seq);
        }
        for (const [k, text] of ackedBy.get(room) || []) {
            assert.ok(keys.has(k), `${room}: acked ${k} not stored`);
            assert.equal(rs[keys.get(k) - 1].text, text, `${room}: ${k} text`);
        }
        for (const m of rs) {
            const sender = clients.find((cl) => cl.user === m.user);
            assert.ok(sender?.sent.has(`${room}/${m.id}`), `${room}: stored ${m.user}/${m.id} was never sent`);
        }
    }
    for (const cl of clients) {
        assert.deepEqual(cl.errors, [], `${cl.user}: error acks`);
        assert.deepEqual(cl.violations, [], `${cl.user}: live order violations`);
        for (const room of cl.rooms) {
            const rs = rows.get(room);
            const seen = cl.seen.get(room);
            const missing = rs.filter((m) => !seen.has(m.seq)).map((m) => m.seq);
            assert.deepEqual(missing, [], `${cl.user} (home node${cl.home}, ${cl.reconnects} reconnects) misses seqs of ${room}`);
            for (const m of rs) {
                const g = seen.get(m.seq);
                assert.deepEqual([g.user, g.id, g.text], [m.user, m.id, m.text], `${cl.user}: ${room} seq ${m.seq}`);
            }
            assert.equal(seen.size, rs.length, `${cl.user}: ${room} has seqs past the stored ones`);
        }
    }
    // Live losses: messages that a client connected all along (one session, joined
    // before the traffic) never received live, though its node never stopped.
    const lost = new Map();
    for (const cl of clients) {
        if (cl.session !== 1 || !cl.node?.running) continue;
        for (const room of cl.rooms) {
            for (const m of rows.get(room)) {
                if (cl.live.get(room).has(m.seq) || m.text === 'last') continue;
                const k = `${room}#${m.seq}`;
                if (!lost.has(k)) lost.set(k, { m, who: [] });
                lost.get(k).who.push(`${cl.user}@${cl.node.id}`);
            }
        }
    }
    if (lost.size) {
        log(`${lost.size} stored messages never delivered live to clients that stayed connected: ` +
            [...lost.values()].slice(0, 12).map(({ m, who }) =>
                `${m.user}/${m.id} seq ${m.seq} (accepted at ${t0 ? ((m.ts - t0) / 1000).toFixed(1) + 's' : m.ts}; missed by ${who.join(',')})`).join('; '));
    }
    const fills = clients.flatMap((cl) => cl.gapFills.map((g) => `${cl.user}@${g.node}:${g.room}[${g.from}..${g.to}]`));
    log(`${total} stored in ${rooms.length} rooms; reconnects ${clients.map((cl) => cl.reconnects).join(',')}; ` +
        `live gaps filled by join since: ${fills.length} ${fills.slice(0, 10).join(' ')}`);
    // redelivered records (consumed but not newly stored) show the at-least-once
    // path ran; counters of killed processes are gone, so this is a lower bound
    const per = await Promise.all(c.nodes.filter((nd) => nd.running).map(async (nd) => {
        try {
            return `${nd.id} ${await metric(nd, 'chatd_messages_consumed_total')}/${await metric(nd, 'chatd_messages_stored_total')}`;
        } catch { return `${nd.id} (no /metrics)`; }
    }));
    log(`consumed/stored since last start: ${per.join(', ')}`);
    return { total, fills, lost };
}
