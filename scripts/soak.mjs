// The chaos soak (see scripts/soak, which builds and runs this): a 3-node
// cluster on the real services, clients chatting on every node with retries and
// join-since catch-up, and a seeded schedule of faults, then a check of the whole
// history in Jepsen's manner. Exits 1 naming the first violation.
//
//   node scripts/soak.mjs [--seconds 600] [--seed N] [--clients 30] [--rooms 10]
//                         [--mixed] [--crash-p 0.0002] [--only KIND,...]
//
// Faults, one at a time, a few seconds apart: SIGKILL of a node and its restart,
// SIGSTOP/SIGCONT of a node, PostgreSQL restart, Redis restart, Kafka broker
// SIGKILL and restart, Kafka broker SIGSTOP/SIGCONT; all the while every actor of
// every node crashes with probability --crash-p per message (chatd --faults). A
// node that exits by itself (a supervisor that gave up) is restarted and
// counted. --mixed runs one full node, one edge (socket, producer) and one
// storage node (consumer, store, fanout) instead of three full nodes; clients
// then connect to the first two.
//
// The checks, after the faults stop and the traffic ends (settleAndCheck in
// tests/integration/cluster_ops.mjs): every acked message stored exactly once
// with its text, nothing stored that was never sent, seqs dense per room, every
// client has every stored message of its rooms in order (live or through join
// since) with nothing extra, no error ack; then presence converges to exactly the
// connected users of each room, seen from every node.
import { AssertionError } from 'node:assert';
import fs from 'node:fs';
import {
    Cluster, emitAck, httpGet, sleep, until,
} from '../tests/integration/cluster.mjs';
import {
    ChatClient, EDGE, kill9, metric, restart, settleAndCheck,
} from '../tests/integration/cluster_ops.mjs';

function options(argv) {
    const o = { seconds: 600, seed: Date.now() % 2147483647, clients: 30, rooms: 10, mixed: false, crashP: 0.0002, only: null };
    for (let i = 0; i < argv.length; i++) {
        const a = argv[i];
        const next = () => {
            const v = Number(argv[++i]);
            if (!Number.isFinite(v)) throw new Error(`${a} wants a number`);
            return v;
        };
        if (a === '--seconds') o.seconds = next();
        else if (a === '--seed') o.seed = next();
        else if (a === '--clients') o.clients = next();
        else if (a === '--rooms') o.rooms = next();
        else if (a === '--crash-p') o.crashP = next();
        else if (a === '--mixed') o.mixed = true;
        else if (a === '--only') o.only = argv[++i].split(',');
        else throw new Error(`unknown argument ${a} (see scripts/soak --help)`);
    }
    for (const k of o.only || []) {
        if (!FAULT_KINDS.includes(k)) throw new Error(`--only: no fault kind ${k} (${FAULT_KINDS.join(', ')})`);
    }
    return o;
}

