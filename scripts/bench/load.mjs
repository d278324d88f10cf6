// scripts/bench/load.mjs: the load generator of scripts/bench/run.sh.
//
//   node scripts/bench/load.mjs --urls U0,U1 --pids P0,P1 [--services-dir D]
//        [--idle 2000] [--rooms 10] [--members 100] [--rate 200] [--seconds 15]
//        [--sat-rates 400,800,1600,3200] [--sat-seconds 8] [--json FILE]
//   node scripts/bench/load.mjs --summarize run1.json run2.json ...
//
// Phases, against a running 2-node cluster (U0/P0 = node0's URL and pid):
//  1. idle: --idle connections to node0 that join nothing; node0's VmRSS
//     before/after gives bytes per idle connection; its CPU over 5 s idle.
//     --idle 0 skips it (scripts/bench/compare.sh: the peer has no /metrics).
//  2. fanout: --rooms x --members connections spread over both nodes (member m
//     on node m%2), each joined to its room; two senders per room (one per node)
//     send --rate messages/s in total for --seconds. Latency is send -> delivery
//     at members on the node other than the sender's, on this process's one
//     clock. Server CPU per delivery = delta (utime+stime) of both chatd
//     processes / delta chatd_messages_delivered_total of both.
//  3. saturation: the same rooms at each --sat-rates step for --sat-seconds,
//     until acks lag (p50 ack > 500 ms or deliveries fall behind).
// Everything is loopback; the run is bounded (each phase has a deadline).
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const require = createRequire(path.join(ROOT, 'tests/integration/package.json'));
const { io } = require('socket.io-client');

