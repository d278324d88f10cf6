// PROTOCOL.md "Identity" with tokens on (--auth jwt): every refusal reason,
// the Bearer header, RS/ES keys, expiry while connected, refresh through the
// `auth` event, and dm rooms only their two users (proven by tokens) may use.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import {
    useCluster, connect, connectError, emitAck, waitFor, rawConnect, errCode, uniq, sleep, slow,
    signToken, mintToken, metricSum, CHATD,
} from './cluster.mjs';

// no leeway here, so that expiry is seen at exp
const ctx = useCluster({ nodes: 1, partitions: 2, args: ['--jwt-leeway-s', '0'] });
const it = ctx.it;
const now = () => Math.floor(Date.now() / 1000);
const b64 = (v) => Buffer.from(JSON.stringify(v)).toString('base64url');

async function refused(url, auth) {
    const e = await connectError(url, undefined, { auth });
    assert.equal(e.message, 'invalid token');
    return e.data?.reason;
}

it('no default secret: --auth jwt (the default, or the later flag) without a usable key does not start',
    async (t, c) => {
        const short = path.join(c.dir, 'short-secret');
        fs.writeFileSync(short, 'hunter2-not-long\n');
        const runs = [
            [[], 'give exactly one'],
            [['--auth', 'none', '--auth', 'jwt'], 'give exactly one'],
            [['--jwt-secret-file', short], 'at least 32'],
            [['--jwt-public-key', short], 'not a PEM'],
        ];
        for (const [args, words] of runs) {
            const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('CHATD_')));
            const r = spawnSync(CHATD, ['--port', '1', ...args], { env, encoding: 'utf8', timeout: slow(10000) });
            assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
            assert.match(r.stderr, new RegExp(words), args.join(' '));
            assert.doesNotMatch(r.stderr, /hunter2/);
        }
    });

it('a valid token connects as its sub, with or without a matching auth.user', async (t, c) => {
    const room = uniq();
    const a = await connect(c.url(0), 'alice', { auth: { token: mintToken(c.url(0), 'alice') } });
    assert.equal((await emitAck(a, 'join', { room })).ok, true);
    const got = waitFor(a, 'message', (m) => m.id === 'm1');
    assert.equal((await emitAck(a, 'message', { room, id: 'm1', text: 'hi' })).ok, true);
    assert.equal((await got).user, 'alice');
    const b = await connect(c.url(0), 'alice'); // the helper sends {user, token}
    assert.equal(b.connected, true);
});

it('each refusal names its reason in connect_error data and counts in /metrics', async (t, c) => {
    const url = c.url(0);
    const sec = c.secret;
    const ok = () => ({ sub: 'alice', exp: now() + 600 });
    const cases = [
        ['missing', {}],
        ['missing', { user: 'alice' }],
        ['malformed', { token: 'not a token' }],
        ['malformed', { token: 'a.b.c' }],
        ['malformed', { token: 42 }],
        ['malformed', { token: signToken({ sub: 'alice' }, sec) }], // no exp
        ['bad_signature', { token: signToken(ok(), 'another secret of enough length 123') }],
        ['bad_signature', { token: `${b64({ alg: 'none' })}.${b64(ok())}.` }],
        ['bad_signature', { token: signToken(ok(), sec, { alg: 'HS512', typ: 'JWT' }) }],
        ['expired', { token: signToken({ sub: 'alice', exp: now() - 5 }, sec) }],
        ['not_yet_valid', { token: signToken({ ...ok(), nbf: now() + 300 }, sec) }],
        ['bad_subject', { token: signToken({ exp: now() + 600 }, sec) }],
        ['bad_subject', { token: signToken({ sub: 'bad user', exp: now() + 600 }, sec) }],
        ['bad_subject', { token: signToken(ok(), sec), user: 'bob' }],
    ];
    const before = await c.nodes[0].metrics();
    for (const [reason, auth] of cases) {
        assert.equal(await refused(url, auth), reason, JSON.stringify(auth));
    }
    const after = await c.nodes[0].metrics();
    for (const reason of new Set(cases.map(([r]) => r))) {
        const n = cases.filter(([r]) => r === reason).length;
        const d = metricSum(after, 'chatd_auth_refused_total', { reason }) -
            metricSum(before, 'chatd_auth_refused_total', { reason });
        assert.equal(d, n, reason);
    }
});

it('a refusal on the wire says nothing but the reason', async (t, c) => {
    const r = await rawConnect(c.url(0), { connect: false });
    r.send('40{"token":"x.y.z"}');
    const f = await r.next((x) => typeof x === 'string' && x.startsWith('4'));
    assert.equal(f, '44{"message":"invalid token","data":{"reason":"malformed"}}');
    r.close();
});

it('Authorization: Bearer on the upgrade identifies a client that sends no token', async (t, c) => {
    const url = c.url(0);
    const good = await rawConnect(url, {
        headers: { Authorization: `Bearer ${mintToken(url, 'bearer1')}` }, connect: true, auth: {},
    });
    assert.ok(good.sid);
    good.close();
    const expired = signToken({ sub: 'bearer1', exp: now() - 60 }, c.secret);
    const bad = await rawConnect(url, { headers: { Authorization: `Bearer ${expired}` }, connect: false });
    bad.send('40');
    const f = await bad.next((x) => typeof x === 'string' && x.startsWith('4'));
    assert.equal(f, '44{"message":"invalid token","data":{"reason":"expired"}}');
    bad.close();
});

