// Bad input under watch: one hostile client (or a crowd of them) per class
// against a node while two well-behaved users keep chatting on it. For every
// class: the node stays ready, the good users' messages are acked and
// delivered, the bad connection gets an error ack or is closed, and the node's
// memory stays bounded. (Each class's exact answers are in protocol_*.test.mjs;
// here they run beside live traffic.)
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import { BUILD, useCluster, connect, emitAck, httpGet, rawConnect, sleep, slow, uniq, until } from './cluster.mjs';
import { closeOf, frame, tcp, upgraded } from './hostile_tcp.mjs';

// a sender of the busy room sends 1500 messages in a few seconds: --rate lets
// it; the flood below still goes past the burst
const ctx = useCluster({
    nodes: 1, partitions: 2,
    args: ['--ping-interval-ms', '1000', '--ping-timeout-ms', '1000', '--rate', '1000', '--rate-burst', '2000'],
});
const RSS_BOUND = 64 << 20;     // growth allowed over one attack

const rss = (pid) => Number(/VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))[1]) * 1024;

// Runs attack(url) while two good users chat (one message every 50 ms), then
// checks the node and the good users; returns what attack returned.
async function underWatch(t, c, name, attack) {
    const nd = c.nodes[0];
    const room = uniq(`watch-${name}`);
    const a = await connect(nd.url, `good-a-${name}`);
    const b = await connect(nd.url, `good-b-${name}`);
    for (const s of [a, b]) assert.equal((await emitAck(s, 'join', { room })).ok, true);
    const got = new Set();
    b.on('message', (m) => { if (m.room === room) got.add(m.id); });
    const rss0 = rss(nd.proc.pid);
    let stop = false;
    const sent = [];
    const refused = [];
    const chatter = (async () => {
        for (let i = 0; !stop; i++) {
            const id = `g${i}`;
            const ack = await emitAck(a, 'message', { room, id, text: `good ${i}` }, slow(10000))
                .catch((e) => ({ ok: false, error: { code: e.message } }));
            (ack.ok ? sent : refused).push(id);
            await sleep(50);
        }
    })();
    const t0 = Date.now();
    let out;
    try {
        out = await attack(nd.url, nd);
        await sleep(1000);      // and a second after it
    } finally {
        stop = true;
        await chatter;
    }
    const rss1 = rss(nd.proc.pid);
    t.diagnostic(`${name}: attack ${Date.now() - t0} ms; good messages acked ${sent.length}, refused ${refused.length}; ` +
        `RSS ${(rss0 / 1048576).toFixed(1)} -> ${(rss1 / 1048576).toFixed(1)} MB`);
    assert.equal((await httpGet(`${nd.url}/readyz`)).status, 200, 'the node stays ready');
    assert.ok(sent.length >= 3, `the good user kept getting ok acks (${sent.length}, refused ${refused.join(' ')})`);
    assert.deepEqual(refused, [], 'no good message refused');
    await until('every good message delivered', () => sent.every((id) => got.has(id)), slow(15000), 50);
    // ASan keeps freed memory in its quarantine (256 MB by default) instead of
    // reusing it, so RSS says nothing there: the debug build's run checks it
    if (BUILD !== 'asan') {
        assert.ok(rss1 - rss0 < RSS_BOUND, `memory bounded: grew ${((rss1 - rss0) / 1048576).toFixed(1)} MB`);
    }
    for (const s of [a, b]) s.close();
    return out;
}

// ---- the classes ----

ctx.it('garbage before HTTP: the connection is refused or closed', { timeout: slow(60000) }, async (t, c) => {
    await underWatch(t, c, 'garbage', async (url) => {
        const conns = [];
        for (let i = 0; i < 50; i++) {
            const r = tcp(url);
            await r.ready;
            r.sock.write(crypto.randomBytes(200 + i * 20));
            r.sock.write('\r\n\r\n');
            conns.push(r);
        }
        await Promise.race([Promise.all(conns.map((r) => r.done)), sleep(slow(15000))]);
        const open = conns.filter((r) => !r.closed).length;
        for (const r of conns) r.sock.destroy();
        assert.equal(open, 0, `${open} of 50 garbage connections still open after 15 s`);
    });
});

