// tests/integration/cluster.mjs: the harness of the integration tests.
//
// The one harness of the JavaScript tests (tests/integration/*.test.mjs and the
// web page's web/test/e2e.test.mjs, which imports it from here; its packages
// resolve from tests/integration/node_modules).
//
// One Cluster per test file: the backing services (PostgreSQL, Redis, a real
// Apache Kafka broker, or the mock stand-in with `broker: 'mock'`, with a topic of
// an explicit partition count) started once through scripts/services.sh
// (services-wrapper.sh; c.services.cmd('kill_kafka') and the like control them),
// then N chatd nodes on free ports, each with its own --node-id and a log file in
// a temp dir; a Node starts, stops (SIGTERM), kills and restarts (same port,
// same flags). Everything is stopped at the end of the file (nodes by SIGTERM,
// checked to exit 0), and the temp dirs removed, whether the tests passed or not.
//
//   import { useCluster, it, connect, emitAck, waitFor } from './cluster.mjs';
//   const ctx = useCluster({ nodes: 2, partitions: 4, args: ['--rate', '1000'] });
//   it('does something', async () => { const s = await connect(ctx.c.url(0), 'alice'); ... });
//
// Environment: CHATD_BUILD (debug | asan | release; default debug) picks
// build/<mode>/node/chatd and the broker of the same mode; CHATD_BIN overrides
// the chatd path; CHATD_IT_KEEP=1 keeps the temp dir (logs) for inspection;
// CHATD_IT_VERBOSE=1 prints node logs of failing tests in full.

import { spawn, spawnSync } from 'node:child_process';
import { createInterface } from 'node:readline';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import { io } from 'socket.io-client';
import WebSocket from 'ws';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const BUILD = process.env.CHATD_BUILD || 'debug';
export const CHATD = process.env.CHATD_BIN || path.join(ROOT, 'build', BUILD, 'node', 'chatd');
const WRAPPER = path.join(ROOT, 'tests', 'integration', 'services-wrapper.sh');
const SLOW = BUILD === 'asan' ? 2 : 1; // time multiplier for sanitizer builds

// ---- tokens ------------------------------------------------------------------

// A cluster runs with tokens on (--auth jwt, an HS256 secret in its temp dir)
// unless started with { auth: 'none' }; the connect helpers then show a token
// for their user, minted here with node's crypto. Keyed by node port.
const tokenSecrets = new Map();

const b64url = (v) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');

// signToken(claims, secret, header): an HS256 JWT (header overrides the
// default {alg:'HS256',typ:'JWT'}, e.g. to test a refusal).
export function signToken(claims, secret, header = { alg: 'HS256', typ: 'JWT' }) {
    const input = b64url(header) + '.' + b64url(claims);
    return input + '.' + crypto.createHmac('sha256', secret).update(input).digest('base64url');
}

// mintToken(url, user, claims): a token for user valid for an hour on the node
// at url, or undefined when that node runs without tokens.
export function mintToken(url, user, claims = {}) {
    const secret = tokenSecrets.get(new URL(url).port);
    if (secret === undefined) return undefined;
    const now = Math.floor(Date.now() / 1000);
    return signToken({ sub: user, iat: now, exp: now + 3600, ...claims }, secret);
}

// The auth object the helpers send for user at url.
function authFor(url, user) {
    const token = mintToken(url, user);
    return token === undefined ? { user } : { user, token };
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// within(promise, ms): the promise's value, or null after ms (the timer is
// cleared either way, so it never holds the process open).
export function within(promise, ms) {
    let t;
    const timer = new Promise((r) => { t = setTimeout(() => r(null), ms); });
    return Promise.race([promise, timer]).finally(() => clearTimeout(t));
}
export const slow = (ms) => ms * SLOW;

// Every chatd process and socket this file started, for cleanup on any exit.
const liveProcs = new Set();
const liveSockets = new Set();
const liveDirs = new Set();
let anyFailure = false;

// On any exit (also a signal): no chatd left running, no temp dir left behind.
// The services wrapper stops its services itself when our end of its stdin closes.
function killAllSync() {
    for (const p of liveProcs) {
        try { p.kill('SIGKILL'); } catch { /* gone */ }
    }
    if (!process.env.CHATD_IT_KEEP) {
        for (const d of liveDirs) {
            try { fs.rmSync(d, { recursive: true, force: true }); } catch { /* best effort */ }
        }
    }
}
process.on('exit', killAllSync);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.on(sig, () => {
        killAllSync();
        process.exit(128 + os.constants.signals[sig]);
    });
}

