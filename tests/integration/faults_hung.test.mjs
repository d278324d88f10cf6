// Hung backends: PostgreSQL stopped with SIGSTOP (every process of
// theirs), which a TCP peer cannot tell from a slow server: no error, no close.
// chatd must not wait on them forever: requests are answered `unavailable`
// within the request timeout, the actor holding the hung connection is
// restarted by its own deadline, and once the backend runs again every acked
// message is stored exactly once and delivered live. (A hung Kafka broker is
// in faults.test.mjs.) underHang takes the service's name so that Redis can
// join once a publish lost with a restarted fanout is published again.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { useCluster, connect, emitAck, sleep, slow, uniq, until, waitFor, assertDense } from './cluster.mjs';
import { metric, pgMessages } from './cluster_ops.mjs';

const REQUEST_TIMEOUT = 2000;
const ctx = useCluster({ nodes: 1, partitions: 2, args: ['--request-timeout-ms', String(REQUEST_TIMEOUT)] });

// every process of the service: the main one and its children (PostgreSQL's
// backends are the postmaster's children and serve the open connections)
function pids(c, service) {
    const dir = c.services.env.SERVICES_DIR;
    const file = service === 'postgres' ? path.join(dir, 'pg', 'postmaster.pid') : path.join(dir, `${service}.pid`);
    const main = Number(fs.readFileSync(file, 'utf8').split('\n')[0]);
    let kids = [];
    try {
        kids = execFileSync('pgrep', ['-P', String(main)], { encoding: 'utf8' }).split('\n').filter(Boolean).map(Number);
    } catch { /* none */ }
    return [main, ...kids];
}

const signal = (list, sig) => list.forEach((p) => { try { process.kill(p, sig); } catch { /* gone */ } });

// Sends messages and asks history all through `hangMs` of the service stopped;
// returns what the answers were and how long the slowest took.
async function underHang(c, t, service, hangMs) {
    const room = uniq(`hung-${service}`);
    const s = await connect(c.url(0), `hung-${service}`);
    const member = await connect(c.url(0), `hung-${service}-m`);
    for (const x of [s, member]) assert.equal((await emitAck(x, 'join', { room })).ok, true);
    const restartsBefore = await metric(c.nodes[0], 'chatd_actor_restarts_total', {
        actor: service === 'postgres' ? 'store' : 'fanout',
    });
    const logFrom = c.nodes[0].logSize();
    const stopped = pids(c, service);
    const acked = [];
    const codes = {};
    let slowest = 0;
    let n = 0;
    const live = new Set();
    member.on('message', (m) => { if (m.room === room) live.add(m.id); });
    signal(stopped, 'SIGSTOP');
    const resumeAt = Date.now() + hangMs;
    try {
        while (Date.now() < resumeAt) {
            const id = `h${n++}`;
            for (const [ev, body] of [['message', { room, id, text: id }], ['history', { room }]]) {
                const t0 = Date.now();
                const a = await emitAck(s, ev, body, slow(REQUEST_TIMEOUT * 3));
                slowest = Math.max(slowest, Date.now() - t0);
                const code = `${ev} ${a.ok ? 'ok' : a.error?.code}`;
                codes[code] = (codes[code] || 0) + 1;
                if (ev === 'message' && a.ok) acked.push(id);
            }
            await sleep(50);    // a steady user, under the rate limit
        }
    } finally {
        signal(stopped, 'SIGCONT');
    }
    t.diagnostic(`${service} stopped ${hangMs} ms: ${JSON.stringify(codes)}, slowest answer ${slowest} ms`);
    // after: a message gets through, everything acked is delivered live
    for (let tries = 0; ; tries++) {
        const a = await emitAck(s, 'message', { room, id: 'after', text: 'after' }, slow(10000));
        if (a.ok) break;
        assert.ok(tries < 50, `no message accepted after ${service} resumed: ${JSON.stringify(a)}`);
        await sleep(200);
    }
    acked.push('after');
    await until(`every acked message delivered live after ${service} resumed`,
        () => acked.every((id) => live.has(id)), slow(30000), 100).catch((e) => {
        throw new Error(`${e.message}: missing ${acked.filter((id) => !live.has(id)).join(' ')}`);
    });
    await until('every acked message stored', () => pgMessages(c, room).length >= acked.length, slow(30000), 200);
    const rows = pgMessages(c, room);
    assert.deepEqual(rows.map((r) => r.id).sort(), [...acked].sort(), 'each acked message stored exactly once');
    assertDense(rows.map((r) => r.seq));
    const restarts = (await metric(c.nodes[0], 'chatd_actor_restarts_total', {
        actor: service === 'postgres' ? 'store' : 'fanout',
    })) - restartsBefore;
    const log = fs.readFileSync(c.nodes[0].log, 'utf8').slice(logFrom);
    for (const x of [s, member]) x.close();
    return { codes, slowest, restarts, log };
}

ctx.it('PostgreSQL hung (SIGSTOP) for 5 s: history answered unavailable in time, the store restarts by its query deadline, nothing lost', { timeout: slow(120000) }, async (t, c) => {
    const r = await underHang(c, t, 'postgres', 5000);
    assert.ok(r.slowest <= REQUEST_TIMEOUT + 1000, `an answer took ${r.slowest} ms, request timeout ${REQUEST_TIMEOUT}`);
    assert.ok(r.codes['history unavailable'] >= 1, `history was answered unavailable: ${JSON.stringify(r.codes)}`);
    assert.ok(r.codes['message ok'] >= 1, 'messages are still accepted (Kafka holds them)');
    assert.match(r.log, /PostgreSQL did not answer a query within 3000 ms/, 'the store names the hung query');
    assert.ok(r.restarts >= 1, `the store was restarted: ${r.restarts}`);
});

ctx.it('Redis hung (SIGSTOP) for 5 s: requests answered in time, live delivery resumes with nothing lost', { timeout: slow(120000) }, async (t, c) => {
    const r = await underHang(c, t, 'redis', 5000);
    assert.ok(r.slowest <= REQUEST_TIMEOUT + 1000, `an answer took ${r.slowest} ms, request timeout ${REQUEST_TIMEOUT}`);
    assert.ok(r.codes['message ok'] >= 1, 'messages are still accepted');
    assert.ok(r.restarts >= 1, `the fanout was restarted by its reply deadline: ${r.restarts}`);
});