const argv = process.argv.slice(2);
function opt(name, dflt) {
    const i = argv.indexOf(`--${name}`);
    return i >= 0 ? argv[i + 1] : dflt;
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const now = () => performance.now();
const CLK_TCK = 100; // getconf CLK_TCK on Linux
// ids are unique per (user, room): a second run against the same cluster must
// not send ids the first one used (they would be retries, stored once)
const RUN = `${process.pid.toString(36)}${Date.now().toString(36)}`;

// ---- /proc and /metrics -------------------------------------------------------

function cpuTicks(pid) {
    try {
        const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
        const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
        return Number(f[11]) + Number(f[12]); // utime, stime (fields 14, 15)
    } catch { return 0; }
}
const cpuUs = (pids) => pids.reduce((a, p) => a + cpuTicks(p), 0) * (1e6 / CLK_TCK);
function rssKb(pid) {
    const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return Number(m[1]);
}
async function metrics(url) {
    const text = await (await fetch(`${url}/metrics`)).text();
    const out = {};
    for (const line of text.split('\n')) {
        if (!line || line[0] === '#') continue;
        const sp = line.lastIndexOf(' ');
        out[line.slice(0, sp)] = Number(line.slice(sp + 1));
    }
    return out;
}
async function metricSum(urls, name) {
    let s = 0;
    for (const u of urls) s += (await metrics(u))[name] || 0;
    return s;
}
// The broker measured, named in the output; servicePids finds out which.
let broker = 'a broker of your own (--kafka HOST:PORT)';
// The services' pids (for their CPU), from scripts/services.sh's files.
function servicePids(dir) {
    const out = {};
    if (!dir) return out;
    const read = (f) => { try { return fs.readFileSync(path.join(dir, f), 'utf8').split('\n')[0].trim(); } catch { return null; } };
    const b = read('broker.pid'); if (b) { out.kafka_mock = () => [b]; broker = 'librdkafka\'s in-memory mock broker'; }
    const k = read('kafka.pid'); if (k) { out.kafka = () => [k]; broker = 'a real Apache Kafka (deploy/kafka, one KRaft node)'; }
    const r = read('redis.pid'); if (r) out.redis = () => [r];
    const pg = read('pg/postmaster.pid');
    if (pg) {
        out.postgres = () => {
            // the postmaster and its current children (backends, walwriter, ...)
            const kids = [];
            for (const d of fs.readdirSync('/proc')) {
                if (!/^\d+$/.test(d)) continue;
                try {
                    const s = fs.readFileSync(`/proc/${d}/stat`, 'utf8');
                    if (s.slice(s.lastIndexOf(')') + 2).split(' ')[1] === pg) kids.push(d);
                } catch { /* gone */ }
            }
            return [pg, ...kids];
        };
    }
    return out;
}

// ---- clients -----------------------------------------------------------------

function connect(url, user) {
    const s = io(url, { transports: ['websocket'], auth: { user }, forceNew: true, reconnection: false, timeout: 20000 });
    return new Promise((resolve, reject) => {
        s.once('connect', () => resolve(s));
        s.once('connect_error', (e) => { s.close(); reject(new Error(`connect ${user}: ${e.message}`)); });
    });
}
async function pool(n, limit, fn) {
    const out = new Array(n);
    let next = 0;
    await Promise.all(Array.from({ length: Math.min(limit, n) }, async () => {
        while (next < n) { const i = next++; out[i] = await fn(i); }
    }));
    return out;
}
function pct(sorted, p) {
    if (!sorted.length) return NaN;
    return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
}
function stats(arr) {
    const s = Float64Array.from(arr).sort();
    return { n: s.length, p50: pct(s, 0.5), p90: pct(s, 0.9), p99: pct(s, 0.99), p999: pct(s, 0.999), max: s.length ? s[s.length - 1] : NaN };
}

// ---- phases ------------------------------------------------------------------

async function idlePhase(url, pid, count) {
    await sleep(1000);
    const b0 = cpuUs([pid]);
    await sleep(5000);
    const baseCpuUs = cpuUs([pid]) - b0;
    const before = rssKb(pid);
    const t0 = now();
    const socks = await pool(count, 200, (i) => connect(url, `idle${i}`));
    const connectS = (now() - t0) / 1000;
    await sleep(2000);
    const conns = (await metrics(url)).chatd_connections;
    const after = rssKb(pid);
    const c0 = cpuUs([pid]);
    await sleep(5000);
    const idleCpuUs = cpuUs([pid]) - c0;
    for (const s of socks) s.close();
    const deadline = now() + 15000;
    while (now() < deadline && (await metrics(url)).chatd_connections > 0) await sleep(200);
    return {
        connections: count, server_counted: conns, connect_s: connectS,
        rss_before_kb: before, rss_after_kb: after,
        bytes_per_conn: ((after - before) * 1024) / count,
        idle_cpu_ms_per_s: idleCpuUs / 5 / 1000, base_cpu_ms_per_s: baseCpuUs / 5 / 1000,
    };
}

class Fanout {
    constructor(urls, rooms, members) {
        this.urls = urls; this.rooms = rooms; this.members = members;
        this.sent = new Map(); // id -> {t, node}
        this.lat = []; this.ackLat = []; this.ackErr = {}; this.recv = 0; this.disconnects = 0;
        this.pendingAcks = 0; this.seq = 0; this.measure = false;
    }
    async open() {
        const n = this.rooms * this.members;
        this.clients = await pool(n, 100, async (i) => {
            const room = Math.floor(i / this.members), m = i % this.members, node = m % 2;
            const s = await connect(this.urls[node], `r${room}m${m}`);
            const ack = await s.timeout(20000).emitWithAck('join', { room: `bench${room}` });
            if (!ack.ok) throw new Error(`join: ${JSON.stringify(ack)}`);
            s.on('message', (msg) => {
                this.recv++;
                const e = this.sent.get(msg.id);
                if (e && e.node !== node && this.measure) this.lat.push(now() - e.t);
            });
            s.on('disconnect', (why) => { this.disconnects++; this.lastDisconnect = why; });
            return { s, room, node };
        });
        // senders: members 0 (node0) and 1 (node1) of every room
        this.senders = [];
        for (let r = 0; r < this.rooms; r++) this.senders.push(this.clients[r * this.members], this.clients[r * this.members + 1]);
    }
    send() {
        const c = this.senders[this.seq % this.senders.length];
        const id = `b${RUN}.${this.seq++}`;
        const t = now();
        this.sent.set(id, { t, node: c.node });
        this.pendingAcks++;
        const measure = this.measure;
        c.s.timeout(30000).emitWithAck('message', { room: `bench${c.room}`, id, text: `bench message ${id} `.padEnd(64, '.') })
            .then((a) => {
                if (measure) this.ackLat.push(now() - t);
                if (!a.ok) this.ackErr[a.error.code] = (this.ackErr[a.error.code] || 0) + 1;
            }, () => { this.ackErr.timeout = (this.ackErr.timeout || 0) + 1; })
            .finally(() => { this.pendingAcks--; });
    }
    // sends at `rate` msg/s for `seconds`; returns the number sent
    async drive(rate, seconds) {
        const t0 = now();
        let n = 0;
        while (now() - t0 < seconds * 1000) {
            const due = Math.floor(((now() - t0) / 1000) * rate);
            while (n < due) { this.send(); n++; }
            await sleep(5);
        }
        return n;
    }
    async drain(expectRecv, ms) {
        const deadline = now() + ms;
        while (now() < deadline && (this.recv < expectRecv || this.pendingAcks > 0)) await sleep(50);
    }
    close() { for (const c of this.clients) c.s.close(); }
}

async function window(ctx, fn) {
    const { urls, pids, svc } = ctx;
    const m0 = await metricSum(urls, 'chatd_messages_delivered_total');
    const sc0 = await metricSum(urls, 'chatd_slow_consumer_closes_total');
    const c0 = cpuUs(pids);
    const s0 = Object.fromEntries(Object.entries(svc).map(([k, f]) => [k, cpuUs(f())]));
    const g0 = process.cpuUsage();
    const t0 = now();
    const extra = await fn();
    const secs = (now() - t0) / 1000;
    const cpu = cpuUs(pids) - c0;
    const g = process.cpuUsage(g0);
    const received = extra.received_at_end ?? extra.received;
    const delivered = (await metricSum(urls, 'chatd_messages_delivered_total')) - m0;
    const services = Object.fromEntries(Object.entries(svc).map(([k, f]) => [k, (cpuUs(f()) - s0[k]) / 1000]));
    return {
        ...extra, seconds: secs, delivered, deliveries_per_s: delivered / secs,
        chatd_cpu_ms: cpu / 1000, cpu_us_per_delivery: cpu / delivered,
        // per delivery the clients received: the definition any server (the peer) shares
        server_cpu_us: cpu, server_cpu_us_per_delivery: cpu / received,
        loadgen_cpu_us: g.user + g.system, loadgen_cpu_us_per_delivery: (g.user + g.system) / received,
        chatd_cpu_pct: (cpu / 1e6 / secs) * 100,
        services_cpu_ms: services,
        loadgen_cpu_pct: ((g.user + g.system) / 1e6 / secs) * 100,
        slow_consumer_closes: (await metricSum(urls, 'chatd_slow_consumer_closes_total')) - sc0,
    };
}

async function fanoutPhases(ctx, o) {
    const f = new Fanout(ctx.urls, o.rooms, o.members);
    const t0 = now();
    await f.open();
    const openS = (now() - t0) / 1000;
    // warm-up (not measured): every room's path through Kafka, PostgreSQL, Redis
    await f.drive(o.rate, 2);
    await f.drain(f.seq * o.members, 10000);
    f.recv = 0; f.sent.clear(); f.measure = true;
    const fan = await window(ctx, async () => {
        const sent = await f.drive(o.rate, o.seconds);
        await f.drain(sent * o.members, 10000);
        return { rate: o.rate, sent, received: f.recv, expected: sent * o.members };
    });
    fan.open_s = openS;
    fan.latency_ms = stats(f.lat);
    fan.ack_ms = stats(f.ackLat);
    fan.ack_errors = { ...f.ackErr };
    fan.client_disconnects = f.disconnects;
    const sat = [];
    for (const rate of o.satRates) {
        if (f.disconnects) break;
        f.recv = 0; f.sent.clear(); f.lat = []; f.ackLat = []; f.ackErr = {};
        const r = await window(ctx, async () => {
            const sent = await f.drive(rate, o.satSeconds);
            const pendingAtEnd = f.pendingAcks;
            const recvAtEnd = f.recv;
            return { rate, sent, pending_acks_at_end: pendingAtEnd, received_at_end: recvAtEnd };
        });
        await f.drain(r.sent * o.members, 15000);
        r.received = f.recv; r.expected = r.sent * o.members;
        r.latency_ms = stats(f.lat); r.ack_ms = stats(f.ackLat); r.ack_errors = { ...f.ackErr };
        r.client_disconnects = f.disconnects;
        sat.push(r);
        console.error(`saturation ${rate} msg/s: ${r.deliveries_per_s.toFixed(0)} deliveries/s, ` +
            `${r.cpu_us_per_delivery.toFixed(2)} us/delivery, ack p50 ${r.ack_ms.p50.toFixed(1)} ms, ` +
            `latency p99 ${r.latency_ms.p99.toFixed(1)} ms, loadgen ${r.loadgen_cpu_pct.toFixed(0)}% cpu`);
        if (r.ack_ms.p50 > 500 || r.received_at_end < 0.8 * r.expected || Object.keys(r.ack_errors).length) break;
        await sleep(1000);
    }
    f.close();
    return { fanout: fan, saturation: sat };
}

// ---- output ------------------------------------------------------------------

const note = () => `Indicative only: Kafka is ${broker}, and the machine is a noisy ` +
    '2-core box shared by chatd x2, PostgreSQL, Redis, the broker and this load generator.';
const fmt = (x, d = 1) => (x === undefined || Number.isNaN(x) ? '-' : x.toFixed(d));

function rows(r) {
    const i = r.idle || {}, f = r.fanout;
    const out = [
        ['idle: connections to node0', fmt(i.connections, 0)],
        ['idle: RSS per connection (bytes)', fmt(i.bytes_per_conn, 0)],
        ['idle: node0 CPU without / with them open (ms/s)', `${fmt(i.base_cpu_ms_per_s, 2)} / ${fmt(i.idle_cpu_ms_per_s, 2)}`],
        ['fanout: rooms x members, rate (msg/s), seconds', `${f.rooms}x${f.members}, ${f.rate}, ${f.seconds_cfg}`],
        ['fanout: messages sent / acked errors', `${f.sent} / ${JSON.stringify(f.ack_errors)}`],
        ['fanout: delivered (server) / received (clients) / expected', `${f.delivered} / ${f.received} / ${f.expected}`],
        ['fanout: latency other node p50 (ms)', fmt(f.latency_ms.p50, 2)],
        ['fanout: latency other node p90 (ms)', fmt(f.latency_ms.p90, 2)],
        ['fanout: latency other node p99 (ms)', fmt(f.latency_ms.p99, 2)],
        ['fanout: latency other node p99.9 (ms)', fmt(f.latency_ms.p999, 2)],
        ['fanout: latency other node max (ms)', fmt(f.latency_ms.max, 2)],
        ['fanout: ack p50 / p99 (ms)', `${fmt(f.ack_ms.p50, 2)} / ${fmt(f.ack_ms.p99, 2)}`],
        ['fanout: chatd CPU per delivery (us)', fmt(f.cpu_us_per_delivery, 2)],
        ['fanout: chatd CPU both nodes (% of a core)', fmt(f.chatd_cpu_pct, 1)],
        ...Object.entries(f.services_cpu_ms).map(([k, v]) => [`fanout: ${k} CPU (ms over window; us/msg)`, `${fmt(v, 0)}; ${fmt((v * 1000) / f.sent, 1)}`]),
        ['fanout: load generator CPU (% of a core)', fmt(f.loadgen_cpu_pct, 0)],
        ['fanout: load generator CPU per delivery (us)', fmt(f.loadgen_cpu_us_per_delivery, 2)],
        ['fanout: slow-consumer closes / client disconnects', `${f.slow_consumer_closes} / ${f.client_disconnects}`],
    ];
    for (const s of r.saturation) {
        out.push([`sat ${s.rate} msg/s: deliveries/s; us/delivery`, `${fmt(s.deliveries_per_s, 0)}; ${fmt(s.cpu_us_per_delivery, 2)}`]);
        out.push([`sat ${s.rate} msg/s: ack p50/p99; latency p99 (ms)`, `${fmt(s.ack_ms.p50, 1)}/${fmt(s.ack_ms.p99, 1)}; ${fmt(s.latency_ms.p99, 1)}`]);
        out.push([`sat ${s.rate} msg/s: chatd %cpu; loadgen %cpu; errors`, `${fmt(s.chatd_cpu_pct, 0)}; ${fmt(s.loadgen_cpu_pct, 0)}; ${JSON.stringify(s.ack_errors)} closes=${s.slow_consumer_closes}`]);
    }
    return out;
}
function printTable(title, rs) {
    const w = Math.max(...rs.map((r) => r[0].length));
    console.log(`\n== ${title} ==`);
    for (const [k, v] of rs) console.log(`${k.padEnd(w)}  ${v}`);
    console.log(note());
}

function summarize(files) {
    const runs = files.map((f) => JSON.parse(fs.readFileSync(f, 'utf8')));
    if (runs[0]?.broker) broker = runs[0].broker;
    const med = (xs) => { const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b); return s.length ? s[Math.floor((s.length - 1) / 2)] : NaN; };
    const pick = (g) => runs.map(g);
    const line = (k, g, d = 2) => [k, `${fmt(med(pick(g)), d)}   (runs: ${pick(g).map((x) => fmt(x, d)).join(', ')})`];
    const rs = [
        line('idle: RSS per connection (bytes)', (r) => r.idle?.bytes_per_conn, 0),
        line('idle: node0 CPU without them (ms/s)', (r) => r.idle?.base_cpu_ms_per_s),
        line('idle: node0 CPU with them open (ms/s)', (r) => r.idle?.idle_cpu_ms_per_s),
        line('fanout: latency other node p50 (ms)', (r) => r.fanout.latency_ms.p50),
        line('fanout: latency other node p90 (ms)', (r) => r.fanout.latency_ms.p90),
        line('fanout: latency other node p99 (ms)', (r) => r.fanout.latency_ms.p99),
        line('fanout: latency other node max (ms)', (r) => r.fanout.latency_ms.max),
        line('fanout: delivered (server)', (r) => r.fanout.delivered, 0),
        line('fanout: chatd CPU per delivery (us)', (r) => r.fanout.cpu_us_per_delivery),
        line('fanout: load generator CPU (% core)', (r) => r.fanout.loadgen_cpu_pct, 0),
        line('sat: best deliveries/s', (r) => Math.max(...r.saturation.map((s) => s.deliveries_per_s)), 0),
        line('sat: us/delivery at best', (r) => { const b = r.saturation.reduce((a, s) => (s.deliveries_per_s > (a?.deliveries_per_s ?? -1) ? s : a), null); return b ? b.cpu_us_per_delivery : NaN; }),
    ];
    printTable(`median of ${runs.length} run(s)`, rs);
}