// mulberry32: a small seeded generator, so a seed replays the same schedule
function rng(seed) {
    let s = seed >>> 0;
    const next = () => {
        s = (s + 0x6D2B79F5) >>> 0;
        let t = s;
        t = Math.imul(t ^ (t >>> 15), t | 1);
        t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
        return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
    return {
        next,
        int: (lo, hi) => lo + Math.floor(next() * (hi - lo + 1)),
        pick: (xs) => xs[Math.floor(next() * xs.length)],
    };
}

const FAULT_KINDS = ['node_kill', 'node_stop', 'postgres_restart', 'redis_restart', 'broker_kill', 'broker_stop'];

const t0 = Date.now();
const log = (msg) => process.stdout.write(`[${((Date.now() - t0) / 1000).toFixed(1).padStart(6)} s] ${msg}\n`);

class Soak {
    constructor(o) {
        this.o = o;
        this.r = rng(o.seed);
        this.faults = {};          // kind -> count
        this.nodeRestarts = 0;     // restarts of nodes the schedule killed
        this.selfExits = 0;        // nodes that exited by themselves
        this.maxRecoveryMs = 0;
        this.recoveries = [];
        this.intentional = new Set();
    }

    async start() {
        const o = this.o;
        const crash = `seed=${o.seed}; crash:*,p=${o.crashP}`;
        this.c = await Cluster.start({
            nodes: 3, partitions: 8,
            args: ['--faults', crash, '--presence-ttl-ms', '10000'],
            nodeArgs: o.mixed ? [[], EDGE, ['--roles', 'consumer,store,fanout']] : [],
        });
        this.http = o.mixed ? this.c.nodes.slice(0, 2) : this.c.nodes;
        for (const nd of this.c.nodes) this.watchExit(nd);
        log(`cluster up: ${this.c.nodes.map((nd) => `${nd.id} ${nd.url}`).join(', ')}; faults "${crash}"`);
    }

    // A node that exits though nobody killed it is restarted (and counted).
    watchExit(nd) {
        nd.exit.then(() => {
            if (this.stopping || this.intentional.has(nd)) return;
            this.selfExits++;
            log(`${nd.id} exited by itself (${JSON.stringify(nd.exitInfo)}); restarting it. The end of its log:`);
            const lines = fs.readFileSync(nd.log, 'utf8').trimEnd().split('\n');
            process.stdout.write(lines.slice(-12).map((l) => `    ${l}\n`).join(''));
            sleep(500).then(() => this.restartNode(nd)).catch((e) => log(`${nd.id} restart failed: ${e.message}`));
        });
    }

    async restartNode(nd) {
        await restart(nd, { wait: this.http.includes(nd) });
        this.watchExit(nd);
    }

    async ready() {
        const t = Date.now();
        await until('every node ready', async () => {
            for (const nd of this.http) {
                if (!nd.running || (await httpGet(`${nd.url}/readyz`, 2000)).status !== 200) return false;
            }
            return this.c.nodes.every((nd) => nd.running);
        }, 120000, 200);
        return Date.now() - t;
    }

    // One fault from the schedule, healed before it returns.
    async fault() {
        const r = this.r;
        const kind = r.pick(this.o.only || FAULT_KINDS);
        this.faults[kind] = (this.faults[kind] || 0) + 1;
        const nd = r.pick(this.c.nodes.filter((n) => n.running));
        const svc = (cmd) => this.c.services.cmd(cmd, 120000);
        switch (kind) {
        case 'node_kill': {
            const down = r.int(500, 3000);
            log(`fault: SIGKILL ${nd.id}, restart after ${down} ms`);
            this.intentional.add(nd);
            await kill9(nd);
            await sleep(down);
            this.intentional.delete(nd);
            await this.restartNode(nd);
            this.nodeRestarts++;
            break;
        }
        case 'node_stop': {
            const ms = r.int(1000, 5000);
            log(`fault: SIGSTOP ${nd.id} for ${ms} ms`);
            nd.proc.kill('SIGSTOP');
            await sleep(ms);
            nd.proc.kill('SIGCONT');
            break;
        }
        case 'postgres_restart':
            log('fault: PostgreSQL restart');
            await svc('restart_postgres');
            break;
        case 'redis_restart':
            log('fault: Redis restart (empty)');
            await svc('restart_redis');
            break;
        case 'broker_kill': {
            const down = r.int(0, 2000);
            log(`fault: SIGKILL the Kafka broker, restart after ${down} ms`);
            await svc('kill_kafka');
            await sleep(down);
            await svc('restart_kafka');
            break;
        }
        case 'broker_stop': {
            const ms = r.int(1000, 4000);
            log(`fault: SIGSTOP the Kafka broker for ${ms} ms`);
            await svc('pause_kafka');
            await sleep(ms);
            await svc('resume_kafka');
            break;
        }
        }
        const rec = await this.ready();
        this.recoveries.push(rec);
        this.maxRecoveryMs = Math.max(this.maxRecoveryMs, rec);
        log(`  healed; every node ready ${rec} ms later`);
    }

    clients() {
        const o = this.o;
        const rooms = Array.from({ length: o.rooms }, (_, i) => `soak-${o.seed}-r${i}`);
        const clients = [];
        for (let i = 0; i < o.clients; i++) {
            const mine = [rooms[i % o.rooms], rooms[(i + 3) % o.rooms], rooms[(i + 7) % o.rooms]];
            clients.push(new ChatClient(this.c, `soak-u${i}`, i % this.http.length, [...new Set(mine)], this.http));
        }
        return { rooms, clients };
    }

    // Every room's presence, asked on every HTTP node, is exactly its connected members.
    async presenceConverges(clients, rooms) {
        const want = new Map(rooms.map((room) => [room,
            [...new Set(clients.filter((cl) => cl.rooms.includes(room) && cl.sock?.connected).map((cl) => cl.user))].sort()]));
        const askers = this.http.map((nd) => clients.find((cl) => cl.node === nd && cl.sock?.connected)).filter(Boolean);
        let last = '';
        const t = Date.now();
        await until('presence to converge', async () => {
            for (const cl of askers) {
                for (const room of rooms) {
                    const p = await emitAck(cl.sock, 'presence', { room }, 5000);
                    const got = JSON.stringify(p.users);
                    if (!p.ok || got !== JSON.stringify(want.get(room))) {
                        last = `${room} seen from ${cl.node.id}: ${got}, want ${JSON.stringify(want.get(room))}`;
                        return false;
                    }
                }
            }
            return true;
        }, 60000, 500).catch(() => {
            throw new AssertionError({ message: `presence did not converge in 60 s: ${last}` });
        });
        return Date.now() - t;
    }

    async summary(result, clients) {
        const acked = clients.reduce((n, cl) => n + cl.acked.length, 0);
        let injected = 0;
        let actorRestarts = 0;
        for (const nd of this.c.nodes) {
            // the logs span every run of the node; /metrics only its last start
            injected += (fs.readFileSync(nd.log, 'utf8').match(/fault injected: crash/g) || []).length;
            if (this.http.includes(nd)) actorRestarts += await metric(nd, 'chatd_actor_restarts_total').catch(() => 0);
        }
        const rec = [...this.recoveries].sort((a, b) => a - b);
        log('---- soak summary');
        log(`seed ${this.o.seed}, ${this.o.seconds} s of faults, ${clients.length} clients, ${this.o.rooms} rooms, ` +
            `${this.o.mixed ? 'mixed roles' : 'three full nodes'}`);
        log(`acked ${acked}, stored ${result.total}, live gaps filled by join since ${result.fills.length}, ` +
            `stored messages a connected client missed live ${result.lost.size}`);
        log(`faults: ${Object.entries(this.faults).map(([k, v]) => `${k} ${v}`).join(', ') || 'none'}; ` +
            `crash faults injected ${injected}`);
        log(`restarts: nodes by the schedule ${this.nodeRestarts}, nodes that exited by themselves ${this.selfExits}, ` +
            `actor restarts since the nodes' last start ${actorRestarts}`);
        if (rec.length) {
            log(`recovery (fault healed -> every node ready): median ${rec[rec.length >> 1]} ms, max ${this.maxRecoveryMs} ms`);
        }
        log(`presence converged ${result.presenceMs} ms after the end`);
    }
}

async function main() {
    const o = options(process.argv.slice(2));
    const soak = new Soak(o);
    await soak.start();
    const { rooms, clients } = soak.clients();
    let failure = null;
    try {
        await Promise.all(clients.map((cl) => cl.ensure()));
        const end = Date.now() + o.seconds * 1000;
        const traffic = clients.map((cl) => cl.traffic(Infinity, 400 + (cl.user.length % 5) * 50));
        log(`${clients.length} clients chatting; faults for ${o.seconds} s (seed ${o.seed})`);
        await sleep(2000);
        while (Date.now() < end) {
            await soak.fault();
            await sleep(soak.r.int(1000, 4000));
        }
        log('faults over; traffic for 5 s more');
        await soak.ready();
        await sleep(5000);
        for (const cl of clients) cl.trafficStop = true;
        await Promise.all(traffic);
        const result = await settleAndCheck(null, soak.c, clients, rooms, log, 0, t0);
        // settleAndCheck stops reconnects; presence is checked on the sockets as they are
        result.presenceMs = await soak.presenceConverges(clients, rooms);
        await soak.summary(result, clients);
    } catch (e) {
        failure = e;
    } finally {
        soak.stopping = true;
        for (const cl of clients) {
            cl.stopped = true;
            cl.sock?.close();
        }
        if (failure && !(failure instanceof AssertionError)) log(`soak error: ${failure.stack}`);
        if (failure) soak.c.dumpLogs?.('soak failed', null);
        await soak.c.stop().catch((e) => log(`cluster stop: ${e.message}`));
    }
    if (failure) {
        log(`VIOLATION: ${failure.message}`);
        process.exit(1);
    }
    log('no violation');
}

main().catch((e) => {
    log(`soak: ${e.stack}`);
    process.exit(2);
});