// ---- small utilities --------------------------------------------------------

export function freePort() {
    return new Promise((resolve, reject) => {
        const srv = net.createServer();
        srv.unref();
        srv.on('error', reject);
        srv.listen(0, '127.0.0.1', () => {
            const { port } = srv.address();
            srv.close(() => resolve(port));
        });
    });
}

export async function until(what, fn, timeoutMs = 10000, stepMs = 50) {
    const deadline = Date.now() + timeoutMs;
    let last;
    for (;;) {
        try {
            const v = await fn();
            if (v) return v;
        } catch (e) {
            last = e;
        }
        if (Date.now() >= deadline) {
            throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}` +
                (last ? ` (last error: ${last.message})` : ''));
        }
        await sleep(stepMs);
    }
}

export async function httpGet(url, timeoutMs = 5000) {
    const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
    return { status: res.status, headers: res.headers, body: await res.text() };
}

function tail(file, maxBytes = 6000, from = 0) {
    try {
        const st = fs.statSync(file);
        const start = Math.max(from, st.size - maxBytes);
        const fd = fs.openSync(file, 'r');
        const buf = Buffer.alloc(st.size - start);
        fs.readSync(fd, buf, 0, buf.length, start);
        fs.closeSync(fd);
        return buf.toString('utf8');
    } catch {
        return '';
    }
}

// ---- services ---------------------------------------------------------------

class Services {
    constructor(logFile) {
        this.logFile = logFile;
        const err = fs.openSync(logFile, 'a');
        this.proc = spawn('bash', [WRAPPER], {
            cwd: ROOT,
            stdio: ['pipe', 'pipe', err],
            env: { ...process.env, SERVICES_BUILD_MODE: BUILD },
        });
        fs.closeSync(err);
        this.waiters = [];
        this.exited = new Promise((resolve) => this.proc.on('exit', (code, sig) => {
            this.dead = true;
            for (const w of this.waiters.splice(0)) w.reject(new Error('services wrapper exited'));
            resolve({ code, sig });
        }));
        createInterface({ input: this.proc.stdout }).on('line', (line) => {
            const w = this.waiters.shift();
            if (!w) return;
            try { w.resolve(JSON.parse(line)); } catch (e) { w.reject(new Error(`bad reply ${line}`)); }
        });
        this.env = {};
        this.queue = Promise.resolve();
    }

    // cmd('start_redis') -> reply; throws with the wrapper's log when not ok.
    cmd(line, timeoutMs = 90000) {
        const run = async () => {
            if (this.dead) throw new Error(`services: wrapper is gone (${line})`);
            const reply = await new Promise((resolve, reject) => {
                const t = setTimeout(() => reject(new Error(`services: ${line}: no answer in ${timeoutMs} ms`)), timeoutMs);
                this.waiters.push({
                    resolve: (v) => { clearTimeout(t); resolve(v); },
                    reject: (e) => { clearTimeout(t); reject(e); },
                });
                this.proc.stdin.write(line + '\n');
            });
            this.env = reply.env;
            if (!reply.ok) {
                throw new Error(`services: ${line} failed: ${reply.out}\n${tail(this.logFile, 3000)}`);
            }
            return reply;
        };
        const p = this.queue.then(run, run);
        this.queue = p.catch(() => {});
        return p;
    }

    async stop() {
        if (this.dead) return;
        try {
            await this.cmd('stop', 120000);
        } catch { /* the exit code says it */ }
        const { code } = await this.exited;
        if (code !== 0) throw new Error(`services did not stop cleanly (status ${code}):\n${tail(this.logFile, 3000)}`);
    }
}

// ---- chatd nodes -------------------------------------------------------------

export class Node {
    constructor(cluster, id, port, args) {
        this.cluster = cluster;
        this.id = id;
        this.port = port;
        this.args = args;
        this.url = `http://127.0.0.1:${port}`;
        this.log = path.join(cluster.dir, `${id}.log`);
        this._portPromise = null; // Cluster.addNode: the port is picked, then start()
    }

    start() {
        const c = this.cluster;
        const env = {};
        for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('CHATD_')) env[k] = v;
        env.ASAN_OPTIONS = env.ASAN_OPTIONS || 'detect_leaks=1:abort_on_error=0';
        const argv = [
            '--host', '127.0.0.1', '--port', String(this.port), '--node-id', this.id,
            '--kafka-brokers', c.services.env.CHATD_KAFKA_BROKERS,
            '--kafka-topic', c.topic,
            // the test clients' librdkafka tuning, from scripts/services.sh
            ...c.services.env.CHATD_KAFKA_OPTIONS.split(',').flatMap((o) => ['--kafka-option', o]),
            '--redis-url', c.services.env.CHATD_REDIS_URL,
            '--pg-dsn', c.services.env.CHATD_PG_DSN,
            '--log-level', process.env.CHATD_IT_LOG_LEVEL || 'info',
            ...(c.secretFile ? ['--auth', 'jwt', '--jwt-secret-file', c.secretFile] : ['--auth', 'none']),
            ...this.args,
        ];
        if (c.secret) tokenSecrets.set(String(this.port), c.secret);
        fs.appendFileSync(this.log, `### ${CHATD} ${argv.join(' ')}\n`);
        const fd = fs.openSync(this.log, 'a');
        this.proc = spawn(CHATD, argv, { cwd: ROOT, env, stdio: ['ignore', fd, fd] });
        fs.closeSync(fd);
        liveProcs.add(this.proc);
        this.exit = new Promise((resolve) => this.proc.on('exit', (code, signal) => {
            liveProcs.delete(this.proc);
            this.exitInfo = { code, signal };
            resolve(this.exitInfo);
        }));
        this.proc.on('error', (e) => fs.appendFileSync(this.log, `### spawn error ${e.message}\n`));
        return this;
    }

    get running() { return !this.exitInfo; }

    // Waits for /readyz 200. With onlyKafkaAfterMs, returns 'kafka' instead
    // when, after that long, the only backend /readyz names is kafka (a node
    // that learns Kafka is up only from traffic; the caller sends some).
    async waitReady(timeoutMs = slow(60000), onlyKafkaAfterMs = 0) {
        await this._portPromise;
        const start = Date.now();
        const deadline = start + timeoutMs;
        for (;;) {
            if (this.exitInfo) {
                throw new Error(`${this.id} exited (${JSON.stringify(this.exitInfo)}) before /readyz; log:\n${tail(this.log)}`);
            }
            try {
                const r = await httpGet(`${this.url}/readyz`, 1000);
                if (r.status === 200) return true;
                if (onlyKafkaAfterMs && Date.now() - start > onlyKafkaAfterMs &&
                    JSON.stringify(JSON.parse(r.body).down) === '["kafka"]') {
                    return 'kafka';
                }
            } catch { /* not listening yet */ }
            if (Date.now() > deadline) {
                throw new Error(`${this.id}: /readyz not 200 after ${timeoutMs} ms; log:\n${tail(this.log)}`);
            }
            await sleep(100);
        }
    }

    // SIGTERM, wait; returns {code, signal}. Never leaves the process running.
    async stop(timeoutMs = slow(30000)) {
        await this._portPromise;
        if (this.exitInfo) return this.exitInfo;
        this.proc.kill('SIGTERM');
        const r = await within(this.exit, timeoutMs);
        if (r) return r;
        this.proc.kill('SIGKILL');
        await this.exit;
        return { code: null, signal: 'SIGKILL', timedOut: true };
    }

    // SIGKILL (or `signal`), wait for the exit; returns {code, signal}.
    async kill(signal = 'SIGKILL') {
        await this._portPromise;
        if (!this.running) return this.exitInfo;
        this.proc.kill(signal);
        return this.exit;
    }

    // Starts a node that exited again: same port, same id, same flags. Waits until
    // it is ready: /readyz 200 for a node with an HTTP port, else until its log
    // shows `readyLog` (default: its consumer was assigned partitions).
    async restart({ wait = true, readyLog = null, timeoutMs = slow(60000) } = {}) {
        await this._portPromise;
        if (this.running) throw new Error(`${this.id} is still running`);
        const from = this.logSize();
        this.exitInfo = undefined; // waitReady refuses to wait on a node that exited
        this.start();
        if (!wait) return this;
        if (readyLog || !this.hasHttp) {
            await this.waitLog(readyLog || /rebalance: assigned/, from, timeoutMs);
        } else {
            await this.waitReady(timeoutMs);
        }
        return this;
    }

    // Whether the node serves HTTP (its roles include socket).
    get hasHttp() {
        const i = this.args.indexOf('--roles');
        return i < 0 || this.args[i + 1].split(',').includes('socket') || this.args[i + 1] === 'all';
    }

    // Resolves with the first log line (after byte offset `from`) matching re.
    waitLog(re, from = 0, timeoutMs = slow(30000)) {
        return until(`${this.id} log ${re}`, () => {
            if (this.exitInfo) throw new Error(`${this.id} exited ${JSON.stringify(this.exitInfo)}`);
            let text = '';
            try { text = fs.readFileSync(this.log, 'utf8').slice(from); } catch { return null; }
            return text.split('\n').find((l) => re.test(l)) || null;
        }, timeoutMs, 100);
    }

    logSize() {
        try { return fs.statSync(this.log).size; } catch { return 0; }
    }

    async metrics() {
        const r = await httpGet(`${this.url}/metrics`);
        return parseMetrics(r.body);
    }
}

