// PROTOCOL.md "Rooms", "Client -> server events" (every event, ack shapes, error
// codes and their order), on one node with default settings.
import assert from 'node:assert/strict';
import {
    useCluster, connect, emitAck, waitFor, rawConnect, errCode, uniq, until, sleep, slow,
} from './cluster.mjs';

const ctx = useCluster({ nodes: 1, partitions: 4 });
const it = ctx.it;

async function member(c, user, room) {
    const s = await connect(c.url(0), user);
    const a = await emitAck(s, 'join', { room });
    assert.equal(a.ok, true, `join ${room} as ${user}: ${JSON.stringify(a)}`);
    return s;
}

// Sends n messages (ids m1..mn unless given) and waits for every ack ok.
async function send(s, room, n, prefix = 'm', textOf = (i) => `text ${i}`) {
    const acks = await Promise.all(Array.from({ length: n }, (_, i) =>
        emitAck(s, 'message', { room, id: `${prefix}${i + 1}`, text: textOf(i + 1) }, slow(15000))));
    for (const a of acks) assert.equal(a.ok, true, JSON.stringify(a));
}

// Waits until history shows `n` stored messages in the room.
async function stored(s, room, n) {
    return until(`${n} messages stored in ${room}`, async () => {
        const h = await emitAck(s, 'history', { room, limit: 1 });
        return h.ok && h.messages.length && h.messages[0].seq >= n;
    }, slow(20000), 100);
}

function isMessage(m, room) {
    assert.equal(typeof m, 'object');
    assert.deepEqual(Object.keys(m).sort(), ['id', 'room', 'seq', 'text', 'ts', 'user']);
    assert.equal(m.room, room);
    assert.ok(Number.isInteger(m.seq) && m.seq >= 1, `seq ${m.seq}`);
    assert.equal(typeof m.id, 'string');
    assert.equal(typeof m.user, 'string');
    assert.equal(typeof m.text, 'string');
    assert.ok(Number.isInteger(m.ts), `ts ${m.ts}`);
}

const EVENTS = ['join', 'leave', 'message', 'history', 'typing', 'presence'];
const payloadFor = (ev, room) => (ev === 'message' ? { room, id: 'x1', text: 'hi' } : { room });

// ---- rooms --------------------------------------------------------------------

it('valid room names can be joined (1-64 chars of [A-Za-z0-9_.:-])', async (t, c) => {
    const s = await connect(c.url(0), 'roomer');
    const names = ['a', 'r'.repeat(64), 'A-Za-z0-9_.:-', 'a:b:c', 'DM:x:y', 'dm', 'dmx:a:b', ':', '...', '0'];
    for (const room of names) {
        const a = await emitAck(s, 'join', { room });
        assert.equal(a.ok, true, `${room}: ${JSON.stringify(a)}`);
        assert.equal(a.room, room);
    }
});

const badRooms = [['empty', ''], ['65 chars', 'r'.repeat(65)], ['space', 'a b'], ['slash', 'a/b'],
    ['non-ASCII', 'café'], ['NUL', 'a\u0000'], ['number', 12], ['null', null], ['array', ['a']],
    ['object', { room: 'a' }], ['missing', undefined]];

for (const ev of EVENTS) {
    it(`${ev}: an invalid room name is bad_request`, async (t, c) => {
        const s = await connect(c.url(0), 'badroomer');
        for (const [what, room] of badRooms) {
            const p = payloadFor(ev, room);
            if (room === undefined) delete p.room;
            const a = await emitAck(s, ev, p);
            assert.equal(errCode(a), 'bad_request', `${ev} with room ${what}: ${JSON.stringify(a)}`);
        }
    });
}

it('dm rooms: dm:A:B with A < B may be joined by A and B, up to 68 chars', async (t, c) => {
    const a32 = 'A'.repeat(32);
    const b32 = 'b'.repeat(32);
    const cases = [['alice', 'dm:alice:bob'], ['bob', 'dm:alice:bob'], ['B', 'dm:B:a'], ['a', 'dm:B:a'],
        [a32, `dm:${a32}:${b32}`], [b32, `dm:${a32}:${b32}`], ['x.y', 'dm:x-y:x.y'], ['a_1', 'dm:a-1:a_1']];
    assert.equal(`dm:${a32}:${b32}`.length, 68);
    for (const [user, room] of cases) {
        const s = await connect(c.url(0), user);
        const j = await emitAck(s, 'join', { room });
        assert.equal(j.ok, true, `${user} join ${room}: ${JSON.stringify(j)}`);
        s.close();
    }
});

