// tests/integration/cluster_ops.mjs: node operations the cluster tests need on top
// of cluster.mjs (which this module only imports from, never changes):
//
//   kill9(nd)                 SIGKILL, wait for the exit
//   terminate(nd)             SIGTERM, wait; {code, signal} (Node.stop)
//   restart(nd)               start the same node again on the same port and
//                             --node-id, wait for /readyz (or for `readyLog`)
//   useSplitCluster(opts)     edge nodes (socket,producer) + storage nodes
//                             (consumer,store), which have no HTTP port
//   warmupVia(c, nodes)       cluster.mjs's warmup, through the given nodes only
//   waitLog(nd, re, from)     a line of a node's log matching re
//   metric(nd, name, labels)  one summed metric of a node
//   pgMessages(c, room)       the stored rows of a room, by seq, via psql
//
// Why a warmupVia of our own: Cluster.warmup connects to every node, and a
// storage node serves no HTTP (no socket role), so it would fail there.

import fs from 'node:fs';
import { before, after } from 'node:test';
import {
    Cluster, connect, emitAck, waitFor, sleep, slow, until, metricSum, it,
} from './cluster.mjs';

export const EDGE = ['--roles', 'socket,producer'];
export const STORAGE = ['--roles', 'consumer,store'];

export async function kill9(nd) {
    await nd._portPromise;
    if (!nd.running) return nd.exitInfo;
    nd.proc.kill('SIGKILL');
    return nd.exit;
}

export async function terminate(nd, timeoutMs) {
    await nd._portPromise;
    return nd.stop(timeoutMs);
}

// Starts a node that exited again, same port, same id, same args. Waits until it
// is ready: /readyz 200 for a node with an HTTP port, else until its log shows
// `readyLog` (default: its consumer was assigned partitions).
export async function restart(nd, { wait = true, readyLog = null, timeoutMs = slow(60000) } = {}) {
    await nd._portPromise;
    if (nd.running) throw new Error(`${nd.id} is still running`);
    const from = nd.logSize();
    nd.exitInfo = undefined; // Node.waitReady refuses to wait on a node with exitInfo
    nd.start();
    if (!wait) return nd;
    if (readyLog || !hasHttp(nd)) {
        await waitLog(nd, readyLog || /rebalance: assigned/, from, timeoutMs);
    } else {
        await nd.waitReady(timeoutMs);
    }
    return nd;
}

export function hasHttp(nd) {
    const i = nd.args.indexOf('--roles');
    return i < 0 || nd.args[i + 1].split(',').includes('socket') || nd.args[i + 1] === 'all';
}

// Resolves with the first log line (after byte offset `from`) matching re.
export async function waitLog(nd, re, from = 0, timeoutMs = slow(30000)) {
    return until(`${nd.id} log ${re}`, () => {
        if (nd.exitInfo) throw new Error(`${nd.id} exited ${JSON.stringify(nd.exitInfo)}`);
        let text = '';
        try { text = fs.readFileSync(nd.log, 'utf8').slice(from); } catch { return null; }
        return text.split('\n').find((l) => re.test(l)) || null;
    }, timeoutMs, 100);
}

export async function metric(nd, name, labels = {}) {
    return metricSum(await nd.metrics(), name, labels);
}

// Stored rows of a room: [{seq, id, user, text, ts}] ascending by seq.
export function pgMessages(c, room) {
    const q = `SELECT seq, id, user_name, convert_from(body, 'UTF8'), ts FROM messages ` +
        `WHERE room = '${room.replace(/'/g, "''")}' ORDER BY seq`;
    return c.sql(q).map(([seq, id, user, text, ts]) => ({ seq: Number(seq), id, user, text, ts: Number(ts) }));
}

// Cluster.warmup, through `nodes` only: one message into rooms spread over the
// partitions, until each is delivered live to a member on every given node.
export async function warmupVia(c, nodes, timeoutMs = slow(60000)) {
    const rooms = Array.from({ length: Math.max(8, c.partitions * 3) }, (_, i) => `warmup-${i}`);
    const subs = [];
    try {
        for (const nd of nodes) {
            const s = await connect(nd.url, 'warmup');
            subs.push(s);
            for (const room of rooms) {
                const a = await emitAck(s, 'join', { room });
                if (!a || a.ok !== true) throw new Error(`warmup join: ${JSON.stringify(a)}`);
            }
        }
        const deadline = Date.now() + timeoutMs;
        for (const room of rooms) {
            let n = 0;
            for (;;) {
                const id = `w${n++}`;
                const a = await emitAck(subs[0], 'message', { room, id, text: 'warmup' }, slow(15000)).catch((e) => ({ e }));
                if (a.ok) {
                    try {
                        await Promise.all(subs.map((s) => waitFor(s, 'message', (m) => m.room === room && m.id === id,
                            Math.max(1000, deadline - Date.now()))));
                        break;
                    } catch (e) {
                        if (Date.now() > deadline) throw new Error(`warmup: ${room} not delivered: ${e.message}`);
                    }
                } else if (Date.now() > deadline) {
                    throw new Error(`warmup: message to ${room}: ${JSON.stringify(a)}`);
                } else {
                    await sleep(200);
                }
            }
        }
    } finally {
        for (const s of subs) s.close();
    }
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