// Prometheus text -> [{name, labels: {..}, value}]
export function parseMetrics(text) {
    const out = [];
    for (const line of text.split('\n')) {
        if (!line || line.startsWith('#')) continue;
        const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})?\s+(\S+)/.exec(line);
        if (!m) continue;
        const labels = {};
        if (m[3]) {
            for (const lm of m[3].matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[lm[1]] = lm[2];
        }
        out.push({ name: m[1], labels, value: Number(m[4]) });
    }
    return out;
}

export function metricSum(samples, name, labels = {}) {
    let sum = 0;
    for (const s of samples) {
        if (s.name !== name) continue;
        if (Object.entries(labels).every(([k, v]) => s.labels[k] === v)) sum += s.value;
    }
    return sum;
}

// ---- the cluster -------------------------------------------------------------

export class Cluster {
    // opts: nodes (1), partitions (4), topic, args (extra chatd flags for every
    // node), nodeArgs (array of per-node extra flags), warmup (true),
    // auth ('jwt': tokens on with a secret in the cluster's dir, c.secret;
    // 'none': name-only mode)
    static async start(opts = {}) {
        const c = new Cluster(opts);
        const t0 = Date.now();
        try {
            await c._start();
            if (process.env.CHATD_IT_VERBOSE) process.stderr.write(`cluster up in ${Date.now() - t0} ms\n`);
        } catch (e) {
            await c.stop().catch(() => {});
            throw e;
        }
        return c;
    }

