// Issue 4, split roles: 2 edge nodes (--roles socket,producer) + 1 storage node
// (--roles consumer,store, no HTTP port). Every core PROTOCOL.md rule must hold as
// on full nodes: join, message acks, live delivery across edge nodes, history,
// join since, dedupe of retried ids, not_member.
import assert from 'node:assert/strict';
import { connect, emitAck, waitFor, until, sleep, slow, uniq, assertDense, errCode } from './cluster.mjs';
import { useSplitCluster, pgMessages, metric } from './cluster_ops.mjs';

const ctx = useSplitCluster({ edges: 2, storage: 1, partitions: 4, args: ['--rate', '5000', '--rate-burst', '1000'] });
const it = ctx.it;
const E = (i) => ctx.edges[i].url;

async function member(url, user, room, since) {
    const s = await connect(url, user);
    const a = await emitAck(s, 'join', since === undefined ? { room } : { room, since });
    assert.equal(a.ok, true, `join ${room} as ${user}: ${JSON.stringify(a)}`);
    s.joinAck = a;
    return s;
}
const inRoom = (s, room) => s.got.message.filter((m) => m.room === room);

it('join on an edge node: empty room is seq 0, idempotent, leave ok', async () => {
    const room = uniq('sj');
    const s = await connect(E(0), 'sj');
    const a = await emitAck(s, 'join', { room });
    assert.deepEqual(a, { ok: true, room, seq: 0, missed: [], more: false });
    assert.deepEqual(await emitAck(s, 'join', { room }), a);
    const b = await emitAck(s, 'join', { room, since: 0 });
    assert.deepEqual(b, { ok: true, room, seq: 0, missed: [], more: false });
    assert.deepEqual(await emitAck(s, 'leave', { room }), { ok: true, room });
    assert.equal(errCode(await emitAck(s, 'message', { room, id: 'x', text: 'y' })), 'not_member');
});

it('messages from both edge nodes are stored by the storage node and delivered live on both, dense and in order', async (t, c) => {
    const room = uniq('sm');
    const socks = [await member(E(0), 'a0', room), await member(E(1), 'b1', room),
        await member(E(0), 'c0', room), await member(E(1), 'd1', room)];
    const PER = 15;
    const acks = await Promise.all(socks.flatMap((s, i) => Array.from({ length: PER }, (_, k) =>
        emitAck(s, 'message', { room, id: `m${k}`, text: `s${i} k${k}` }, slow(15000)))));
    for (const [i, a] of acks.entries()) assert.deepEqual(a, { ok: true, id: `m${i % PER}` });
    const N = socks.length * PER;
    await until(`${N} delivered everywhere`, () => socks.every((s) => inRoom(s, room).length >= N), slow(20000));
    await sleep(300);
    const ref = inRoom(socks[0], room);
    for (const s of socks) {
        const got = inRoom(s, room);
        assert.equal(got.length, N);
        assertDense(got.map((m) => m.seq));
        assert.deepEqual(got, ref);
    }
    for (const m of ref) {
        assert.deepEqual(Object.keys(m).sort(), ['id', 'room', 'seq', 'text', 'ts', 'user']);
        assert.ok(Number.isInteger(m.ts) && Math.abs(Date.now() - m.ts) < 60000, `ts ${m.ts}`);
    }
    const rows = pgMessages(c, room);
    assert.deepEqual(rows.map((r) => [r.seq, r.user, r.id, r.text, r.ts]),
        ref.map((m) => [m.seq, m.user, m.id, m.text, m.ts]));
    // the storage node stored them; the edge nodes did not consume
    const consumed = await Promise.all(ctx.edges.map((nd) => metric(nd, 'chatd_messages_consumed_total')));
    assert.deepEqual(consumed, [0, 0], 'edge nodes consumed records');
});

it('history and join since from either edge node (edges read PostgreSQL)', async () => {
    const room = uniq('sh');
    const w = await member(E(1), 'hw', room);
    for (let k = 1; k <= 25; k++) assert.equal((await emitAck(w, 'message', { room, id: `h${k}`, text: `t${k}` })).ok, true);
    await waitFor(w, 'message', (m) => m.room === room && m.id === 'h25', slow(15000));
    const res = [];
    for (const i of [0, 1]) {
        const s = await connect(E(i), `hr${i}`);
        const h = await emitAck(s, 'history', { room, limit: 10 });
        assert.equal(h.ok, true, JSON.stringify(h));
        assert.deepEqual(h.messages.map((m) => m.seq), Array.from({ length: 10 }, (_, k) => 16 + k));
        assert.equal(h.more, true);
        const hb = await emitAck(s, 'history', { room, before: 3 });
        assert.deepEqual(hb.messages.map((m) => m.id), ['h1', 'h2']);
        assert.equal(hb.more, false);
        const j = await emitAck(s, 'join', { room, since: 20 });
        assert.equal(j.seq, 25);
        assert.deepEqual(j.missed.map((m) => m.id), ['h21', 'h22', 'h23', 'h24', 'h25']);
        res.push({ s, h: h.messages });
    }
    assert.deepEqual(res[0].h, res[1].h);
    // after the join ack, every newer message arrives live on both edge nodes
    assert.equal((await emitAck(w, 'message', { room, id: 'after', text: 'live' })).ok, true);
    for (const { s } of res) {
        const live = await waitFor(s, 'message', (m) => m.room === room && m.id === 'after', slow(10000));
        assert.equal(live.seq, 26);
    }
});