ctx.it('slowloris: headers one byte at a time are dropped; the node keeps serving', { timeout: slow(90000) }, async (t, c) => {
    await underWatch(t, c, 'slowloris', async (url) => {
        const conns = [];
        for (let i = 0; i < 100; i++) {
            const r = tcp(url);
            await r.ready;
            conns.push(r);
        }
        const req = 'GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\nX-Slow: ';
        const t0 = Date.now();
        for (let k = 0; Date.now() - t0 < slow(40000) && conns.some((r) => !r.closed); k++) {
            for (const r of conns) if (!r.closed) r.sock.write(req[k % req.length]);
            await sleep(1000);
        }
        const open = conns.filter((r) => !r.closed).length;
        t.diagnostic(`slowloris: ${100 - open} of 100 dropped in ${Date.now() - t0} ms`);
        for (const r of conns) r.sock.destroy();
        assert.equal(open, 0, `${open} of 100 slow connections still open after 40 s`);
    });
});

ctx.it('WebSocket protocol violations are closed with a close frame or a TCP close', { timeout: slow(90000) }, async (t, c) => {
    const cases = {
        'unmasked frame': () => frame({ payload: '2probe', mask: false }),
        'reserved opcode 3': () => frame({ op: 3, payload: 'x' }),
        'reserved opcode 11': () => frame({ op: 11, payload: 'x' }),
        'length 2^63': () => frame({ payload: 'x', len: 1n << 63n }),
        'ping with 200 bytes': () => frame({ op: 9, payload: Buffer.alloc(200, 97) }),
        'fragmented ping': () => frame({ op: 9, fin: false, payload: 'x' }),
        'continuation without a start': () => frame({ op: 0, payload: 'x' }),
        'a new text frame inside a fragmented one': () => Buffer.concat([
            frame({ op: 1, fin: false, payload: '42["mes' }), frame({ op: 1, payload: 'x' })]),
        'invalid UTF-8': () => frame({ payload: Buffer.from([0x34, 0x32, 0xff, 0xfe]) }),
        'reserved bits set': () => { const f = frame({ payload: '2' }); f[0] |= 0x40; return f; },
    };
    const codes = await underWatch(t, c, 'ws-violations', async (url) => {
        const out = {};
        for (const [name, make] of Object.entries(cases)) {
            const r = await upgraded(url);
            r.sock.write(make());
            out[name] = await closeOf(r);
            r.sock.destroy();
        }
        return out;
    });
    t.diagnostic(`closes: ${JSON.stringify(codes)}`);
    for (const [name, code] of Object.entries(codes)) {
        assert.notEqual(code, null, `${name}: the connection was neither closed nor answered within 5 s`);
    }
});

ctx.it('Engine.IO and Socket.IO violations get an error ack or a close', { timeout: slow(90000) }, async (t, c) => {
    const nested = '['.repeat(20000) + ']'.repeat(20000);
    const cases = [
        ['unknown Engine.IO type', '9hello'],
        ['unknown Socket.IO type', '49[]'],
        ['malformed JSON', '421["message",{"room":'],
        ['deeply nested JSON', `422["message",${nested}]`],
        ['event name not a string', '423[12,{"room":"r"}]'],
        ['join with a number for room', '424["join",{"room":123}]'],
        ['message with an object for text', '425["message",{"room":"r","id":"x","text":{}}]'],
        ['history with a string limit', '426["history",{"room":"r","limit":"lots"}]'],
        ['unknown event', '427["nuke",{}]'],
        ['huge event name', `428["${'e'.repeat(60000)}",{}]`],
    ];
    const res = await underWatch(t, c, 'sio-violations', async (url) => {
        const out = {};
        for (const [name, packet] of cases) {
            const r = await rawConnect(url, { user: 'mallory' });
            r.send(packet);
            const id = /^42(\d+)/.exec(packet)?.[1];
            const answer = await Promise.race([
                id ? r.ack(id, slow(5000)).then((a) => `ack ${a.ok ? 'ok' : a.error.code}`).catch(() => null) : new Promise(() => {}),
                r.closed.then((ci) => `close ${ci.code}`),
                sleep(slow(5000)).then(() => null),
            ]);
            out[name] = answer;
            r.close();
        }
        return out;
    });
    t.diagnostic(`answers: ${JSON.stringify(res)}`);
    for (const [name, answer] of Object.entries(res)) {
        assert.ok(answer && !/^ack ok/.test(answer), `${name}: got ${answer}, want an error ack or a close`);
    }
});

