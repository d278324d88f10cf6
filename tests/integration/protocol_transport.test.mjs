// PROTOCOL.md "Transport" and "Identity", from outside.
import assert from 'node:assert/strict';
import {
    useCluster, within, connect, connectError, emitAck, rawConnect, httpGet, errCode, uniq, sleep, slow,
} from './cluster.mjs';

const ctx = useCluster({ nodes: 1, partitions: 2 });
const it = ctx.it;
const PING_INTERVAL = 400;
const PING_TIMEOUT = 300;
let pingNode; // a socket-only node with short ping settings, started on demand

async function getPingNode(c) {
    if (!pingNode) {
        // no consumer role: joining the consumer group would stall the other node
        pingNode = await c.startNode(['--roles', 'socket,producer,fanout',
            '--ping-interval-ms', String(PING_INTERVAL), '--ping-timeout-ms', String(PING_TIMEOUT)], 'pingnode');
    }
    return pingNode;
}

let namesNode; // a socket-only node in name-only mode (--auth none), started on demand

async function getNamesNode(c) {
    namesNode ||= await c.startNode(['--roles', 'socket,producer,fanout', '--auth', 'none'], 'namesnode');
    return namesNode;
}

// ---- transport ----------------------------------------------------------------

it('open packet carries sid, upgrades [], pingInterval, pingTimeout, maxPayload >= 65536', async (t, c) => {
    const r = await rawConnect(c.url(0), { connect: false });
    const o = r.open;
    assert.equal(typeof o.sid, 'string');
    assert.ok(o.sid.length > 0, 'sid not empty');
    assert.deepEqual(o.upgrades, []);
    assert.ok(Number.isInteger(o.pingInterval) && o.pingInterval > 0, `pingInterval ${o.pingInterval}`);
    assert.ok(Number.isInteger(o.pingTimeout) && o.pingTimeout > 0, `pingTimeout ${o.pingTimeout}`);
    assert.ok(Number.isInteger(o.maxPayload) && o.maxPayload >= 65536, `maxPayload ${o.maxPayload}`);
    r.close();
});

it('open packet reflects --ping-interval-ms and --ping-timeout-ms', async (t, c) => {
    const nd = await getPingNode(c);
    const r = await rawConnect(nd.url, { connect: false });
    assert.equal(r.open.pingInterval, PING_INTERVAL);
    assert.equal(r.open.pingTimeout, PING_TIMEOUT);
    r.close();
});

it('Socket.IO CONNECT to the default namespace answers 40{"sid"} and events use 42/43 packets', async (t, c) => {
    const r = await rawConnect(c.url(0), { user: 'rawuser' });
    assert.equal(typeof r.sid, 'string');
    assert.ok(r.sid.length > 0);
    const room = uniq('raw');
    r.send(`427["presence",${JSON.stringify({ room })}]`);
    const ack = await r.ack(7);
    assert.deepEqual(ack, { ok: true, users: [] });
    r.close();
});

it('the official client connects unmodified over the websocket transport', async (t, c) => {
    const s = await connect(c.url(0), 'alice');
    assert.equal(s.connected, true);
    assert.equal(typeof s.id, 'string');
    assert.equal(s.io.engine.transport.name, 'websocket');
    const ack = await emitAck(s, 'presence', { room: uniq() });
    assert.equal(ack.ok, true);
    s.close();
});

it('the server pings and a client that answers stays connected past several ping periods', async (t, c) => {
    const nd = await getPingNode(c);
    const r = await rawConnect(nd.url, { user: 'ponger' });
    const s = await connect(nd.url, 'ponger2');
    let disconnected = null;
    s.on('disconnect', (why) => { disconnected = why; });
    const start = Date.now();
    await sleep(4 * (PING_INTERVAL + PING_TIMEOUT));
    const pings = r.frames.filter((f) => f === '2').length;
    assert.ok(pings >= 3, `server sent ${pings} pings in ${Date.now() - start} ms (interval ${PING_INTERVAL})`);
    assert.equal(r.closeInfo, null, `raw client that pongs was closed: ${JSON.stringify(r.closeInfo)}`);
    assert.equal(disconnected, null, `official client disconnected: ${disconnected}`);
    const ack = await emitAck(s, 'presence', { room: uniq() });
    assert.equal(ack.ok, true);
    s.close();
    r.close();
});

it('a silent peer is dropped after pingInterval + pingTimeout', async (t, c) => {
    const nd = await getPingNode(c);
    const start = Date.now();
    const r = await rawConnect(nd.url, { user: 'silent', autoPong: false });
    const info = await within(r.closed, slow(10000));
    const elapsed = Date.now() - start;
    assert.ok(info, 'silent peer still connected after 10 s');
    const budget = PING_INTERVAL + PING_TIMEOUT;
    assert.ok(r.frames.includes('2'), 'the server never pinged');
    assert.ok(elapsed >= budget - 100, `dropped too early: ${elapsed} ms < ${budget} ms`);
    assert.ok(elapsed <= budget + slow(1500), `dropped late: ${elapsed} ms (pingInterval + pingTimeout = ${budget} ms)`);
});

it('a packet larger than maxPayload closes the connection with 1009', async (t, c) => {
    const r = await rawConnect(c.url(0), { user: 'bigsender' });
    const n = r.open.maxPayload + 10;
    const head = '421["message",{"room":"big","id":"b1","text":"';
    const tailStr = '"}]';
    r.send(head + 'a'.repeat(n - head.length - tailStr.length) + tailStr);
    const info = await within(r.closed, slow(5000));
    assert.ok(info, 'still open 5 s after an oversized packet');
    assert.equal(info.code, 1009);
});