const badDms = ['dm:bob:alice', 'dm:alice:alice', 'dm:alice', 'dm:alice:', 'dm::alice', 'dm:', 'dm::',
    'dm:alice:bob:carol', 'dm:al ice:bob', 'dm:alice:b/b', `dm:alice:${'z'.repeat(33)}`, 'dm:a:B',
    `dm:${'a'.repeat(33)}:zz`, 'dm:alice:bob:', 'dm:alice::bob'];

for (const ev of EVENTS) {
    it(`${ev}: any other dm: form is bad_request (even from a named user)`, async (t, c) => {
        const s = await connect(c.url(0), 'alice');
        for (const room of badDms) {
            const a = await emitAck(s, ev, payloadFor(ev, room));
            assert.equal(errCode(a), 'bad_request', `${ev} ${room}: ${JSON.stringify(a)}`);
        }
    });
}

it('every event on dm:A:B from another user is forbidden', async (t, c) => {
    const s = await connect(c.url(0), 'carol');
    for (const ev of EVENTS) {
        const a = await emitAck(s, ev, payloadFor(ev, 'dm:alice:bob'));
        assert.equal(errCode(a), 'forbidden', `${ev}: ${JSON.stringify(a)}`);
    }
    // with since, before and limit too
    assert.equal(errCode(await emitAck(s, 'join', { room: 'dm:alice:bob', since: 0 })), 'forbidden');
    assert.equal(errCode(await emitAck(s, 'history', { room: 'dm:alice:bob', before: 5, limit: 3 })), 'forbidden');
});

it('dm participants exchange messages; history and presence are open to them, not to others', async (t, c) => {
    const room = `dm:${uniq('a').replace(/-/g, '_')}:zz`;
    const userA = room.split(':')[1];
    const a = await member(c, userA, room);
    const z = await member(c, 'zz', room);
    const ack = await emitAck(a, 'message', { room, id: 'd1', text: 'psst' });
    assert.deepEqual(ack, { ok: true, id: 'd1' });
    const got = await waitFor(z, 'message', (m) => m.id === 'd1');
    assert.equal(got.text, 'psst');
    const p = await emitAck(z, 'presence', { room });
    assert.deepEqual(p, { ok: true, users: [userA, 'zz'].sort() });
    await stored(a, room, 1);
    // a participant that has not joined (another connection) may read history
    const a2 = await connect(c.url(0), userA);
    const h = await emitAck(a2, 'history', { room });
    assert.equal(h.ok, true, JSON.stringify(h));
    assert.equal(h.messages.length, 1);
    const other = await connect(c.url(0), 'eve');
    assert.equal(errCode(await emitAck(other, 'history', { room })), 'forbidden');
    assert.equal(errCode(await emitAck(other, 'presence', { room })), 'forbidden');
});

// ---- error order ---------------------------------------------------------------

it('error order: bad_request before too_large', async (t, c) => {
    const room = uniq();
    const s = await member(c, 'orderer', room);
    const big = 'a'.repeat(5000);
    assert.equal(errCode(await emitAck(s, 'message', { room, id: '', text: big })), 'bad_request');
    assert.equal(errCode(await emitAck(s, 'message', { room: 'a b', id: 'x', text: big })), 'bad_request');
    assert.equal(errCode(await emitAck(s, 'message', { room, text: big })), 'bad_request');
    assert.equal(errCode(await emitAck(s, 'message', { room, id: 'x', text: big + '\ud800' })), 'bad_request');
});

it('error order: bad_request before forbidden', async (t, c) => {
    const s = await connect(c.url(0), 'carol');
    const dm = 'dm:alice:bob';
    assert.equal(errCode(await emitAck(s, 'message', { room: dm, id: 'x', text: '' })), 'bad_request');
    assert.equal(errCode(await emitAck(s, 'message', { room: dm, id: '', text: 'hi' })), 'bad_request');
    assert.equal(errCode(await emitAck(s, 'join', { room: dm, since: -1 })), 'bad_request');
    assert.equal(errCode(await emitAck(s, 'history', { room: dm, limit: 0 })), 'bad_request');
    assert.equal(errCode(await emitAck(s, 'history', { room: dm, before: 'x' })), 'bad_request');
});