it('ES256 and RS256 public keys: the algorithm is pinned to the key; iss and aud are checked',
    async (t, c) => {
        const ec = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
        const rsa = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
        const ecPem = path.join(c.dir, 'ec.pem');
        fs.writeFileSync(ecPem, ec.publicKey.export({ type: 'spki', format: 'pem' }));
        const nd = await c.startNode(['--roles', 'socket,producer,fanout', '--jwt-secret-file', '',
            '--jwt-public-key', ecPem, '--jwt-issuer', 'https://id.example', '--jwt-audience', 'chatd'],
        'ecnode');
        const sign = (claims, alg, key) => {
            const input = `${b64({ alg, typ: 'JWT' })}.${b64(claims)}`;
            const opt = alg === 'ES256' ? { key, dsaEncoding: 'ieee-p1363' } : key;
            return `${input}.${crypto.sign('sha256', Buffer.from(input), opt).toString('base64url')}`;
        };
        const claims = { sub: 'carol', exp: now() + 600, iss: 'https://id.example', aud: ['x', 'chatd'] };
        const s = await connect(nd.url, 'carol', { auth: { token: sign(claims, 'ES256', ec.privateKey) } });
        assert.equal(s.connected, true);
        s.close();
        // an RS256 token on an EC key, and HS256 keyed with the public key's bytes
        assert.equal(await refused(nd.url, { token: sign(claims, 'RS256', rsa.privateKey) }), 'bad_signature');
        assert.equal(await refused(nd.url, { token: signToken(claims, fs.readFileSync(ecPem)) }), 'bad_signature');
        // an ES256 token signed by another key
        const other = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
        assert.equal(await refused(nd.url, { token: sign(claims, 'ES256', other.privateKey) }), 'bad_signature');
        assert.equal(await refused(nd.url, { token: sign({ ...claims, iss: 'evil' }, 'ES256', ec.privateKey) }),
            'wrong_issuer');
        assert.equal(await refused(nd.url, { token: sign({ ...claims, aud: 'other' }, 'ES256', ec.privateKey) }),
            'wrong_audience');
        await nd.stop();

        const rsaPem = path.join(c.dir, 'rsa.pem');
        fs.writeFileSync(rsaPem, rsa.publicKey.export({ type: 'spki', format: 'pem' }));
        const rn = await c.startNode(['--roles', 'socket,producer,fanout', '--jwt-secret-file', '',
            '--jwt-public-key', rsaPem], 'rsanode');
        const r = await connect(rn.url, 'dave', { auth: { token: sign({ sub: 'dave', exp: now() + 600 }, 'RS256', rsa.privateKey) } });
        assert.equal(r.connected, true);
        r.close();
        assert.equal(await refused(rn.url, { token: sign({ sub: 'dave', exp: now() + 600 }, 'ES256', ec.privateKey) }),
            'bad_signature');
        await rn.stop();
    });

it('dm rooms are closed to a third user holding a valid token of its own', async (t, c) => {
    const room = 'dm:alice:bob';
    const alice = await connect(c.url(0), 'alice');
    const mallory = await connect(c.url(0), 'mallory');
    assert.equal((await emitAck(alice, 'join', { room })).ok, true);
    assert.equal((await emitAck(alice, 'message', { room, id: uniq('dm'), text: 'secret' })).ok, true);
    assert.equal(errCode(await emitAck(mallory, 'join', { room })), 'forbidden');
    assert.equal(errCode(await emitAck(mallory, 'join', { room, since: 0 })), 'forbidden');
    assert.equal(errCode(await emitAck(mallory, 'history', { room })), 'forbidden');
    assert.equal(errCode(await emitAck(mallory, 'message', { room, id: 'x', text: 'hi' })), 'forbidden');
    assert.equal(errCode(await emitAck(mallory, 'presence', { room })), 'forbidden');
    // naming alice is no way in: the token says mallory
    assert.equal(await refused(c.url(0), { user: 'alice', token: mintToken(c.url(0), 'mallory') }), 'bad_subject');
});

it('a token expiring while connected disconnects, unless refreshed through auth', async (t, c) => {
    const url = c.url(0);
    const short = (user) => signToken({ sub: user, exp: now() + 3 }, c.secret);
    const room = uniq();
    const lapsing = await connect(url, 'lapsing', { auth: { token: short('lapsing') } });
    const renewing = await connect(url, 'renewing', { auth: { token: short('renewing') } });
    assert.equal((await emitAck(lapsing, 'join', { room })).ok, true);
    assert.equal((await emitAck(renewing, 'join', { room })).ok, true);

    // refusals keep the old token
    let ack = await emitAck(renewing, 'auth', { token: mintToken(url, 'someoneelse') });
    assert.deepEqual([errCode(ack), ack.error.message], ['forbidden', 'bad_subject']);
    ack = await emitAck(renewing, 'auth', { token: signToken({ sub: 'renewing', exp: now() - 1 }, c.secret) });
    assert.deepEqual([errCode(ack), ack.error.message], ['forbidden', 'expired']);
    assert.equal(errCode(await emitAck(renewing, 'auth', {})), 'bad_request');
    assert.deepEqual(await emitAck(renewing, 'auth', { token: mintToken(url, 'renewing') }), { ok: true });

    const why = waitFor(lapsing, 'token_expired', () => true, slow(15000));
    const gone = new Promise((resolve) => lapsing.once('disconnect', resolve));
    assert.deepEqual(await why, { reason: 'expired' });
    assert.equal(await gone, 'io server disconnect');
    await sleep(1500);
    assert.equal(renewing.connected, true);
    assert.equal((await emitAck(renewing, 'message', { room, id: 'after', text: 'still here' })).ok, true);
    const m = await c.nodes[0].metrics();
    assert.ok(metricSum(m, 'chatd_auth_expired_total') >= 1);
    assert.ok(metricSum(m, 'chatd_auth_refreshed_total') >= 1);
});
