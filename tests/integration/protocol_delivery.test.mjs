// PROTOCOL.md live delivery across nodes, join since / missed paging, the join
// ack's live guarantee, presence and typing across nodes, catch-up after a
// reconnect. Two nodes, a generous rate so bulk sends are not limited.
import assert from 'node:assert/strict';
import {
    useCluster, connect, emitAck, waitFor, uniq, until, sleep, slow, assertDense,
} from './cluster.mjs';

const ctx = useCluster({ nodes: 2, partitions: 4, args: ['--rate', '100000', '--rate-burst', '100000'] });
const it = ctx.it;

async function member(url, user, room) {
    const s = await connect(url, user);
    const a = await emitAck(s, 'join', { room });
    assert.equal(a.ok, true, `join ${room}: ${JSON.stringify(a)}`);
    return s;
}

// Sends n messages with ids `${prefix}${i}`, up to `window` in flight; checks every ack.
async function sendMany(s, room, n, prefix, window = 100) {
    let next = 0;
    const worker = async () => {
        while (next < n) {
            const i = ++next;
            const a = await emitAck(s, 'message', { room, id: `${prefix}${i}`, text: `${prefix} ${i}` }, slow(20000));
            assert.deepEqual(a, { ok: true, id: `${prefix}${i}` });
        }
    };
    await Promise.all(Array.from({ length: Math.min(window, n) }, worker));
}

async function storedCount(s, room, n) {
    return until(`${n} stored in ${room}`, async () => {
        const h = await emitAck(s, 'history', { room, limit: 1 });
        return h.ok && h.messages.length && h.messages[0].seq >= n;
    }, slow(30000), 100);
}

const seqsOf = (s, room) => s.got.message.filter((m) => m.room === room).map((m) => m.seq);

it('live messages reach every member on every node, the sender included, seq dense from 1 in order', async (t, c) => {
    const room = uniq('live');
    const a0 = await member(c.url(0), 'alice', room);
    const b0 = await member(c.url(0), 'bob', room);
    const c1 = await member(c.url(1), 'carol', room);
    const d1 = await member(c.url(1), 'dave', room);
    const N = 150;
    // two senders on two nodes, interleaved
    await Promise.all([sendMany(a0, room, N / 2, 'a', 10), sendMany(c1, room, N / 2, 'c', 10)]);
    for (const s of [a0, b0, c1, d1]) {
        await until(`${N} live messages`, () => seqsOf(s, room).length >= N, slow(20000));
    }
    await sleep(300);
    const ref = a0.got.message.filter((m) => m.room === room);
    assertDense(ref.map((m) => m.seq), 1);
    assert.equal(ref.length, N, 'no duplicates');
    for (const s of [b0, c1, d1]) {
        const got = s.got.message.filter((m) => m.room === room);
        assert.deepEqual(got.map((m) => [m.seq, m.id, m.user]), ref.map((m) => [m.seq, m.id, m.user]),
            'every member sees the same messages in the same seq order');
    }
    // per sender, seq order follows send order when the sender waits for acks (window 10
    // means order among in-flight ones is free); all ids present exactly once
    const ids = ref.map((m) => m.id).sort();
    assert.equal(new Set(ids).size, N);
    // stored history agrees with live delivery
    await storedCount(a0, room, N);
    const h = await emitAck(d1, 'history', { room, limit: 200 });
    assert.deepEqual(h.messages.map((m) => [m.seq, m.id, m.user, m.text, m.ts]),
        ref.map((m) => [m.seq, m.id, m.user, m.text, m.ts]));
});

it('rooms are independent: each has its own seq from 1', async (t, c) => {
    const rooms = [uniq('ind'), uniq('ind'), uniq('ind')];
    const s = await connect(c.url(0), 'multiroom');
    const r = await connect(c.url(1), 'multiroom2');
    for (const room of rooms) {
        assert.equal((await emitAck(s, 'join', { room })).ok, true);
        assert.equal((await emitAck(r, 'join', { room })).ok, true);
    }
    await Promise.all(rooms.map((room, i) => sendMany(s, room, 5 + i, `x${i}-`, 1)));
    for (const [i, room] of rooms.entries()) {
        await until('delivery', () => seqsOf(r, room).length >= 5 + i, slow(15000));
        assert.deepEqual(seqsOf(r, room), Array.from({ length: 5 + i }, (_, k) => k + 1));
        // one sender waiting for each ack: seq order is send order
        assert.deepEqual(r.got.message.filter((m) => m.room === room).map((m) => m.id),
            Array.from({ length: 5 + i }, (_, k) => `x${i}-${k + 1}`));
    }
});

