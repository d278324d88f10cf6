// Issue 4, multi-node: 3 full nodes, clients spread over them. Every PROTOCOL.md
// rule that crosses nodes: live delivery to members on every node, dense seqs in
// order everywhere, join since / history from any node, typing and presence across
// nodes, and targeted fan-out (a node with no member in a room receives none of
// its traffic: its chatd_messages_received_total does not move).
import assert from 'node:assert/strict';
import { useCluster, connect, emitAck, waitFor, until, sleep, slow, uniq, assertDense } from './cluster.mjs';
import { metric, pgMessages } from './cluster_ops.mjs';

const ctx = useCluster({ nodes: 3, partitions: 4, args: ['--presence-ttl-ms', '1500'] });
const it = ctx.it;

async function member(url, user, room) {
    const s = await connect(url, user);
    const a = await emitAck(s, 'join', { room });
    assert.equal(a.ok, true, `join ${room} as ${user}: ${JSON.stringify(a)}`);
    return s;
}

const inRoom = (s, room) => s.got.message.filter((m) => m.room === room);

async function allDelivered(socks, room, n, ms = slow(20000)) {
    await until(`${n} messages of ${room} on every member`,
        () => socks.every((s) => inRoom(s, room).length >= n), ms, 50);
}

it('messages from clients on each node reach members on every node, dense seqs in the same order', async (t, c) => {
    const room = uniq('multi');
    // two members per node
    const socks = [];
    for (let i = 0; i < 6; i++) socks.push(await member(c.url(i % 3), `u${i}`, room));
    const PER = 10;
    const acks = await Promise.all(socks.flatMap((s, i) => Array.from({ length: PER }, (_, k) =>
        emitAck(s, 'message', { room, id: `m${k}`, text: `from u${i} #${k}` }, slow(15000)))));
    for (const a of acks) assert.equal(a.ok, true, JSON.stringify(a));
    const N = socks.length * PER;
    await allDelivered(socks, room, N);
    await sleep(300); // nothing more (no duplicates) may arrive
    const ref = inRoom(socks[0], room);
    for (const [i, s] of socks.entries()) {
        const got = inRoom(s, room);
        assert.equal(got.length, N, `u${i} (node${i % 3}) got ${got.length} messages, not ${N}`);
        assertDense(got.map((m) => m.seq)); // dense from 1 AND in arrival order
        assert.deepEqual(got.map((m) => `${m.user}/${m.id}`), ref.map((m) => `${m.user}/${m.id}`),
            `u${i} saw another order than u0`);
    }
    // per sender, its messages keep their send order (one connection, one room)
    for (let i = 0; i < socks.length; i++) {
        const mine = ref.filter((m) => m.user === `u${i}`).map((m) => m.id);
        assert.deepEqual(mine, Array.from({ length: PER }, (_, k) => `m${k}`));
    }
    const rows = pgMessages(c, room);
    assert.deepEqual(rows.map((r) => r.seq), ref.map((m) => m.seq));
    assert.deepEqual(rows.map((r) => `${r.user}/${r.id}/${r.text}`), ref.map((m) => `${m.user}/${m.id}/${m.text}`));
});

it('join since and history give the same answer from every node', async (t, c) => {
    const room = uniq('hist');
    const w = await member(c.url(1), 'writer', room);
    const acks = [];
    for (let k = 1; k <= 30; k++) acks.push(await emitAck(w, 'message', { room, id: `h${k}`, text: `t${k}` }));
    for (const a of acks) assert.equal(a.ok, true, JSON.stringify(a));
    await waitFor(w, 'message', (m) => m.room === room && m.id === 'h30', slow(15000));
    const answers = [];
    for (let i = 0; i < 3; i++) {
        const s = await connect(c.url(i), `reader${i}`);
        const j0 = await emitAck(s, 'join', { room, since: 0 });
        assert.equal(j0.ok, true, JSON.stringify(j0));
        assert.equal(j0.seq, 30, `node${i} join seq`);
        assert.equal(j0.more, false);
        assertDense(j0.missed.map((m) => m.seq));
        assert.equal(j0.missed.length, 30);
        const j10 = await emitAck(s, 'join', { room, since: 10 });
        assert.deepEqual(j10.missed.map((m) => m.seq), Array.from({ length: 20 }, (_, k) => 11 + k));
        const jall = await emitAck(s, 'join', { room, since: 30 });
        assert.deepEqual(jall.missed, []);
        const h = await emitAck(s, 'history', { room, before: 10, limit: 5 });
        assert.equal(h.ok, true, JSON.stringify(h));
        assert.deepEqual(h.messages.map((m) => m.seq), [5, 6, 7, 8, 9]);
        assert.equal(h.more, true);
        const hl = await emitAck(s, 'history', { room });
        assert.deepEqual(hl.messages.map((m) => m.seq), Array.from({ length: 30 }, (_, k) => 1 + k));
        assert.equal(hl.more, false);
        answers.push({ j0: j0.missed, h: hl.messages });
    }
    for (const a of answers.slice(1)) {
        assert.deepEqual(a.j0, answers[0].j0, 'join since differs between nodes');
        assert.deepEqual(a.h, answers[0].h, 'history differs between nodes');
    }
    assert.deepEqual(answers[0].j0.map((m) => `${m.user}/${m.id}/${m.text}`),
        Array.from({ length: 30 }, (_, k) => `writer/h${k + 1}/t${k + 1}`));
});

