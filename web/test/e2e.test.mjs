// End-to-end tests of the web page: Debian's Chromium driven by playwright-core,
// against two chatd nodes that serve build/web/ (web/test/run.sh builds it),
// started with their services by the integration tests' harness
// (tests/integration/cluster.mjs; its Node packages: web/test/run.sh installs them).
// Screenshots go to build/web-artifacts/.

import { after, before, test as nodeTest } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { io } from 'socket.io-client';
import crypto from 'node:crypto';
import { Cluster, ROOT, signToken, sleep, until as untilMs } from '../../tests/integration/cluster.mjs';

// this file's waits default to 15 s
const until = (what, fn, timeoutMs = 15000, stepMs = 50) => untilMs(what, fn, timeoutMs, stepMs);
// Hangs the Kafka broker (SIGSTOP) or lets it go on (SIGCONT): to a client a
// hung broker is one that is down, and it comes back without a restart.
const brokerHang = (hung) => cluster.services.cmd(hung ? 'pause_kafka' : 'resume_kafka');

const ARTIFACTS = path.join(ROOT, 'build', 'web-artifacts');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const XSS = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>&amp; "quotes" \'single\'';

let cluster;
let browser;
const contexts = [];
const outside = []; // requests that went anywhere but the cluster's nodes

// A test that fails prints the tail of every node's log and the services'
// log (all of it with CHATD_IT_VERBOSE=1), so a failure in CI can be read
// without rerunning it.
function test(name, fn) {
    return nodeTest(name, async (t) => {
        try {
            await fn(t);
        } catch (e) {
            if (cluster) cluster.dumpLogs(`failed: ${name}`);
            throw e;
        }
    });
}

before(async () => {
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    assert.ok(fs.existsSync(path.join(ROOT, 'build', 'web', 'index.html')), 'build/web/index.html: run web/test/run.sh (it builds the page)');
    // short backend deadlines, so the `unavailable` test does not wait long;
    // names only (--auth none) but for the token test's own node
    cluster = await Cluster.start({
        nodes: 2, partitions: 4, topic: 'chatd-web', warmup: false, auth: 'none',
        args: ['--web-root', path.join(ROOT, 'build', 'web'),
            '--produce-timeout-ms', '2000', '--request-timeout-ms', '2000'],
    });
    // Playwright gives every launch a fresh temporary profile (--user-data-dir).
    browser = await chromium.launch({
        executablePath: CHROMIUM,
        headless: true,
        args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
            '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'],
    });
});

after(async () => {
    for (const c of contexts) await c.close().catch(() => {});
    if (browser) await browser.close().catch(() => {});
    if (cluster) await cluster.stop();
});

async function newPage(nodeIndex, viewport = { width: 1100, height: 720 }) {
    const ctx = await browser.newContext({ viewport });
    contexts.push(ctx);
    const page = await ctx.newPage();
    const origins = cluster.nodes.map((n) => n.url);
    page.on('request', (req) => {
        const u = req.url();
        if (!origins.some((o) => u.startsWith(o)) && !u.startsWith('ws://127.0.0.1') && !u.startsWith('data:')) outside.push(u);
    });
    page.on('pageerror', (e) => console.error(`page error (${nodeIndex}): ${e.message}`));
    await page.goto(cluster.url(nodeIndex) + '/');
    return page;
}

async function signIn(page, name) {
    await page.getByLabel('Your name').fill(name);
    await page.getByRole('button', { name: 'Start chatting' }).click();
    await page.locator('#me').filter({ hasText: name }).waitFor();
}

async function joinRoom(page, room) {
    await page.getByLabel('Join a room').fill(room);
    await page.getByLabel('Join a room').press('Enter');
    await page.locator('#room-title').filter({ hasText: `#${room}` }).waitFor();
    await page.locator('#log-start, #older').first().waitFor({ state: 'attached' });
    await until(`${room} joined`, () => page.evaluate(() => !document.getElementById('older').hidden
        || !document.getElementById('log-start').hidden));
}