it('error order: too_large before forbidden and before not_member', async (t, c) => {
    const s = await connect(c.url(0), 'carol');
    const big = 'b'.repeat(4097);
    assert.equal(errCode(await emitAck(s, 'message', { room: 'dm:alice:bob', id: 'x', text: big })), 'too_large');
    assert.equal(errCode(await emitAck(s, 'message', { room: uniq(), id: 'x', text: big })), 'too_large');
});

it('error order: forbidden before not_member', async (t, c) => {
    const s = await connect(c.url(0), 'carol');
    assert.equal(errCode(await emitAck(s, 'message', { room: 'dm:alice:bob', id: 'x', text: 'hi' })), 'forbidden');
    assert.equal(errCode(await emitAck(s, 'typing', { room: 'dm:alice:bob' })), 'forbidden');
});

it('error order: bad_request before not_member', async (t, c) => {
    const s = await connect(c.url(0), 'loner');
    const room = uniq();
    assert.equal(errCode(await emitAck(s, 'message', { room, id: 'x', text: '' })), 'bad_request');
    assert.equal(errCode(await emitAck(s, 'message', { room, id: 'x', text: 5 })), 'bad_request');
});

it('error acks carry {ok:false, error:{code, message}} with string fields', async (t, c) => {
    const s = await connect(c.url(0), 'shape');
    const a = await emitAck(s, 'message', { room: uniq(), id: 'x', text: 'hi' });
    assert.equal(a.ok, false);
    assert.deepEqual(Object.keys(a).sort(), ['error', 'ok']);
    assert.deepEqual(Object.keys(a.error).sort(), ['code', 'message']);
    assert.equal(a.error.code, 'not_member');
    assert.equal(typeof a.error.message, 'string');
});

// ---- malformed events ------------------------------------------------------------

it('unknown event names are bad_request "unknown event"', async (t, c) => {
    const s = await connect(c.url(0), 'unknown');
    for (const ev of ['foo', 'Message', 'JOIN', 'join ', 'disconnect_me', 'x'.repeat(100)]) {
        const a = await emitAck(s, ev, { room: 'a' });
        assert.deepEqual(a, { ok: false, error: { code: 'bad_request', message: 'unknown event' } }, ev);
    }
    const a = await emitAck(s, 'nosuchevent');
    assert.deepEqual(a, { ok: false, error: { code: 'bad_request', message: 'unknown event' } });
    assert.equal(s.connected, true);
});

it('a payload that is not an object is bad_request', async (t, c) => {
    const s = await connect(c.url(0), 'shapeless');
    for (const ev of EVENTS) {
        for (const p of [undefined, null, 'room', 5, ['room'], true]) {
            const a = await emitAck(s, ev, p);
            assert.equal(errCode(a), 'bad_request', `${ev} ${JSON.stringify(p)}: ${JSON.stringify(a)}`);
        }
    }
});

it('a lone surrogate in any string is bad_request through the ack id; the connection stays up', async (t, c) => {
    const room = uniq();
    const s = await member(c, 'surrogate', room);
    const cases = [
        ['message', { room, id: 's1', text: 'a\ud800b' }],
        ['message', { room, id: 's2', text: '\udfff' }],
        ['message', { room, id: 's\udc00', text: 'ok' }],
        ['join', { room: room + '\ud83d' }],
        ['history', { room: '\ude00' }],
        ['presence', { room: 'x\udbff' }],
        ['typing', { room: '\ud800' }],
    ];
    for (const [ev, p] of cases) {
        const a = await emitAck(s, ev, p);
        assert.equal(errCode(a), 'bad_request', `${ev} ${JSON.stringify(p)}: ${JSON.stringify(a)}`);
    }
    assert.equal(s.connected, true);
    // a valid surrogate pair is fine
    const ok = await emitAck(s, 'message', { room, id: 's3', text: 'smile \u{1F600}' });
    assert.deepEqual(ok, { ok: true, id: 's3' });
    const m = await waitFor(s, 'message', (x) => x.id === 's3');
    assert.equal(m.text, 'smile \u{1F600}');
    // and the lone-surrogate messages were never stored
    await sleep(300);
    assert.deepEqual(s.got.message.filter((x) => x.room === room).map((x) => x.id), ['s3']);
});