it('typing reaches the other members on every node, not the sender', async (t, c) => {
    const room = uniq('typ');
    const socks = [];
    for (let i = 0; i < 3; i++) socks.push(await member(c.url(i), `ty${i}`, room));
    for (let from = 0; from < 3; from++) {
        const a = await emitAck(socks[from], 'typing', { room });
        assert.equal(a.ok, true, JSON.stringify(a));
        for (let i = 0; i < 3; i++) {
            if (i === from) continue;
            const ev = await waitFor(socks[i], 'typing', (e) => e.room === room && e.user === `ty${from}`, slow(5000));
            assert.deepEqual(ev, { room, user: `ty${from}` });
        }
    }
    await sleep(300);
    for (let i = 0; i < 3; i++) {
        assert.equal(socks[i].got.typing.filter((e) => e.room === room && e.user === `ty${i}`).length, 0,
            `ty${i} got its own typing`);
    }
});

it('presence lists the members of every node, from every node', async (t, c) => {
    const room = uniq('pres');
    const users = ['pa', 'pb', 'pc', 'pd'];
    const socks = [];
    for (let i = 0; i < users.length; i++) socks.push(await member(c.url(i % 3), users[i], room));
    // the same user on two nodes counts once
    socks.push(await member(c.url(2), 'pa', room));
    const outsider = [];
    for (let i = 0; i < 3; i++) outsider.push(await connect(c.url(i), `out${i}`));
    for (let i = 0; i < 3; i++) {
        const p = await emitAck(outsider[i], 'presence', { room });
        assert.equal(p.ok, true, JSON.stringify(p));
        assert.deepEqual(p.users, users, `presence from node${i}`);
    }
    // pb (node1) leaves, pc (node2) disconnects; pa leaves node0 but stays on node2
    assert.equal((await emitAck(socks[1], 'leave', { room })).ok, true);
    socks[2].close();
    assert.equal((await emitAck(socks[0], 'leave', { room })).ok, true);
    for (let i = 0; i < 3; i++) {
        await until(`presence from node${i} is [pa, pd]`, async () => {
            const p = await emitAck(outsider[i], 'presence', { room });
            return JSON.stringify(p.users) === JSON.stringify(['pa', 'pd']) ? p : null;
        }, slow(3000), 100);
    }
});

it('targeted fan-out: a node with no member in a room receives none of its traffic', async (t, c) => {
    const busy = uniq('busy');
    const quiet = uniq('quiet');
    // node0 and node1 have members of `busy`; node2 had one that left (it must
    // unsubscribe) and has a member of another room (it is subscribed to something)
    const a = await member(c.url(0), 'fa', busy);
    const b = await member(c.url(1), 'fb', busy);
    const gone = await member(c.url(2), 'fgone', busy);
    const q = await member(c.url(2), 'fq', quiet);
    assert.equal((await emitAck(gone, 'leave', { room: busy })).ok, true);
    gone.close();
    const left = await member(c.url(2), 'fleft', busy);
    left.close(); // the disconnect ends membership too
    await sleep(500);
    const m2 = { r: await metric(c.nodes[2], 'chatd_messages_received_total'),
        d: await metric(c.nodes[2], 'chatd_messages_delivered_total') };
    const m0 = { r: await metric(c.nodes[0], 'chatd_messages_received_total'),
        d: await metric(c.nodes[0], 'chatd_messages_delivered_total') };
    const N = 40;
    const acks = await Promise.all(Array.from({ length: N }, (_, k) =>
        emitAck(k % 2 ? a : b, 'message', { room: busy, id: `b${k}`, text: 'busy' }, slow(15000))));
    for (const x of acks) assert.equal(x.ok, true, JSON.stringify(x));
    await allDelivered([a, b], busy, N);
    await sleep(500);
    const m2b = { r: await metric(c.nodes[2], 'chatd_messages_received_total'),
        d: await metric(c.nodes[2], 'chatd_messages_delivered_total') };
    const m0b = { r: await metric(c.nodes[0], 'chatd_messages_received_total'),
        d: await metric(c.nodes[0], 'chatd_messages_delivered_total') };
    assert.ok(m0b.r - m0.r >= N, `node0 received ${m0b.r - m0.r} from Redis, expected >= ${N}`);
    assert.ok(m0b.d - m0.d >= N, `node0 delivered ${m0b.d - m0.d}, expected >= ${N}`);
    assert.equal(m2b.r - m2.r, 0, `node2 (no member in ${busy}) received ${m2b.r - m2.r} messages from Redis`);
    assert.equal(m2b.d - m2.d, 0, `node2 delivered ${m2b.d - m2.d}`);
    // and node2 does receive its own room's traffic
    const x = await emitAck(a, 'join', { room: quiet });
    assert.equal(x.ok, true);
    assert.equal((await emitAck(a, 'message', { room: quiet, id: 'q1', text: 'hi' })).ok, true);
    await waitFor(q, 'message', (m) => m.room === quiet && m.id === 'q1', slow(10000));
    await until('node2 received the quiet message', async () =>
        (await metric(c.nodes[2], 'chatd_messages_received_total')) === m2b.r + 1, slow(3000));
});