it('join since pages through missed: at most 500 per ack, more until caught up', async (t, c) => {
    const room = uniq('page');
    const w = await member(c.url(0), 'bulk', room);
    const N = 1234;
    await sendMany(w, room, N, 'p', 200);
    await storedCount(w, room, N);
    const s = await connect(c.url(1), 'pager');
    let since = 0;
    const all = [];
    const pages = [];
    for (;;) {
        const a = await emitAck(s, 'join', { room, since }, slow(20000));
        assert.equal(a.ok, true, JSON.stringify(a).slice(0, 300));
        assert.equal(a.seq, N);
        assert.ok(a.missed.length <= 500, `missed ${a.missed.length} > 500`);
        pages.push([a.missed.length, a.more]);
        all.push(...a.missed);
        if (!a.more) break;
        assert.ok(a.missed.length > 0, 'more with an empty page');
        since = a.missed[a.missed.length - 1].seq;
        assert.ok(pages.length < 10, 'too many pages');
    }
    assert.deepEqual(pages, [[500, true], [500, true], [234, false]]);
    assertDense(all.map((m) => m.seq), 1);
    for (const m of all) assert.equal(m.text, `p ${m.id.slice(1)}`);
    // exactly 500 left: more is false
    const b = await emitAck(s, 'join', { room, since: N - 500 });
    assert.deepEqual([b.missed.length, b.more], [500, false]);
    const b2 = await emitAck(s, 'join', { room, since: N - 501 });
    assert.deepEqual([b2.missed.length, b2.more], [500, true]);
    assert.equal(b2.missed[0].seq, N - 500);
});

it('history pages backwards with before through a long room', async (t, c) => {
    const room = uniq('hpage');
    const w = await member(c.url(1), 'hbulk', room);
    const N = 450;
    await sendMany(w, room, N, 'q', 150);
    await storedCount(w, room, N);
    const s = await connect(c.url(0), 'hreader');
    let before;
    const seen = [];
    for (let pages = 0; ; pages++) {
        assert.ok(pages < 10);
        const h = await emitAck(s, 'history', before === undefined ? { room, limit: 200 } : { room, limit: 200, before });
        assert.equal(h.ok, true);
        seen.unshift(...h.messages.map((m) => m.seq));
        if (!h.more) break;
        before = h.messages[0].seq;
    }
    assertDense(seen, 1);
    assert.equal(seen.length, N);
});

it('the join ack comes only once live delivery is on: every message stored after ack.seq arrives live', async (t, c) => {
    const room = uniq('race');
    // the sender is on node0; the joiners on node1, which has no member of the
    // room before each join (so each join must subscribe before its ack)
    const w = await member(c.url(0), 'streamer', room);
    const N = 300;
    let done = false;
    const sending = (async () => {
        for (let i = 1; i <= N; i++) {
            const a = await emitAck(w, 'message', { room, id: `s${i}`, text: `s ${i}` }, slow(20000));
            assert.equal(a.ok, true);
            await sleep(4);
        }
        done = true;
    })();
    const joiners = [];
    for (let k = 0; k < 6 && !done; k++) {
        const s = await connect(c.url(1), `joiner${k}`);
        const a = await emitAck(s, 'join', { room });
        assert.equal(a.ok, true);
        joiners.push({ s, seq: a.seq });
        await sleep(150);
        // leave and disconnect some, so the node unsubscribes and must subscribe again
        if (k % 2 === 1) {
            const prev = joiners[k - 1];
            prev.final = seqsOf(prev.s, room);
            prev.s.close();
            prev.closed = true;
        }
    }
    await sending;
    await storedCount(w, room, N);
    for (const j of joiners.filter((x) => !x.closed)) {
        await until(`joiner (ack seq ${j.seq}) got everything up to ${N}`, () => {
            const got = seqsOf(j.s, room);
            return got.length && got[got.length - 1] >= N;
        }, slow(15000)).catch(() => {});
        const got = seqsOf(j.s, room).filter((q) => q > j.seq);
        const want = Array.from({ length: N - j.seq }, (_, i) => j.seq + 1 + i);
        const missing = want.filter((q) => !got.includes(q));
        assert.deepEqual(missing, [], `joined at seq ${j.seq}: missing live seqs ${missing.slice(0, 20)}`);
        assert.deepEqual(got, want, 'in order, once each');
    }
    for (const j of joiners.filter((x) => x.closed)) {
        // until it left, what it got after its ack was gapless too
        const got = j.final.filter((q) => q > j.seq);
        if (got.length) assertDense(got, j.seq + 1);
    }
});