it('an event whose JSON cannot be decoded is answered bad_request through its ack id; the connection stays up', async (t, c) => {
    const r = await rawConnect(c.url(0), { user: 'garbler' });
    const bad = ['4212["message",{"room":', '4213["message",{room:"a"}]', '4214["message",{"room":"a",}]',
        '4215[', '4216["join",{"room":"a"}', '4217["join",{"room":"\\ud800"}]', '4218{"room":"a"}'];
    for (const f of bad) r.send(f);
    for (let id = 12; id <= 18; id++) {
        const a = await r.ack(id);
        assert.equal(errCode(a), 'bad_request', `ack ${id}: ${JSON.stringify(a)}`);
    }
    r.send('4219["presence",{"room":"a"}]');
    const ok = await r.ack(19);
    assert.equal(ok.ok, true);
    assert.equal(r.closeInfo, null);
    // exactly one ack per id
    await sleep(200);
    for (let id = 12; id <= 19; id++) {
        assert.equal(r.frames.filter((f) => typeof f === 'string' && f.startsWith(`43${id}[`)).length, 1, `acks for ${id}`);
    }
    r.close();
});

it('an event without an ack id is processed the same but not answered', async (t, c) => {
    const room = uniq();
    const r = await rawConnect(c.url(0), { user: 'noacker' });
    r.send(`421["join",${JSON.stringify({ room })}]`);
    assert.equal((await r.ack(1)).ok, true);
    r.send(`42["message",${JSON.stringify({ room, id: 'na1', text: 'no ack wanted' })}]`);
    const f = await r.next((x) => typeof x === 'string' && x.startsWith('42["message"'), slow(15000));
    const [, m] = JSON.parse(f.slice(2));
    assert.equal(m.id, 'na1');
    assert.equal(m.text, 'no ack wanted');
    // an invalid event without ack id gets no answer either, and nothing breaks
    r.send('42["message",{"room":"a b"}]');
    r.send('42["nosuchevent",{}]');
    r.send('422["presence",{"room":"a"}]');
    assert.equal((await r.ack(2)).ok, true);
    assert.deepEqual(r.frames.filter((x) => typeof x === 'string' && x.startsWith('43') && !/^43[12]\[/.test(x)), []);
    r.close();
});

// ---- join / leave ------------------------------------------------------------------

it('join ack on an empty room is {ok, room, seq: 0, missed: [], more: false}', async (t, c) => {
    const s = await connect(c.url(0), 'joiner');
    const room = uniq();
    assert.deepEqual(await emitAck(s, 'join', { room }), { ok: true, room, seq: 0, missed: [], more: false });
    const room2 = uniq();
    assert.deepEqual(await emitAck(s, 'join', { room: room2, since: 0 }), { ok: true, room: room2, seq: 0, missed: [], more: false });
});

it('join is idempotent: same ack, one membership, one delivery per message', async (t, c) => {
    const room = uniq();
    const s = await connect(c.url(0), 'idem');
    const a1 = await emitAck(s, 'join', { room });
    const a2 = await emitAck(s, 'join', { room });
    assert.deepEqual(a1, a2);
    assert.deepEqual(await emitAck(s, 'presence', { room }), { ok: true, users: ['idem'] });
    await send(s, room, 1);
    await waitFor(s, 'message', (m) => m.room === room);
    await sleep(500);
    assert.equal(s.got.message.filter((m) => m.room === room).length, 1);
    // joining again after messages: seq moves, missed empty without since
    const a3 = await emitAck(s, 'join', { room });
    assert.deepEqual(a3, { ok: true, room, seq: 1, missed: [], more: false });
});

it('join since must be an integer >= 0', async (t, c) => {
    const s = await connect(c.url(0), 'sincer');
    const room = uniq();
    for (const since of [-1, 1.5, '0', '', true, [], {}, Number.MAX_SAFE_INTEGER * 4]) {
        const a = await emitAck(s, 'join', { room, since });
        if (since === Number.MAX_SAFE_INTEGER * 4) {
            // beyond 2^53 is still an integer to JSON; either answer is defensible, but never a crash
            assert.ok(a.ok === true || errCode(a) === 'bad_request', JSON.stringify(a));
            continue;
        }
        assert.equal(errCode(a), 'bad_request', `since ${JSON.stringify(since)}: ${JSON.stringify(a)}`);
    }
    assert.equal(s.connected, true);
});

it('join ack seq is the latest stored seq; since returns missed in order', async (t, c) => {
    const room = uniq();
    const w = await member(c, 'writer', room);
    await send(w, room, 7);
    await stored(w, room, 7);
    const s = await connect(c.url(0), 'latecomer');
    const a = await emitAck(s, 'join', { room });
    assert.deepEqual(a, { ok: true, room, seq: 7, missed: [], more: false });
    const b = await emitAck(s, 'join', { room, since: 4 });
    assert.equal(b.ok, true);
    assert.equal(b.seq, 7);
    assert.equal(b.more, false);
    assert.deepEqual(b.missed.map((m) => m.seq), [5, 6, 7]);
    for (const m of b.missed) isMessage(m, room);
    assert.equal(b.missed[0].user, 'writer');
    const c0 = await emitAck(s, 'join', { room, since: 0 });
    assert.deepEqual(c0.missed.map((m) => m.seq), [1, 2, 3, 4, 5, 6, 7]);
    const c7 = await emitAck(s, 'join', { room, since: 7 });
    assert.deepEqual(c7, { ok: true, room, seq: 7, missed: [], more: false });
    const c99 = await emitAck(s, 'join', { room, since: 99 });
    assert.deepEqual(c99, { ok: true, room, seq: 7, missed: [], more: false });
});

it('leave: {ok, room}; idempotent; leaving a room not joined is ok', async (t, c) => {
    const room = uniq();
    const s = await member(c, 'leaver', room);
    assert.deepEqual(await emitAck(s, 'leave', { room }), { ok: true, room });
    assert.deepEqual(await emitAck(s, 'leave', { room }), { ok: true, room });
    const other = uniq();
    assert.deepEqual(await emitAck(s, 'leave', { room: other }), { ok: true, room: other });
});

it('after leave: no more messages, message is not_member, presence drops the user', async (t, c) => {
    const room = uniq();
    const s = await member(c, 'quitter', room);
    const w = await member(c, 'stayer', room);
    assert.deepEqual(await emitAck(w, 'presence', { room }), { ok: true, users: ['quitter', 'stayer'] });
    assert.equal((await emitAck(s, 'leave', { room })).ok, true);
    assert.deepEqual(await emitAck(w, 'presence', { room }), { ok: true, users: ['stayer'] });
    assert.equal(errCode(await emitAck(s, 'message', { room, id: 'q1', text: 'hi' })), 'not_member');
    assert.equal(errCode(await emitAck(s, 'typing', { room })), 'not_member');
    await send(w, room, 1, 'after');
    await waitFor(w, 'message', (m) => m.room === room);
    await sleep(300);
    assert.deepEqual(s.got.message.filter((m) => m.room === room), []);
});

// ---- message -------------------------------------------------------------------

it('message: ack {ok, id}; the sender gets the message event with room, seq, id, user, text, ts', async (t, c) => {
    const room = uniq();
    const s = await member(c, 'talker', room);
    const t0 = Date.now();
    const a = await emitAck(s, 'message', { room, id: 'hello-1', text: 'hello world' });
    const t1 = Date.now();
    assert.deepEqual(a, { ok: true, id: 'hello-1' });
    const m = await waitFor(s, 'message', (x) => x.room === room);
    isMessage(m, room);
    assert.deepEqual({ ...m, ts: 0 }, { room, seq: 1, id: 'hello-1', user: 'talker', text: 'hello world', ts: 0 });
    assert.ok(m.ts >= t0 - 1000 && m.ts <= t1 + 1000, `ts ${m.ts} outside [${t0}, ${t1}]`);
});

it('message requires membership (not_member)', async (t, c) => {
    const s = await connect(c.url(0), 'outsider');
    const a = await emitAck(s, 'message', { room: uniq(), id: 'x', text: 'hi' });
    assert.equal(errCode(a), 'not_member');
});

it('message id: 1-64 bytes of printable ASCII', async (t, c) => {
    const room = uniq();
    const s = await member(c, 'ider', room);
    const good = ['a', 'i'.repeat(64), '~!@#$%^&*()_+{}|:"<>?[];\',./`', '0', '-', '{"json":1}', 'with space'];
    for (const id of good) {
        const a = await emitAck(s, 'message', { room, id, text: 'x' }, slow(15000));
        assert.deepEqual(a, { ok: true, id }, `id ${JSON.stringify(id)}`);
    }
    const bad = ['', 'i'.repeat(65), 'tab\there', 'nl\n', '\u007f', 'é', '\u0000', '\u{1F600}', 5, null, true, ['a'], {}];
    for (const id of bad) {
        const a = await emitAck(s, 'message', { room, id, text: 'x' });
        assert.equal(errCode(a), 'bad_request', `id ${JSON.stringify(id)}: ${JSON.stringify(a)}`);
    }
    const a = await emitAck(s, 'message', { room, text: 'no id' });
    assert.equal(errCode(a), 'bad_request');
});

it('message text: 1-4096 bytes of UTF-8 (4096 ok, 4097 too_large, counted in bytes)', async (t, c) => {
    const room = uniq();
    const s = await member(c, 'texter', room);
    const ok = [['1 byte', 'x'], ['4096 ASCII', 'a'.repeat(4096)], ['2048 é = 4096 bytes', 'é'.repeat(2048)],
        ['1024 emoji = 4096 bytes', '\u{1F600}'.repeat(1024)], ['control chars', 'a\u0001b\tc\n\u001f'],
        ['2-byte + 3-byte', 'é€'.repeat(819) + 'a']];
    let n = 0;
    for (const [what, text] of ok) {
        const id = `t${++n}`;
        const a = await emitAck(s, 'message', { room, id, text }, slow(15000));
        assert.deepEqual(a, { ok: true, id }, `${what}: ${JSON.stringify(a)}`);
        const m = await waitFor(s, 'message', (x) => x.room === room && x.id === id, slow(15000));
        assert.equal(m.text, text, what);
    }
    const big = [['4097 ASCII', 'a'.repeat(4097)], ['2049 é = 4098 bytes', 'é'.repeat(2049)],
        ['2100 chars, 4200 bytes', 'é'.repeat(2100)], ['1025 emoji', '\u{1F600}'.repeat(1025)],
        ['60000 bytes', 'z'.repeat(60000)]];
    for (const [what, text] of big) {
        const a = await emitAck(s, 'message', { room, id: `big${++n}`, text });
        assert.equal(errCode(a), 'too_large', `${what}: ${JSON.stringify(a)}`);
    }
    const bad = [['empty', ''], ['number', 5], ['null', null], ['array', ['a']], ['object', { t: 'a' }], ['bool', false]];
    for (const [what, text] of bad) {
        const a = await emitAck(s, 'message', { room, id: `bad${++n}`, text });
        assert.equal(errCode(a), 'bad_request', `${what}: ${JSON.stringify(a)}`);
    }
    assert.equal(errCode(await emitAck(s, 'message', { room, id: 'notext' })), 'bad_request');
});

it('message text may contain U+0000 (valid UTF-8, a Unicode scalar value)', async (t, c) => {
    const room = uniq();
    const s = await member(c, 'nuller', room);
    const a = await emitAck(s, 'message', { room, id: 'nul', text: 'a\u0000b' });
    assert.deepEqual(a, { ok: true, id: 'nul' });
    const m = await waitFor(s, 'message', (x) => x.room === room && x.id === 'nul', slow(15000));
    assert.equal(m.text, 'a\u0000b');
});

it('a retry with the same id gets the same ack; stored and delivered once with its first text and ts', async (t, c) => {
    const room = uniq();
    const s = await member(c, 'retrier', room);
    const b = await member(c, 'bystander', room);
    const a1 = await emitAck(s, 'message', { room, id: 'same', text: 'first' });
    assert.deepEqual(a1, { ok: true, id: 'same' });
    const m1 = await waitFor(b, 'message', (m) => m.id === 'same');
    await sleep(50);
    const a2 = await emitAck(s, 'message', { room, id: 'same', text: 'second' });
    assert.deepEqual(a2, a1);
    // concurrent duplicates too
    const many = await Promise.all(Array.from({ length: 10 }, (_, i) =>
        emitAck(s, 'message', { room, id: 'same', text: `dup ${i}` })));
    for (const a of many) assert.deepEqual(a, a1);
    // a marker after the retries: once it is here, any duplicate would be too
    assert.equal((await emitAck(s, 'message', { room, id: 'marker', text: 'end' })).ok, true);
    await waitFor(b, 'message', (m) => m.id === 'marker', slow(15000));
    await waitFor(s, 'message', (m) => m.id === 'marker', slow(15000));
    await sleep(300);
    for (const sock of [s, b]) {
        const got = sock.got.message.filter((m) => m.room === room);
        assert.deepEqual(got.map((m) => [m.seq, m.id, m.text]), [[1, 'same', 'first'], [2, 'marker', 'end']]);
    }
    const h = await emitAck(b, 'history', { room });
    assert.deepEqual(h.messages.map((m) => [m.seq, m.id, m.text]), [[1, 'same', 'first'], [2, 'marker', 'end']]);
    assert.equal(h.messages[0].ts, m1.ts, 'ts kept');
});

it('ids are unique per (user, room): the same id from another user or in another room is another message', async (t, c) => {
    const room = uniq();
    const room2 = uniq();
    const a = await member(c, 'ann', room);
    assert.equal((await emitAck(a, 'join', { room: room2 })).ok, true);
    const b = await member(c, 'ben', room);
    assert.equal((await emitAck(a, 'message', { room, id: 'k', text: 'from ann' })).ok, true);
    assert.equal((await emitAck(b, 'message', { room, id: 'k', text: 'from ben' })).ok, true);
    assert.equal((await emitAck(a, 'message', { room: room2, id: 'k', text: 'ann elsewhere' })).ok, true);
    await stored(a, room, 2);
    await stored(a, room2, 1);
    const h = await emitAck(a, 'history', { room });
    assert.deepEqual(h.messages.map((m) => `${m.user}:${m.text}`).sort(), ['ann:from ann', 'ben:from ben']);
    const h2 = await emitAck(a, 'history', { room: room2 });
    assert.deepEqual(h2.messages.map((m) => m.text), ['ann elsewhere']);
});

// ---- history -------------------------------------------------------------------

let histRoom = null;
async function historyRoom(c) {
    if (!histRoom) {
        histRoom = uniq('hist');
        const w = await member(c, 'historian', histRoom);
        // in order, so seq i holds text i
        for (let i = 1; i <= 60; i++) {
            const a = await emitAck(w, 'message', { room: histRoom, id: `h${i}`, text: `t${i}` });
            assert.equal(a.ok, true, JSON.stringify(a));
        }
        await stored(w, histRoom, 60);
        w.close();
    }
    return histRoom;
}

it('history: default limit 50, newest first in ascending seq, more when older exist', async (t, c) => {
    const room = await historyRoom(c);
    const s = await connect(c.url(0), 'reader');
    const h = await emitAck(s, 'history', { room });
    assert.equal(h.ok, true);
    assert.deepEqual(Object.keys(h).sort(), ['messages', 'more', 'ok']);
    assert.deepEqual(h.messages.map((m) => m.seq), Array.from({ length: 50 }, (_, i) => i + 11));
    assert.equal(h.more, true);
    for (const m of h.messages) {
        isMessage(m, room);
        assert.equal(m.text, `t${m.seq}`);
        assert.equal(m.id, `h${m.seq}`);
        assert.equal(m.user, 'historian');
    }
});

it('history: limit 1..200 and before', async (t, c) => {
    const room = await historyRoom(c);
    const s = await connect(c.url(0), 'reader2');
    const seqs = async (p) => {
        const h = await emitAck(s, 'history', { room, ...p });
        assert.equal(h.ok, true, JSON.stringify(h));
        return [h.messages.map((m) => m.seq), h.more];
    };
    const range = (a, b) => Array.from({ length: b - a + 1 }, (_, i) => a + i);
    assert.deepEqual(await seqs({ limit: 200 }), [range(1, 60), false]);
    assert.deepEqual(await seqs({ limit: 60 }), [range(1, 60), false]);
    assert.deepEqual(await seqs({ limit: 59 }), [range(2, 60), true]);
    assert.deepEqual(await seqs({ limit: 1 }), [[60], true]);
    assert.deepEqual(await seqs({ before: 11, limit: 5 }), [range(6, 10), true]);
    assert.deepEqual(await seqs({ before: 6, limit: 5 }), [range(1, 5), false]);
    assert.deepEqual(await seqs({ before: 6 }), [range(1, 5), false]);
    assert.deepEqual(await seqs({ before: 2, limit: 200 }), [[1], false]);
    assert.deepEqual(await seqs({ before: 1 }), [[], false]);
    assert.deepEqual(await seqs({ before: 0 }), [[], false]);
    assert.deepEqual(await seqs({ before: 1000 }), [range(11, 60), true]);
    assert.deepEqual(await seqs({ before: 61, limit: 10 }), [range(51, 60), true]);
    assert.deepEqual(await seqs({ before: 60, limit: 200 }), [range(1, 59), false]);
});

it('history: bad limit or before is bad_request', async (t, c) => {
    const s = await connect(c.url(0), 'reader3');
    const room = uniq();
    for (const limit of [0, 201, -1, 1.5, '5', true, [], 1e9]) {
        assert.equal(errCode(await emitAck(s, 'history', { room, limit })), 'bad_request', `limit ${JSON.stringify(limit)}`);
    }
    for (const before of [1.5, '10', true, {}, []]) {
        assert.equal(errCode(await emitAck(s, 'history', { room, before })), 'bad_request', `before ${JSON.stringify(before)}`);
    }
});

it('history: an empty room is {ok, messages: [], more: false}; open to non-members', async (t, c) => {
    const s = await connect(c.url(0), 'nonmember');
    assert.deepEqual(await emitAck(s, 'history', { room: uniq() }), { ok: true, messages: [], more: false });
    const room = await historyRoom(c);
    const h = await emitAck(s, 'history', { room, limit: 3 });
    assert.deepEqual(h.messages.map((m) => m.seq), [58, 59, 60]);
});

// ---- typing ----------------------------------------------------------------------

it('typing: requires membership; ack {ok}; other members get {room, user}, the sender connection does not', async (t, c) => {
    const room = uniq();
    const s1 = await member(c, 'typist', room);
    const s2 = await member(c, 'typist', room); // same user, other connection
    const o = await member(c, 'watcher', room);
    const nm = await connect(c.url(0), 'nottyping');
    assert.equal(errCode(await emitAck(nm, 'typing', { room })), 'not_member');
    assert.deepEqual(await emitAck(s1, 'typing', { room }), { ok: true });
    assert.deepEqual(await waitFor(o, 'typing', (x) => x.room === room), { room, user: 'typist' });
    assert.deepEqual(await waitFor(s2, 'typing', (x) => x.room === room), { room, user: 'typist' });
    await sleep(300);
    assert.deepEqual(s1.got.typing, []);
    assert.deepEqual(nm.got.typing, []);
    // never stored
    assert.deepEqual(await emitAck(o, 'history', { room }), { ok: true, messages: [], more: false });
    assert.deepEqual(s1.got.message, []);
});

// ---- presence --------------------------------------------------------------------

it('presence: sorted distinct users of live joined connections; open to non-members', async (t, c) => {
    const room = uniq();
    const zed = await member(c, 'zed', room);
    const amy1 = await member(c, 'amy', room);
    const amy2 = await member(c, 'amy', room);
    const bob = await member(c, 'Bob', room);
    const idle = await connect(c.url(0), 'idle'); // connected, not joined
    const q = await connect(c.url(0), 'asker');
    assert.deepEqual(await emitAck(q, 'presence', { room }), { ok: true, users: ['Bob', 'amy', 'zed'] });
    amy1.close();
    // one amy connection is still joined
    await sleep(300);
    assert.deepEqual(await emitAck(q, 'presence', { room }), { ok: true, users: ['Bob', 'amy', 'zed'] });
    amy2.close();
    await until('amy gone from presence', async () => {
        const p = await emitAck(q, 'presence', { room });
        return JSON.stringify(p.users) === JSON.stringify(['Bob', 'zed']);
    }, slow(5000));
    assert.equal((await emitAck(bob, 'leave', { room })).ok, true);
    assert.deepEqual(await emitAck(q, 'presence', { room }), { ok: true, users: ['zed'] });
    zed.disconnect();
    await until('zed gone after disconnect', async () => {
        const p = await emitAck(q, 'presence', { room });
        return p.ok && p.users.length === 0;
    }, slow(5000));
    assert.deepEqual(await emitAck(q, 'presence', { room: uniq() }), { ok: true, users: [] });
    idle.close();
});