    constructor(opts) {
        this.opts = opts;
        this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'chatd-it.'));
        liveDirs.add(this.dir);
        this.topic = opts.topic || 'chatd-it';
        this.partitions = opts.partitions || 4;
        this.nodes = [];
        this.services = new Services(path.join(this.dir, 'services.log'));
        if ((opts.auth || 'jwt') === 'jwt') {
            this.secret = crypto.randomBytes(32).toString('hex');
            this.secretFile = path.join(this.dir, 'jwt-secret');
            fs.writeFileSync(this.secretFile, this.secret + '\n', { mode: 0o600 });
        }
    }

    async _start() {
        if (!fs.existsSync(CHATD)) throw new Error(`${CHATD} not built (scons -Q -j2 mode=${BUILD})`);
        await Promise.all([
            this.services.cmd('start_postgres'),
            this.services.cmd('start_redis'),
            this.opts.broker === 'mock'
                ? this.services.cmd(`start_broker --topic ${this.topic} --partitions ${this.partitions}`)
                : this.services.cmd(`start_kafka --topic ${this.topic} --partitions ${this.partitions}`),
        ]);
        const n = this.opts.nodes || 1;
        for (let i = 0; i < n; i++) {
            this.addNode((this.opts.args || []).concat((this.opts.nodeArgs || [])[i] || []));
        }
        // A node may report Kafka down until a message went through it (see
        // protocol_http: "an idle node becomes ready"); then the warm-up's
        // traffic must make it ready.
        const r = await Promise.all(this.nodes.map((nd) => nd.waitReady(slow(60000), slow(12000))));
        if (this.opts.warmup !== false || r.includes('kafka')) await this.warmup();
        await Promise.all(this.nodes.map((nd) => nd.waitReady(slow(20000))));
    }

    // Starts one more node (not waiting for it); returns it.
    addNode(args = [], id = `node${this.nodes.length}`) {
        // ports are picked one at a time; a lost race shows as a failed start
        const nd = new Node(this, id, 0, args);
        this.nodes.push(nd);
        nd._portPromise = freePort().then((p) => {
            nd.port = p;
            nd.url = `http://127.0.0.1:${p}`;
            nd.start();
        });
        return nd;
    }

    async startNode(args = [], id) {
        const nd = this.addNode(args, id);
        await nd.waitReady(slow(60000), slow(12000));
        return nd;
    }

    url(i = 0) { return this.nodes[i].url; }

    // Until the consumer group has formed and every partition is consumed, stored
    // and fanned out, messages are slow; send one message into rooms spread over
    // the partitions through every node and wait until each is delivered live to
    // a member on every node (or on the given nodes only).
    async warmup(timeoutMs = slow(60000), nodes = this.nodes) {
        const rooms = Array.from({ length: Math.max(8, this.partitions * 3) }, (_, i) => `warmup-${i}`);
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

    // Runs SQL through psql against the cluster's PostgreSQL; rows as arrays of strings.
    sql(query) {
        const r = spawnSync('psql', [this.services.env.CHATD_PG_DSN, '-X', '-q', '-A', '-t', '-F', '\t',
            '-v', 'ON_ERROR_STOP=1', '-c', query], { encoding: 'utf8', timeout: 30000 });
        if (r.status !== 0) throw new Error(`psql failed (${r.status}): ${r.stderr}`);
        return r.stdout.split('\n').filter((l) => l.length).map((l) => l.split('\t'));
    }

    dumpLogs(header, since = null) {
        const parts = [`==== ${header}: logs in ${this.dir}`];
        for (const nd of this.nodes) {
            const from = since ? (since.get(nd) || 0) : 0;
            const t = tail(nd.log, process.env.CHATD_IT_VERBOSE ? 1 << 24 : 6000, from);
            parts.push(`---- ${nd.id} (${nd.url}) ${nd.exitInfo ? 'exited ' + JSON.stringify(nd.exitInfo) : 'running'}\n${t}`);
        }
        const s = tail(this.services.logFile, 2000);
        if (s) parts.push(`---- services\n${s}`);
        process.stderr.write(parts.join('\n') + '\n');
    }

    // Stops every node (SIGTERM; each must exit 0), then the services; removes
    // the temp dir. Throws when a node did not exit 0.
    async stop() {
        for (const s of liveSockets) s.close();
        const problems = [];
        const results = await Promise.all(this.nodes.map(async (nd) => {
            if (nd._portPromise) await nd._portPromise.catch(() => {});
            if (!nd.proc) return null;
            const wasRunning = nd.running;
            const t0 = Date.now();
            const r = await nd.stop();
            if (process.env.CHATD_IT_VERBOSE) process.stderr.write(`${nd.id} stopped in ${Date.now() - t0} ms: ${JSON.stringify(r)}\n`);
            return { nd, r, wasRunning };
        }));
        for (const x of results) {
            if (!x) continue;
            if (x.r.code !== 0 && !x.nd.expectExit) {
                problems.push(`${x.nd.id} ${x.wasRunning ? 'stopped by SIGTERM' : 'had exited'} with ${JSON.stringify(x.r)}`);
            }
        }
        try {
            const t0 = Date.now();
            await this.services.stop();
            if (process.env.CHATD_IT_VERBOSE) process.stderr.write(`services stopped in ${Date.now() - t0} ms\n`);
        } catch (e) {
            problems.push(e.message);
        }
        if (problems.length || anyFailure) this.dumpLogs(problems.length ? problems.join('; ') : 'a test failed');
        if (process.env.CHATD_IT_KEEP) {
            process.stderr.write(`kept ${this.dir}\n`);
        } else {
            fs.rmSync(this.dir, { recursive: true, force: true });
        }
        liveDirs.delete(this.dir);
        if (problems.length) throw new Error(problems.join('\n'));
    }
}