it('join since pages through more than 500 missed messages', async () => {
    const room = uniq('sp');
    const w = await member(E(0), 'pw', room);
    const acks = await Promise.all(Array.from({ length: 520 }, (_, k) =>
        emitAck(w, 'message', { room, id: `p${k}`, text: 'x' }, slow(20000))));
    // past the rate limit some may be refused: resend those until all are ok
    for (let k = 0; k < acks.length; k++) {
        while (acks[k].ok !== true) {
            assert.equal(errCode(acks[k]), 'rate_limited', JSON.stringify(acks[k]));
            await sleep(200);
            acks[k] = await emitAck(w, 'message', { room, id: `p${k}`, text: 'x' }, slow(20000));
        }
    }
    await until('520 stored', async () => (await emitAck(w, 'history', { room, limit: 1 })).messages[0]?.seq === 520, slow(20000), 100);
    const r = await connect(E(1), 'pr');
    const j1 = await emitAck(r, 'join', { room, since: 0 });
    assert.equal(j1.missed.length, 500);
    assert.equal(j1.more, true);
    const j2 = await emitAck(r, 'join', { room, since: 500 });
    assert.equal(j2.missed.length, 20);
    assert.equal(j2.more, false);
    assertDense(j1.missed.concat(j2.missed).map((m) => m.seq));
});

it('a retried id (same or other edge node) gets the same ack, is stored and delivered once with its first text', async (t, c) => {
    const room = uniq('sd');
    const a = await member(E(0), 'dup', room);
    const a2 = await member(E(1), 'dup', room); // same user, other edge node
    const obs = await member(E(1), 'obs', room);
    const first = await emitAck(a, 'message', { room, id: 'same', text: 'first' });
    assert.deepEqual(first, { ok: true, id: 'same' });
    assert.deepEqual(await emitAck(a, 'message', { room, id: 'same', text: 'second' }), first);
    assert.deepEqual(await emitAck(a2, 'message', { room, id: 'same', text: 'third' }), first);
    // another user may use the same id
    assert.deepEqual(await emitAck(obs, 'message', { room, id: 'same', text: 'obs' }), first);
    assert.equal((await emitAck(a, 'message', { room, id: 'end', text: 'end' })).ok, true);
    await waitFor(obs, 'message', (m) => m.room === room && m.id === 'end', slow(10000));
    // a late retry after it was stored
    assert.deepEqual(await emitAck(a2, 'message', { room, id: 'same', text: 'late' }), first);
    assert.equal((await emitAck(a, 'message', { room, id: 'end2', text: 'end' })).ok, true);
    for (const s of [a, a2, obs]) {
        await waitFor(s, 'message', (m) => m.room === room && m.id === 'end2', slow(10000));
        assert.deepEqual(inRoom(s, room).map((m) => [m.seq, m.user, m.id, m.text]),
            [[1, 'dup', 'same', 'first'], [2, 'obs', 'same', 'obs'], [3, 'dup', 'end', 'end'], [4, 'dup', 'end2', 'end']]);
    }
    assert.deepEqual(pgMessages(c, room).map((r) => [r.seq, r.user, r.id, r.text]),
        [[1, 'dup', 'same', 'first'], [2, 'obs', 'same', 'obs'], [3, 'dup', 'end', 'end'], [4, 'dup', 'end2', 'end']]);
});

it('typing and presence across edge nodes', async () => {
    const room = uniq('st');
    const x = await member(E(0), 'tx', room);
    const y = await member(E(1), 'ty', room);
    assert.equal((await emitAck(x, 'typing', { room })).ok, true);
    assert.deepEqual(await waitFor(y, 'typing', (e) => e.room === room, slow(5000)), { room, user: 'tx' });
    const p = await emitAck(x, 'presence', { room });
    assert.deepEqual(p, { ok: true, users: ['tx', 'ty'] });
});