it('a packet of exactly maxPayload bytes is not closed (a 4097+ byte text is too_large)', async (t, c) => {
    const r = await rawConnect(c.url(0), { user: 'edgesender' });
    const n = r.open.maxPayload;
    const head = '429["message",{"room":"big","id":"b2","text":"';
    const tailStr = '"}]';
    const pkt = head + 'a'.repeat(n - head.length - tailStr.length) + tailStr;
    assert.equal(Buffer.byteLength(pkt), n);
    r.send(pkt);
    const ack = await r.ack(9);
    assert.equal(errCode(ack), 'too_large');
    assert.equal(r.closeInfo, null);
    r.close();
});

it('a text frame that is not valid UTF-8 closes the connection with 1007', async (t, c) => {
    const r = await rawConnect(c.url(0), { user: 'badutf8' });
    const bytes = Buffer.concat([Buffer.from('421["presence",{"room":"'), Buffer.from([0xff, 0xfe, 0xc3]),
        Buffer.from('"}]')]);
    r.sendBuffer(bytes, false);
    const info = await within(r.closed, slow(5000));
    assert.ok(info, 'still open 5 s after invalid UTF-8');
    assert.equal(info.code, 1007);
});

it('an event with a binary attachment is bad_request and the connection stays up', async (t, c) => {
    const s = await connect(c.url(0), 'binsender');
    const room = uniq();
    assert.equal((await emitAck(s, 'join', { room })).ok, true);
    const ack = await emitAck(s, 'message', { room, id: 'bin1', text: Buffer.from('hello') });
    assert.equal(errCode(ack), 'bad_request');
    const ok = await emitAck(s, 'presence', { room });
    assert.deepEqual(ok, { ok: true, users: ['binsender'] });
    assert.equal(s.connected, true);
    s.close();
});

it('HTTP long-polling gets 400 with the exact body', async (t, c) => {
    const r = await httpGet(`${c.url(0)}/socket.io/?EIO=4&transport=polling`);
    assert.equal(r.status, 400);
    assert.equal(r.body, `{"code":0,"message":"HTTP long-polling is not supported: use transports: ['websocket']"}`);
    const r2 = await httpGet(`${c.url(0)}/socket.io/?EIO=4&transport=polling&t=abc`);
    assert.equal(r2.status, 400);
});

it('the official client restricted to polling gets connect_error', async (t, c) => {
    const e = await connectError(c.url(0), 'poller', { transports: ['polling'] });
    assert.ok(e instanceof Error);
});

// ---- identity -------------------------------------------------------------------

const validUsers = ['a', 'Z', '0', '_', '.', '-', 'alice', 'Bob_2.x-y', 'a'.repeat(32),
    'ABCDEFGHIJKLMNOPQRSTUVWXYZ012345', 'abcdefghijklmnopqrstuvwxyz6789_.'];

it('valid user names connect (1-32 chars of [A-Za-z0-9_.-])', async (t, c) => {
    for (const u of validUsers) {
        const s = await connect(c.url(0), u);
        assert.equal(s.connected, true, u);
        s.close();
    }
});

const invalidAuth = [
    ['empty', { user: '' }],
    ['33 chars', { user: 'a'.repeat(33) }],
    ['space', { user: 'al ice' }],
    ['slash', { user: 'a/b' }],
    ['colon', { user: 'a:b' }],
    ['non-ASCII', { user: 'bé' }],
    ['emoji', { user: '\u{1F600}' }],
    ['NUL', { user: 'a\u0000b' }],
    ['newline', { user: 'alice\n' }],
    ['number', { user: 42 }],
    ['null', { user: null }],
    ['array', { user: ['alice'] }],
    ['object', { user: { name: 'alice' } }],
    ['missing user', {}, 'names'],
    ['other field only', { name: 'alice' }, 'names'],
];

// A name given is checked in both modes; no name at all is "invalid user" in
// name-only mode (with tokens on it is a missing token: auth.test.mjs).
for (const [what, auth, mode] of invalidAuth) {
    it(`invalid user (${what}) gets connect_error "invalid user"`, async (t, c) => {
        const url = mode === 'names' ? (await getNamesNode(c)).url : c.url(0);
        const e = await connectError(url, undefined, { auth });
        assert.equal(e.message, 'invalid user');
        assert.deepEqual(e.data, undefined);
    });
}

it('no auth at all gets connect_error "invalid user" in name-only mode', async (t, c) => {
    const e = await connectError((await getNamesNode(c)).url, undefined, {});
    assert.equal(e.message, 'invalid user');
});

it('CONNECT_ERROR on the wire is exactly 44{"message":"invalid user"}', async (t, c) => {
    const r = await rawConnect(c.url(0), { connect: false });
    r.send('40{"user":"bad user"}');
    const f = await r.next((x) => typeof x === 'string' && x.startsWith('4'));
    assert.equal(f, '44{"message":"invalid user"}');
    r.close();
    const r2 = await rawConnect((await getNamesNode(c)).url, { connect: false });
    r2.send('40');
    const f2 = await r2.next((x) => typeof x === 'string' && x.startsWith('4'));
    assert.equal(f2, '44{"message":"invalid user"}');
    r2.close();
});

it('one user may hold several connections', async (t, c) => {
    const a = await connect(c.url(0), 'multi');
    const b = await connect(c.url(0), 'multi');
    assert.notEqual(a.id, b.id);
    const room = uniq();
    assert.equal((await emitAck(a, 'join', { room })).ok, true);
    assert.equal((await emitAck(b, 'join', { room })).ok, true);
    a.close();
    b.close();
});