// useCluster(opts): starts a cluster before the file's tests and stops it after.
// Returns a holder whose .c is the Cluster once started.
export function useCluster(opts = {}) {
    const ctx = { c: null };
    before(async () => { ctx.c = await Cluster.start(opts); }, { timeout: slow(180000) });
    after(async () => {
        if (ctx.c) await ctx.c.stop();
    }, { timeout: slow(180000) });
    ctx.it = (name, o, fn) => it(ctx, name, o, fn);
    return ctx;
}

// it(ctx, name, [opts], fn): node:test's test, plus: on failure the node logs
// written during the test are printed, and every socket it opened is closed.
export function it(ctx, name, opts, fn) {
    if (typeof opts === 'function') { fn = opts; opts = {}; }
    const o = { timeout: slow(60000), ...opts };
    return test(name, o, async (t) => {
        const since = new Map((ctx.c?.nodes || []).map((nd) => [nd, nd.logSize()]));
        const before = new Set(liveSockets);
        try {
            await fn(t, ctx.c);
        } catch (e) {
            anyFailure = true;
            ctx.c?.dumpLogs(`FAILED: ${name}`, since);
            throw e;
        } finally {
            for (const s of liveSockets) if (!before.has(s)) s.close();
        }
    });
}

// ---- socket.io-client helpers ------------------------------------------------

