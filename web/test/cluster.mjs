// web/test/cluster.mjs: the page test's cluster: backing services started by
// services.sh (scripts/services.sh underneath) and chatd nodes on free ports that a
// test can kill and start again on the same port with the same flags.

import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const CHATD = process.env.CHATD_BIN || path.join(ROOT, 'build', process.env.CHATD_BUILD || 'debug', 'actors', 'chatd');
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const live = new Set();
process.on('exit', () => { for (const p of live) try { p.kill('SIGKILL'); } catch { /* gone */ } });

export function freePort() {
    return new Promise((resolve, reject) => {
        const srv = net.createServer();
        srv.on('error', reject);
        srv.listen(0, '127.0.0.1', () => {
            const { port } = srv.address();
            srv.close(() => resolve(port));
        });
    });
}

export async function until(what, fn, timeoutMs = 15000, stepMs = 50) {
    const deadline = Date.now() + timeoutMs;
    let last;
    for (;;) {
        try {
            const v = await fn();
            if (v) return v;
        } catch (e) { last = e; }
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${last.message}` : ''}`);
        await sleep(stepMs);
    }
}

export class Cluster {
    constructor({ nodes = 2, partitions = 4, args = [] } = {}) {
        this.count = nodes;
        this.partitions = partitions;
        this.args = args;
        this.topic = 'chatd-web';
        this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'chatd-web-e2e.'));
        this.nodes = [];
    }

    async start() {
        const err = fs.openSync(path.join(this.dir, 'services.log'), 'a');
        this.services = spawn('bash', [path.join(ROOT, 'web', 'test', 'services.sh'), this.topic, String(this.partitions)],
            { cwd: ROOT, stdio: ['pipe', 'pipe', err] });
        fs.closeSync(err);
        live.add(this.services);
        this.servicesExit = new Promise((r) => this.services.on('exit', (code) => { live.delete(this.services); r(code); }));
        this.env = await new Promise((resolve, reject) => {
            const t = setTimeout(() => reject(new Error('services did not start in 120 s')), 120000);
            createInterface({ input: this.services.stdout }).on('line', (line) => {
                if (line.startsWith('ready ')) { clearTimeout(t); resolve(JSON.parse(line.slice(6))); }
            });
            this.servicesExit.then((code) => reject(new Error(`services exited (${code}):\n${this.log('services')}`)));
        });
        for (let i = 0; i < this.count; i++) {
            const node = { id: `node${i}`, port: await freePort() };
            node.url = `http://127.0.0.1:${node.port}`;
            this.nodes.push(node);
            this.startNode(i);
        }
        await Promise.all(this.nodes.map((_, i) => this.ready(i)));
    }

    url(i) { return this.nodes[i].url; }

    log(name) {
        try { return fs.readFileSync(path.join(this.dir, `${name}.log`), 'utf8').slice(-4000); } catch { return ''; }
    }

    startNode(i) {
        const n = this.nodes[i];
        const env = {};
        for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('CHATD_')) env[k] = v;
        const argv = [
            '--host', '127.0.0.1', '--port', String(n.port), '--node-id', n.id,
            '--kafka-brokers', this.env.CHATD_KAFKA_BROKERS, '--kafka-topic', this.topic,
            '--kafka-option', 'session.timeout.ms=6000', '--kafka-option', 'fetch.wait.max.ms=10',
            '--redis-url', this.env.CHATD_REDIS_URL, '--pg-dsn', this.env.CHATD_PG_DSN,
            '--web-root', path.join(ROOT, 'build', 'web'),
            ...this.args,
        ];
        const fd = fs.openSync(path.join(this.dir, `${n.id}.log`), 'a');
        n.proc = spawn(CHATD, argv, { cwd: ROOT, env, stdio: ['ignore', fd, fd] });
        fs.closeSync(fd);
        live.add(n.proc);
        const proc = n.proc;
        n.exited = new Promise((r) => proc.on('exit', (code, sig) => { live.delete(proc); r({ code, sig }); }));
    }

    async ready(i, timeoutMs = 60000) {
        const n = this.nodes[i];
        await until(`${n.id} /readyz`, async () => {
            const res = await fetch(`${n.url}/readyz`, { signal: AbortSignal.timeout(2000) });
            return res.status === 200;
        }, timeoutMs, 100).catch((e) => { throw new Error(`${e.message}\n${this.log(n.id)}`); });
    }

    async kill(i, sig = 'SIGKILL') {
        const n = this.nodes[i];
        n.proc.kill(sig);
        return n.exited;
    }

    async restart(i) {
        // the same port and flags; a port in TIME_WAIT may need a moment
        this.startNode(i);
        await this.ready(i);
    }

    // Hangs the Kafka broker (SIGSTOP) or lets it go on (SIGCONT): to a client a
    // hung broker is one that is down, and it comes back without a restart.
    brokerHang(hung) {
        process.kill(this.env.KAFKA_PID, hung ? 'SIGSTOP' : 'SIGCONT');
    }

    async stop() {
        const codes = [];
        for (const n of this.nodes) {
            if (n.proc && n.proc.exitCode === null && n.proc.signalCode === null) n.proc.kill('SIGTERM');
        }
        for (const n of this.nodes) codes.push(await n.exited);
        if (this.services) {
            this.services.stdin.end();
            await this.servicesExit;
        }
        if (!process.env.CHATD_E2E_KEEP) fs.rmSync(this.dir, { recursive: true, force: true });
        return codes;
    }
}