async function main() {
    if (argv[0] === '--summarize') return summarize(argv.slice(1));
    const urls = opt('urls', '').split(',').filter(Boolean);
    const pids = opt('pids', '').split(',').filter(Boolean);
    if (urls.length !== 2 || pids.length !== 2) throw new Error('--urls U0,U1 and --pids P0,P1 required');
    const o = {
        idle: Number(opt('idle', 2000)), rooms: Number(opt('rooms', 10)), members: Number(opt('members', 100)),
        rate: Number(opt('rate', 200)), seconds: Number(opt('seconds', 15)),
        satRates: opt('sat-rates', '400,800,1600,3200').split(',').filter(Boolean).map(Number),
        satSeconds: Number(opt('sat-seconds', 8)),
    };
    const ctx = { urls, pids, svc: servicePids(opt('services-dir')) };
    const result = { options: o, broker, loadgen: 'socket.io-client' };
    if (o.idle > 0) {
        console.error(`idle: ${o.idle} connections to node0 ...`);
        result.idle = await idlePhase(urls[0], pids[0], o.idle);
    }
    console.error(`fanout: ${o.rooms} rooms x ${o.members} members, ${o.rate} msg/s for ${o.seconds} s ...`);
    Object.assign(result, await fanoutPhases(ctx, o));
    Object.assign(result.fanout, { rooms: o.rooms, members: o.members, seconds_cfg: o.seconds });
    const jf = opt('json');
    if (jf) fs.writeFileSync(jf, JSON.stringify(result, null, 1));
    printTable('chatd benchmark (this run)', rows(result));
}

// bounded: the whole run has a hard deadline
const hard = setTimeout(() => { console.error('load.mjs: deadline reached'); process.exit(3); }, Number(opt('deadline-s', 300)) * 1000);
hard.unref();
main().then(() => process.exit(0), (e) => { console.error(`load.mjs: ${e.stack || e}`); process.exit(1); });