// connect(url, user, opts): a connected socket.io-client socket. user undefined:
// no auth at all. opts go to io() (reconnection defaults to false). Every
// 'message' and 'typing' event is recorded from the start in socket.got[event].
export function makeSocket(url, user, opts = {}) {
    const o = {
        transports: ['websocket'],
        reconnection: false,
        forceNew: true,
        timeout: slow(10000),
        ...opts,
    };
    if (user !== undefined && !('auth' in opts)) o.auth = authFor(url, user);
    const s = io(url, o);
    s.got = { message: [], typing: [] };
    s.waiters = [];
    s.onAny((event, ...args) => {
        (s.got[event] ||= []).push(args[0]);
        for (const w of s.waiters.slice()) w(event, args[0]);
    });
    liveSockets.add(s);
    const origClose = s.close.bind(s);
    s.close = () => { liveSockets.delete(s); return origClose(); };
    return s;
}

export function connect(url, user, opts = {}) {
    const s = makeSocket(url, user, opts);
    return new Promise((resolve, reject) => {
        const t = setTimeout(() => { s.close(); reject(new Error(`connect ${user}: timeout`)); }, slow(15000));
        s.once('connect', () => { clearTimeout(t); resolve(s); });
        s.once('connect_error', (e) => { clearTimeout(t); s.close(); reject(e); });
    });
}

// connectError(url, user | undefined, opts): resolves with the connect_error's
// Error; rejects if the connection succeeds.
export function connectError(url, user, opts = {}) {
    const s = makeSocket(url, user, opts);
    return new Promise((resolve, reject) => {
        const t = setTimeout(() => { s.close(); reject(new Error('neither connect nor connect_error')); }, slow(15000));
        s.once('connect', () => { clearTimeout(t); s.close(); reject(new Error(`connected as ${JSON.stringify(user)}`)); });
        s.once('connect_error', (e) => { clearTimeout(t); s.close(); resolve(e); });
    });
}

// emitAck(socket, event, payload, timeoutMs): the ack's first argument.
// payload === undefined emits the event with no argument at all.
export async function emitAck(socket, event, payload, timeoutMs = slow(10000)) {
    try {
        if (payload === undefined) return await socket.timeout(timeoutMs).emitWithAck(event);
        return await socket.timeout(timeoutMs).emitWithAck(event, payload);
    } catch (e) {
        const err = new Error(`no ack for ${event} ${JSON.stringify(payload)?.slice(0, 200)} within ${timeoutMs} ms (${e.message})`);
        err.noAck = true;
        throw err;
    }
}

// waitFor(socket, event, predicate, timeoutMs): the first event (already
// received, or arriving) that satisfies predicate.
export function waitFor(socket, event, predicate = () => true, timeoutMs = slow(10000)) {
    const seen = (socket.got[event] || []).find(predicate);
    if (seen !== undefined) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
        const w = (ev, arg) => {
            if (ev === event && predicate(arg)) {
                clearTimeout(t);
                socket.waiters.splice(socket.waiters.indexOf(w), 1);
                resolve(arg);
            }
        };
        const t = setTimeout(() => {
            socket.waiters.splice(socket.waiters.indexOf(w), 1);
            reject(new Error(`no ${event} event matching ${predicate} within ${timeoutMs} ms`));
        }, timeoutMs);
        socket.waiters.push(w);
    });
}

export function onceEvent(emitter, event, timeoutMs = slow(10000)) {
    return new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`no ${event} within ${timeoutMs} ms`)), timeoutMs);
        emitter.once(event, (...a) => { clearTimeout(t); resolve(a); });
    });
}