it('missed and history merge by seq with live events after a reconnect', async (t, c) => {
    const room = uniq('catch');
    const w = await member(c.url(0), 'talker', room);
    const r1 = await member(c.url(1), 'roamer', room);
    await sendMany(w, room, 10, 'a', 1);
    await until('first 10 live', () => seqsOf(r1, room).length >= 10, slow(15000));
    const last = Math.max(...seqsOf(r1, room));
    r1.close();
    await sendMany(w, room, 15, 'b', 5);
    // reconnect (to the other node) and catch up
    const r2 = await connect(c.url(0), 'roamer');
    const a = await emitAck(r2, 'join', { room, since: last });
    assert.equal(a.ok, true);
    // messages stored by the time of the ack come in missed; later ones live
    await sendMany(w, room, 5, 'c', 1);
    await until('live after rejoin', () => seqsOf(r2, room).includes(30), slow(15000));
    const merged = new Map();
    for (const m of [...a.missed, ...r2.got.message.filter((x) => x.room === room)]) merged.set(m.seq, m);
    const seqs = [...merged.keys()].sort((x, y) => x - y);
    assertDense(seqs, last + 1);
    assert.equal(seqs[seqs.length - 1], 30);
    assert.ok(a.seq >= last, `ack seq ${a.seq}`);
    assert.deepEqual(a.missed.map((m) => m.seq), Array.from({ length: a.seq - last }, (_, i) => last + 1 + i));
});

it('typing crosses nodes to other members, not to the sender connection', async (t, c) => {
    const room = uniq('typ');
    const a = await member(c.url(0), 'ty1', room);
    const b = await member(c.url(1), 'ty2', room);
    const a2 = await member(c.url(1), 'ty1', room);
    assert.deepEqual(await emitAck(a, 'typing', { room }), { ok: true });
    assert.deepEqual(await waitFor(b, 'typing', (x) => x.room === room), { room, user: 'ty1' });
    assert.deepEqual(await waitFor(a2, 'typing', (x) => x.room === room), { room, user: 'ty1' });
    await sleep(300);
    assert.deepEqual(a.got.typing, []);
});

it('presence spans nodes: sorted distinct users joined on any node', async (t, c) => {
    const room = uniq('pres');
    const s = [
        await member(c.url(0), 'm-zoe', room),
        await member(c.url(1), 'm-al', room),
        await member(c.url(1), 'm-zoe', room),
        await member(c.url(0), 'M-Big', room),
    ];
    const q0 = await connect(c.url(0), 'q');
    const q1 = await connect(c.url(1), 'q');
    for (const q of [q0, q1]) {
        assert.deepEqual(await emitAck(q, 'presence', { room }), { ok: true, users: ['M-Big', 'm-al', 'm-zoe'] });
    }
    s[1].close();
    await until('m-al gone on both nodes', async () => {
        const p0 = await emitAck(q0, 'presence', { room });
        const p1 = await emitAck(q1, 'presence', { room });
        return JSON.stringify(p0.users) === '["M-Big","m-zoe"]' && JSON.stringify(p1.users) === '["M-Big","m-zoe"]';
    }, slow(5000));
    assert.equal((await emitAck(s[0], 'leave', { room })).ok, true);
    // m-zoe still has a connection on node1
    assert.deepEqual((await emitAck(q0, 'presence', { room })).users, ['M-Big', 'm-zoe']);
    s[2].close();
    await until('m-zoe gone', async () => JSON.stringify((await emitAck(q0, 'presence', { room })).users) === '["M-Big"]', slow(5000));
});

it('a node that stops (SIGTERM) takes its connections out of presence; the others keep working', async (t, c) => {
    const nd = await c.startNode(['--roles', 'socket,producer,fanout'], 'edge');
    const room = uniq('edge');
    const e = await member(nd.url, 'edgy', room);
    const q = await member(c.url(0), 'core', room);
    assert.deepEqual((await emitAck(q, 'presence', { room })).users, ['core', 'edgy']);
    assert.equal((await emitAck(e, 'message', { room, id: 'e1', text: 'from the edge' })).ok, true);
    await waitFor(q, 'message', (m) => m.id === 'e1', slow(15000));
    await waitFor(e, 'message', (m) => m.id === 'e1', slow(15000));
    const disc = new Promise((r) => e.once('disconnect', r));
    const r = await nd.stop();
    assert.deepEqual(r, { code: 0, signal: null }, 'SIGTERM exits 0');
    await disc;
    await until('edgy gone from presence', async () =>
        JSON.stringify((await emitAck(q, 'presence', { room })).users) === '["core"]', slow(10000));
    assert.equal((await emitAck(q, 'message', { room, id: 'after', text: 'still here' })).ok, true);
    await waitFor(q, 'message', (m) => m.id === 'after', slow(15000));
});