async function send(page, text) {
    const box = page.getByLabel('Message', { exact: true });
    await box.fill(text);
    await box.press('Enter');
}

// [seq, user, text] of the stored messages the page shows, in DOM order.
function shown(page) {
    return page.$$eval('#messages li[data-seq]', (els) => els.map((e) => [
        Number(e.dataset.seq), e.querySelector('.who').textContent, e.querySelector('.text').textContent]));
}

async function shot(page, name) {
    await page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`) });
}

function seeder(nodeIndex, user) {
    return new Promise((resolve, reject) => {
        const s = io(cluster.url(nodeIndex), { transports: ['websocket'], auth: { user }, reconnection: false });
        s.on('connect', () => resolve(s));
        s.on('connect_error', reject);
    });
}

async function seed(s, room, texts, prefix) {
    const ack = await s.emitWithAck('join', { room });
    assert.equal(ack.ok, true, JSON.stringify(ack));
    for (let i = 0; i < texts.length; i += 50) {
        const acks = await Promise.all(texts.slice(i, i + 50).map((text, j) =>
            s.timeout(15000).emitWithAck('message', { room, id: `${prefix}-${i + j}`, text })));
        for (const a of acks) assert.equal(a.ok, true, JSON.stringify(a));
        await sleep(600); // stay under the default rate (100 events/s, burst 256)
    }
}

let alice;
let bob;

test('the page is served by chatd with content types and cache headers', async () => {
    const index = await fetch(cluster.url(0) + '/');
    assert.equal(index.status, 200);
    assert.match(index.headers.get('content-type'), /^text\/html/);
    assert.match(index.headers.get('cache-control'), /no-cache/);
    const html = await index.text();
    const js = html.match(/src="(assets\/app-[A-Za-z0-9]+\.js)"/);
    const css = html.match(/href="(assets\/app-[A-Za-z0-9]+\.css)"/);
    assert.ok(js && css, html);
    assert.doesNotMatch(html, /https?:\/\//, 'nothing from the internet');
    const jsRes = await fetch(`${cluster.url(1)}/${js[1]}`);
    assert.equal(jsRes.status, 200);
    assert.match(jsRes.headers.get('content-type'), /javascript/);
    assert.match(jsRes.headers.get('cache-control'), /immutable/);
    const cssRes = await fetch(`${cluster.url(1)}/${css[1]}`);
    assert.match(cssRes.headers.get('content-type'), /^text\/css/);
});

test('two users on two nodes chat in order, with typing and presence', async () => {
    alice = await newPage(0);
    bob = await newPage(1);
    await signIn(alice, 'alice');
    await signIn(bob, 'bob');
    await joinRoom(alice, 'e2e');
    await joinRoom(bob, 'e2e');

    // presence: each sees the other, on the other node
    await alice.locator('#people').getByRole('button', { name: 'Message bob directly' }).waitFor();
    await bob.locator('#people').getByRole('button', { name: 'Message alice directly' }).waitFor();
    await alice.locator('#people').getByText('alice (you)').waitFor();

    // typing indicator
    await bob.getByLabel('Message', { exact: true }).pressSequentially('hel');
    await alice.locator('#typing').filter({ hasText: 'bob is typing…' }).waitFor();
    await shot(alice, '01-alice-sees-bob-typing');
    await bob.getByLabel('Message', { exact: true }).fill('');

    const lines = [];
    for (let i = 1; i <= 4; i++) {
        await send(alice, `alice ${i}`);
        lines.push(`alice ${i}`);
        await bob.locator('#messages li[data-seq] .text').filter({ hasText: `alice ${i}` }).waitFor();
        await send(bob, `bob ${i}`);
        lines.push(`bob ${i}`);
        await alice.locator('#messages li[data-seq] .text').filter({ hasText: `bob ${i}` }).waitFor();
    }
    await until('both pages show all 8', async () => (await shown(alice)).length === 8 && (await shown(bob)).length === 8);
    const a = await shown(alice);
    const b = await shown(bob);
    assert.deepEqual(a, b, 'both see the same messages in the same order');
    assert.deepEqual(a.map((m) => m[2]), lines);
    assert.deepEqual(a.map((m) => m[0]), [1, 2, 3, 4, 5, 6, 7, 8]);
    assert.equal(await alice.locator('#messages li:not([data-seq])').count(), 0, 'no message left pending');
    await shot(alice, '02-alice-chat');
    await shot(bob, '03-bob-chat');
});

test('an XSS payload is shown as its characters and never runs', async () => {
    await send(alice, XSS);
    const row = bob.locator('#messages li[data-seq]').last();
    await until('payload at bob', async () => (await row.locator('.text').textContent()) === XSS);
    for (const p of [alice, bob]) {
        assert.equal(await p.evaluate(() => window.__xss), undefined, 'no script of the payload ran');
        assert.equal(await p.locator('#messages img, #messages script').count(), 0);
    }
    const nodes = await row.locator('.text').evaluate((e) => [...e.childNodes].map((n) => [n.nodeType, n.nodeValue]));
    assert.deepEqual(nodes, [[3, XSS]], 'a single text node equal to the payload');
    await shot(bob, '04-bob-xss-as-text');
});

test('unread counts in the room list', async () => {
    await joinRoom(bob, 'side');
    // bob now looks at #side; alice writes in #e2e
    await send(alice, 'while bob is away 1');
    await send(alice, 'while bob is away 2');
    const e2e = bob.locator('#rooms [data-room="e2e"]');
    await e2e.locator('.badge').filter({ hasText: '2' }).waitFor();
    await shot(bob, '05-bob-unread');
    await e2e.click();
    await bob.locator('#messages .text').filter({ hasText: 'while bob is away 2' }).waitFor();
    assert.equal(await e2e.locator('.badge').count(), 0);
});

test('scrolling up loads 300 messages of history, in order', async () => {
    const s = await seeder(0, 'seeder');
    const texts = Array.from({ length: 300 }, (_, i) => `history ${i + 1}`);
    await seed(s, 'history', texts, 'h');
    s.disconnect();
    // the store may still be inserting the tail: wait until history has all 300
    const probe = await seeder(1, 'probe');
    await until('300 stored', async () => {
        const h = await probe.emitWithAck('history', { room: 'history', limit: 1 });
        return h.ok && h.messages.length === 1 && h.messages[0].seq === 300;
    }, 30000, 100);
    probe.disconnect();

    await joinRoom(bob, 'history');
    await bob.locator('#messages li[data-seq="300"]').waitFor();
    const log = bob.locator('#log');
    await shot(bob, '06-history-newest');
    let rounds = 0;
    while (!(await bob.locator('#log-start').isVisible())) {
        await log.hover();
        await bob.mouse.wheel(0, -3000);
        await sleep(150);
        assert.ok(++rounds < 200, 'history did not reach the beginning');
    }
    const h = await shown(bob);
    assert.equal(h.length, 300);
    assert.deepEqual(h.map((m) => m[0]), texts.map((_, i) => i + 1));
    assert.deepEqual(h.map((m) => m[2]), texts);
    await log.evaluate((e) => { e.scrollTop = 0; });
    await shot(bob, '07-history-beginning');
    await bob.locator('#rooms [data-room="e2e"]').click();
    await bob.locator('#room-title').filter({ hasText: '#e2e' }).waitFor();
});

test('a node restart: the page recovers every missed message, no duplicates', async () => {
    // bob is on node1, alice on node0, both in #e2e
    const before = await shown(bob);
    await cluster.nodes[1].kill();
    await bob.locator('#status').filter({ hasText: /reconnecting|unavailable/ }).waitFor();

    // bob writes while his node is down: the message fails, with a retry button
    await send(bob, 'bob while down');
    const failed = bob.locator('#messages li.failed');
    await failed.waitFor();
    await shot(bob, '08-bob-node-down');

    const missed = [];
    for (let i = 1; i <= 5; i++) {
        await send(alice, `missed ${i}`);
        missed.push(`missed ${i}`);
    }
    const s = await seeder(0, 'carol');
    const more = Array.from({ length: 40 }, (_, i) => `carol missed ${i + 1}`);
    await seed(s, 'e2e', more, 'c');
    s.disconnect();
    await until('alice has all', async () => (await shown(alice)).length === before.length + missed.length + more.length, 20000);

    await cluster.nodes[1].restart();
    await bob.locator('#status').waitFor({ state: 'hidden', timeout: 30000 });
    await until('bob caught up', async () => (await shown(bob)).length === before.length + missed.length + more.length, 20000);

    // retry with the same id after the node is back
    await failed.getByRole('button', { name: 'Retry sending this message' }).click();
    await bob.locator('#messages li[data-seq] .text').filter({ hasText: 'bob while down' }).waitFor();
    await alice.locator('#messages li[data-seq] .text').filter({ hasText: 'bob while down' }).waitFor();
    await sleep(500);

    const a = await shown(alice);
    const b = await shown(bob);
    assert.deepEqual(b, a, 'bob sees exactly what alice sees');
    const seqs = b.map((m) => m[0]);
    assert.equal(new Set(seqs).size, seqs.length, 'no duplicate seq');
    assert.deepEqual(seqs, seqs.map((_, i) => seqs[0] + i), 'no gap');
    for (const t of [...missed, ...more]) assert.equal(b.filter((m) => m[2] === t).length, 1, t);
    assert.equal(b.filter((m) => m[2] === 'bob while down').length, 1);
    assert.equal(await bob.locator('#messages li:not([data-seq])').count(), 0, 'nothing left pending');
    await shot(bob, '09-bob-after-restart');
});

test('keyboard only on a phone-sized screen, and a direct message', async () => {
    const dave = await newPage(0, { width: 390, height: 740 });
    await dave.keyboard.press('Tab'); // skip link
    await dave.getByLabel('Your name').focus();
    await dave.keyboard.type('dave');
    await dave.keyboard.press('Enter');
    await dave.locator('#room-title').filter({ hasText: '#lobby' }).waitFor();
    // the composer has the focus after signing in
    await dave.keyboard.type('hello from a phone');
    await dave.keyboard.press('Enter');
    await dave.locator('#messages li[data-seq] .text').filter({ hasText: 'hello from a phone' }).waitFor();
    await shot(dave, '10-phone-lobby');
    // open the room list with the keyboard and start a DM with alice, who is in the lobby too
    await joinRoom(alice, 'lobby');
    const toggle = dave.getByRole('button', { name: /^Rooms/ });
    await toggle.focus();
    await dave.keyboard.press('Enter');
    assert.equal(await toggle.getAttribute('aria-expanded'), 'true');
    const alicePerson = dave.getByRole('button', { name: 'Message alice directly' });
    await alicePerson.waitFor();
    await shot(dave, '11-phone-sidebar');
    await alicePerson.focus();
    await dave.keyboard.press('Enter');
    await dave.locator('#room-title').filter({ hasText: '@alice' }).waitFor();
    await dave.keyboard.type('psst, alice');
    await dave.keyboard.press('Enter');
    await dave.locator('#messages li[data-seq] .text').filter({ hasText: 'psst, alice' }).waitFor();
    // alice opens the same room by choosing dave
    await alice.getByRole('button', { name: 'Message dave directly' }).click();
    await alice.locator('#room-title').filter({ hasText: '@dave' }).waitFor();
    await alice.locator('#messages li[data-seq] .text').filter({ hasText: 'psst, alice' }).waitFor();
    await shot(dave, '12-phone-dm');
    assert.deepEqual(outside, [], 'nothing loaded from outside the cluster');
});

test('tokens on: a pasted token signs in as its sub; an expired one is refused in words', async () => {
    const secret = crypto.randomBytes(32).toString('hex');
    const file = path.join(cluster.dir, 'web-jwt-secret');
    fs.writeFileSync(file, secret);
    const nd = await cluster.startNode(['--roles', 'socket,producer,fanout', '--auth', 'jwt',
        '--jwt-secret-file', file, '--web-root', path.join(ROOT, 'build', 'web')], 'tokennode');
    const idx = cluster.nodes.indexOf(nd);
    const now = Math.floor(Date.now() / 1000);

    const page = await newPage(idx);
    await page.getByLabel('Or your token').fill(signToken({ sub: 'tokenuser', exp: now + 3600 }, secret));
    await page.getByRole('button', { name: 'Start chatting' }).click();
    await page.locator('#me').filter({ hasText: 'tokenuser' }).waitFor();
    await page.locator('#room-title').filter({ hasText: '#lobby' }).waitFor();
    await page.locator('#composer-input').fill('signed in by token');
    await page.locator('#composer-input').press('Enter');
    await page.locator('#messages li[data-seq] .text').filter({ hasText: 'signed in by token' }).waitFor();
    await shot(page, '13-token-signed-in');

    const late = await newPage(idx);
    await late.getByLabel('Or your token').fill(signToken({ sub: 'lateuser', exp: now - 60 }, secret));
    await late.getByRole('button', { name: 'Start chatting' }).click();
    await late.locator('#signin-error').filter({ hasText: 'Your token has expired' }).waitFor();
    assert.equal(await late.locator('#signin').isVisible(), true);
    assert.equal(await late.locator('#chat').isVisible(), false);
    await shot(late, '14-token-expired');

    // a name alone does not get in where tokens are wanted
    const named = await newPage(idx);
    await signInAttempt(named, 'mallory');
    await named.locator('#signin-error').filter({ hasText: 'wants a token' }).waitFor();
});

async function signInAttempt(page, name) {
    await page.getByLabel('Your name').fill(name);
    await page.getByRole('button', { name: 'Start chatting' }).click();
}

test('the broker hangs: the message fails in words, and a retry (same id) sends it once', async () => {
    await alice.locator('#rooms [data-room="e2e"]').click();
    await alice.locator('#room-title').filter({ hasText: '#e2e' }).waitFor();
    await brokerHang(true);
    let up = false;
    try {
        await send(alice, 'sent while the broker is down');
        const failed = alice.locator('#messages li.failed');
        await failed.waitFor({ timeout: 20000 });
        const words = await failed.locator('.state-text').textContent();
        assert.match(words, /server is unavailable/);
        const id = await failed.getAttribute('data-id');
        await shot(alice, '13-alice-unavailable');
        await brokerHang(false);
        up = true;
        await until('readyz again', async () => (await fetch(`${cluster.url(0)}/readyz`)).status === 200, 30000, 200);
        // A hung broker may still take the request that timed out once it runs
        // again (unavailable means "maybe stored": PROTOCOL.md), and then the
        // message arrives stored by itself; otherwise the retry sends it.
        const row = alice.locator(`#messages li[data-seq][data-id="${id}"]`);
        await sleep(1000);
        if (await row.count() === 0) {
            await failed.getByRole('button', { name: 'Retry sending this message' }).click({ timeout: 5000 })
                .catch((e) => { if (!/detached|Timeout/.test(e.message)) throw e; });
        }
        await row.waitFor({ timeout: 20000 });
        await bob.locator('#messages li[data-seq] .text').filter({ hasText: 'sent while the broker is down' }).waitFor({ timeout: 20000 });
        await sleep(1000);
        for (const p of [alice, bob]) {
            const all = await shown(p);
            assert.equal(all.filter((m) => m[2] === 'sent while the broker is down').length, 1);
        }
        assert.equal(await alice.locator('#messages li:not([data-seq])').count(), 0);
    } finally {
        if (!up) await brokerHang(false);
    }
});