// Asserts an ack is {ok:false, error:{code, message}} with the given code.
export function errCode(ack) {
    if (!ack || ack.ok !== false || !ack.error || typeof ack.error.code !== 'string' ||
        typeof ack.error.message !== 'string') {
        return `not an error ack: ${JSON.stringify(ack)}`;
    }
    return ack.error.code;
}

// ---- raw Engine.IO over WebSocket -------------------------------------------

// rawConnect(url, {user, autoPong, connect}): a WebSocket speaking Engine.IO by
// hand. .open is the parsed open packet; .frames every text frame received;
// .next(pred, ms) the next matching frame; .closed resolves {code, reason}.
// With connect (default when user is given) the Socket.IO CONNECT is done,
// with opts.auth or the user's auth (a token when the node wants one);
// opts.headers go on the upgrade request.
export async function rawConnect(url, opts = {}) {
    const { user, autoPong = true } = opts;
    const doConnect = opts.connect ?? (user !== undefined);
    const wsUrl = url.replace(/^http/, 'ws') + '/socket.io/?EIO=4&transport=websocket';
    const ws = new WebSocket(wsUrl, { perMessageDeflate: false, maxPayload: 1 << 24, headers: opts.headers || {} });
    const r = {
        ws,
        frames: [],
        waiters: [],
        closeInfo: null,
        send: (text) => ws.send(text),
        sendBuffer: (buf, binary = false) => ws.send(buf, { binary }),
        close: () => { try { ws.terminate(); } catch { /* closed */ } },
    };
    r.closed = new Promise((resolve) => {
        ws.on('close', (code, reason) => {
            r.closeInfo = { code, reason: reason.toString() };
            resolve(r.closeInfo);
        });
    });
    ws.on('error', () => { /* reported through close */ });
    ws.on('message', (data, isBinary) => {
        const text = isBinary ? data : data.toString('utf8');
        if (autoPong && text === '2') ws.send('3');
        r.frames.push(text);
        for (const w of r.waiters.slice()) w(text);
    });
    r.next = (pred = () => true, timeoutMs = slow(10000), fromStart = false) => {
        if (fromStart) {
            const f = r.frames.find(pred);
            if (f !== undefined) return Promise.resolve(f);
        }
        return new Promise((resolve, reject) => {
            const w = (f) => {
                if (pred(f)) {
                    clearTimeout(t);
                    r.waiters.splice(r.waiters.indexOf(w), 1);
                    resolve(f);
                }
            };
            const t = setTimeout(() => {
                r.waiters.splice(r.waiters.indexOf(w), 1);
                reject(new Error(`raw: no frame matching ${pred} within ${timeoutMs} ms; got ${JSON.stringify(r.frames.slice(-5))}`));
            }, timeoutMs);
            r.waiters.push(w);
        });
    };
    // the open packet is the first frame
    const first = r.next((f) => typeof f === 'string' && f.startsWith('0'), slow(10000));
    await new Promise((resolve, reject) => {
        ws.once('open', resolve);
        ws.once('error', reject);
        ws.once('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
    });
    r.open = JSON.parse((await first).slice(1));
    if (doConnect) {
        const reply = r.next((f) => typeof f === 'string' && f.startsWith('4'));
        ws.send('40' + JSON.stringify(opts.auth || authFor(url, user)));
        const f = await reply;
        if (!f.startsWith('40')) throw new Error(`raw connect refused: ${f}`);
        r.sid = JSON.parse(f.slice(2)).sid;
    }
    // rawAck(r, id): the ack packet '3<id>[...]' parsed, or rejects on timeout
    r.ack = async (id, timeoutMs = slow(10000)) => {
        const f = await r.next((x) => typeof x === 'string' && new RegExp(`^43${id}\\[`).test(x), timeoutMs, true);
        return JSON.parse(f.slice(2 + String(id).length))[0];
    };
    liveSockets.add(r);
    return r;
}

// uniq: a short unique string per call, for room names and message ids.
let uniqN = 0;
const uniqBase = `${process.pid.toString(36)}${Date.now().toString(36).slice(-4)}`;
export function uniq(prefix = 'r') {
    return `${prefix}-${uniqBase}-${(uniqN++).toString(36)}`;
}

export function assertDense(seqs, from = 1) {
    for (let i = 0; i < seqs.length; i++) {
        if (seqs[i] !== from + i) {
            throw new Error(`seqs not dense from ${from}: at index ${i} got ${seqs[i]} (${JSON.stringify(seqs.slice(Math.max(0, i - 3), i + 3))})`);
        }
    }
}