ctx.it('a flood of events on one connection is rate limited; others are not slowed', { timeout: slow(60000) }, async (t, c) => {
    const res = await underWatch(t, c, 'flood', async (url) => {
        const r = await rawConnect(url, { user: 'flooder' });
        r.send('420["join",{"room":"flood-room"}]');
        await r.ack(0);
        for (let i = 1; i <= 5000; i++) r.send(`42${i}["message",{"room":"flood-room","id":"f${i}","text":"x"}]`);
        await until('acks for the flood', () => r.frames.filter((f) => typeof f === 'string' && f.startsWith('43')).length >= 5001 || r.closeInfo,
            slow(30000), 100);
        const acks = r.frames.filter((f) => typeof f === 'string' && f.startsWith('43')).map((f) => JSON.parse(f.replace(/^43\d+/, ''))[0]);
        r.close();
        return { limited: acks.filter((a) => a.error?.code === 'rate_limited').length, closed: r.closeInfo };
    });
    t.diagnostic(`flood: ${JSON.stringify(res)}`);
    assert.ok(res.limited > 0 || res.closed, 'the flood was limited');
});

ctx.it('thousands of connections opened and dropped leave nothing behind', { timeout: slow(120000) }, async (t, c) => {
    await underWatch(t, c, 'churn', async (url, nd) => {
        const metric = async () => (await nd.metrics()).filter((s) => s.name === 'chatd_connections').reduce((n, s) => n + s.value, 0);
        const before = await metric();
        for (let round = 0; round < 20; round++) {
            const batch = await Promise.all(Array.from({ length: 100 }, (_, i) =>
                rawConnect(url, { user: `churn${i}` }).catch(() => null)));
            for (const r of batch) if (r) r.close();
        }
        await until('the connections gauge back to where it was', async () => (await metric()) <= before, slow(20000), 200);
    });
});

ctx.it('slow readers in a busy room cost the node no unbounded memory; the others are not slowed', { timeout: slow(180000) }, async (t, c) => {
    const res = await underWatch(t, c, 'slow-readers', async (url, nd) => {
        const closes = async () => (await nd.metrics()).filter((x) => x.name === 'chatd_slow_consumer_closes_total')
            .reduce((n, x) => n + x.value, 0);
        const before = await closes();
        const room = uniq('busy');
        const readers = [];
        for (let i = 0; i < 20; i++) {
            const r = await rawConnect(url, { user: `slow${i}`, autoPong: false });
            r.send(`420["join",{"room":"${room}"}]`);
            await r.ack(0);
            r.ws._socket.pause();       // stops reading: the kernel buffers fill
            readers.push(r);
        }
        const s = await connect(url, 'busy-sender');
        assert.equal((await emitAck(s, 'join', { room })).ok, true);
        const text = 'y'.repeat(3000);
        for (let i = 0; i < 1500; i++) {
            const a = await emitAck(s, 'message', { room, id: `b${i}`, text });
            assert.equal(a.ok, true);
        }
        await sleep(slow(2000));
        const closed = (await closes()) - before;
        for (const r of readers) r.close();
        s.close();
        return { closed };
    });
    t.diagnostic(`slow readers closed by the server: ${res.closed} of 20`);
});
