// scripts/bench/compare.mjs: the table of scripts/bench/compare.sh.
//
//   node scripts/bench/compare.mjs DIR LOADGEN CHECK
//
// Reads DIR/{chatd,peer}.<run>.<c|node>.json (the C load generator's stdout
// or load.mjs --json: the same field names), DIR/steal.<run> ("steal total"
// jiffies over the run) and DIR/broker, and prints the medians over the runs
// as chatd, peer and chatd / peer. CHECK = 1 adds the C and socket.io-client
// load generators side by side for each system and run.
import fs from 'node:fs';
import path from 'node:path';

const [dir, loadgen, check] = process.argv.slice(2);
const read = (f) => { try { return JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8')); } catch { return null; } };
const runs = fs.readdirSync(dir).filter((f) => /^steal\.\d+$/.test(f)).map((f) => Number(f.split('.')[1])).sort((a, b) => a - b);
const med = (xs) => {
    const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
    return s.length ? s[Math.floor((s.length - 1) / 2)] : NaN;
};
const fmt = (x, d = 2) => (Number.isFinite(x) ? x.toFixed(d) : '-');
const best = (r) => (r.saturation || []).reduce((a, s) => (!a || s.deliveries_per_s > a.deliveries_per_s ? s : a), null);

const figures = [
    ['cross-node latency p50 (ms)', (r) => r.fanout.latency_ms.p50],
    ['cross-node latency p99 (ms)', (r) => r.fanout.latency_ms.p99],
    ['cross-node latency p99.9 (ms)', (r) => r.fanout.latency_ms.p999],
    ['ack latency p50 (ms)', (r) => r.fanout.ack_ms.p50],
    ['server CPU per delivery (us, both nodes)', (r) => r.fanout.server_cpu_us_per_delivery],
    ['deliveries received', (r) => r.fanout.received, 0],
    ['deliveries expected (sent x members)', (r) => r.fanout.expected, 0],
    ['load generator CPU per delivery (us)', (r) => r.fanout.loadgen_cpu_us_per_delivery],
];
const sat = runs.some((i) => (read(`chatd.${i}.${loadgen}.json`)?.saturation || []).length);
if (sat) {
    figures.push(['saturation: best deliveries/s', (r) => best(r)?.deliveries_per_s, 0]);
    figures.push(['saturation: server CPU per delivery there (us)', (r) => best(r)?.server_cpu_us_per_delivery]);
}

function table(title, header, rows) {
    const w = rows.map((r) => r.map((c) => String(c).length)).reduce((a, r) => a.map((x, i) => Math.max(x, r[i])), header.map((h) => h.length));
    console.log(`\n== ${title} ==`);
    for (const r of [header, ...rows]) console.log(r.map((c, i) => (i ? String(c).padStart(w[i]) : String(c).padEnd(w[i]))).join('  '));
}

const pick = (sys, lg, g) => runs.map((i) => { const r = read(`${sys}.${i}.${lg}.json`); return r ? g(r) : NaN; });
const rows = figures.map(([name, g, d = 2]) => {
    const c = med(pick('chatd', loadgen, g)), p = med(pick('peer', loadgen, g));
    return [name, fmt(c, d), fmt(p, d), fmt(c / p, 2), pick('chatd', loadgen, g).map((x) => fmt(x, d)).join(' ') + ' | ' + pick('peer', loadgen, g).map((x) => fmt(x, d)).join(' ')];
});
const first = read(`chatd.${runs[0]}.${loadgen}.json`) || {};
const opts = first.options || first;
table(`chatd vs peer: median of ${runs.length} run(s), ${loadgen === 'c' ? 'C load generator' : 'socket.io-client load generator'}` +
    `, ${opts.rooms} rooms x ${opts.members} members, ${first.fanout?.rate} msg/s`,
    ['figure', 'chatd', 'peer', 'chatd/peer', 'runs (chatd | peer)'], rows);
let broker = '?';
try { broker = fs.readFileSync(path.join(dir, 'broker'), 'utf8').trim() || '?'; } catch { /* none */ }
console.log(`chatd's broker: ${broker}; the peer has no broker and no database.`);
console.log('steal time over each run (% of all CPU time): ' + runs.map((i) => {
    const [s, t] = fs.readFileSync(path.join(dir, `steal.${i}`), 'utf8').trim().split(' ').map(Number);
    return `run ${i}: ${fmt((100 * s) / t, 1)}%`;
}).join(', '));

if (check === '1') {
    const crows = [];
    for (const sys of ['chatd', 'peer']) {
        for (const i of runs) {
            const c = read(`${sys}.${i}.c.json`), n = read(`${sys}.${i}.node.json`);
            if (!c || !n) continue;
            const cell = (r) => `${r.fanout.received}/${r.fanout.expected}`;
            crows.push([`${sys} run ${i}`, cell(c), cell(n),
                `${fmt(c.fanout.latency_ms.p50)} / ${fmt(n.fanout.latency_ms.p50)}`,
                `${fmt(c.fanout.latency_ms.p99)} / ${fmt(n.fanout.latency_ms.p99)}`,
                `${fmt(c.fanout.loadgen_cpu_us_per_delivery)} / ${fmt(n.fanout.loadgen_cpu_us_per_delivery)}`,
                fmt(n.fanout.loadgen_cpu_us_per_delivery / c.fanout.loadgen_cpu_us_per_delivery, 1)]);
        }
    }
    table('check: the C load generator vs socket.io-client, one after the other on the same cluster',
        ['cluster', 'C received/expected', 'node received/expected', 'p50 ms C / node', 'p99 ms C / node',
            'own CPU us/delivery C / node', 'node/C CPU'], crows);
}

// chatd's stages (stages.mjs rows per run): the age of a message at each
// stage, over each run's whole load (warm-up and --check's second load
// generator included), medians over the runs.
const stageRuns = runs.map((i) => read(`chatd.${i}.stages.json`)).filter(Boolean);
if (stageRuns.length) {
    const ms = (x) => fmt(x * 1000);
    const srows = stageRuns[0].map(({ stage }) => {
        const of = (k) => stageRuns.map((rs) => rs.find((r) => r.stage === stage)?.[k]);
        return [stage, fmt(med(of('count')), 0), ms(med(of('p50'))), ms(med(of('p99'))),
            of('p50').map(ms).join(' ') + ' | ' + of('p99').map(ms).join(' ')];
    });
    table(`chatd: a message's age at each stage of its path (ms since the accepting socket read it), median of ${stageRuns.length} run(s)`,
        ['stage', 'count', 'p50', 'p99', 'runs p50 | p99'], srows);
}
