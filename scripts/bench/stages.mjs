// scripts/bench/stages.mjs: chatd's per-stage latency table, from the
// chatd_stage_seconds histograms of its nodes' /metrics (actors/chatd.h names
// the stages: a message's age at each, since the accepting socket read it).
//
//   node scripts/bench/stages.mjs --urls U0,U1 [--seconds 10]
//       scrapes every node, waits, scrapes again, prints the table of what
//       happened in between
//   node scripts/bench/stages.mjs --urls U0,U1 --save FILE
//       saves one scrape (for a benchmark to take before and after its window)
//   node scripts/bench/stages.mjs --before F0 --after F1 [--json OUT]
//       prints the table between two saved scrapes (and writes its rows)
//
// As a module: snapshot(urls) -> the summed buckets per stage; table(before,
// after) -> rows {stage, count, p50, p99, mean} (seconds) of the difference;
// print(rows). Percentiles are interpolated linearly inside the bucket they
// fall in; buckets are 19% wide (runtime/metrics.h), so a figure is within
// about 10% of the true one.

export const STAGES = ['acked', 'consumed', 'stored', 'published', 'received', 'delivered'];
const FAMILY = 'chatd_stage_seconds';

function parse(text) {
    // stage -> {le: Map(bound -> cumulative count), sum, count}
    const out = {};
    const get = (s) => (out[s] ??= { le: new Map(), sum: 0, count: 0 });
    for (const line of text.split('\n')) {
        if (!line.startsWith(FAMILY)) continue;
        const m = /^chatd_stage_seconds_(bucket|sum|count)\{([^}]*)\} (\S+)$/.exec(line);
        if (!m) continue;
        const labels = Object.fromEntries([...m[2].matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
        const h = get(labels.stage);
        const v = Number(m[3]);
        if (m[1] === 'bucket') h.le.set(labels.le === '+Inf' ? Infinity : Number(labels.le), v);
        else h[m[1]] = v;
    }
    return out;
}

// The stage histograms of every node, summed (a message is observed on the
// node where each stage happened).
export async function snapshot(urls) {
    const total = {};
    for (const url of urls) {
        const text = await (await fetch(`${url}/metrics`)).text();
        for (const [stage, h] of Object.entries(parse(text))) {
            const t = (total[stage] ??= { le: new Map(), sum: 0, count: 0 });
            for (const [b, n] of h.le) t.le.set(b, (t.le.get(b) ?? 0) + n);
            t.sum += h.sum;
            t.count += h.count;
        }
    }
    return total;
}

function quantile(bounds, cum, q) {
    const n = cum[cum.length - 1];
    if (!n) return NaN;
    const rank = q * n;
    for (let i = 0; i < bounds.length; i++) {
        if (cum[i] >= rank) {
            const lo = i ? bounds[i - 1] : 0;
            const below = i ? cum[i - 1] : 0;
            if (bounds[i] === Infinity) return lo;      // past the last bound: its floor
            return lo + (bounds[i] - lo) * ((rank - below) / (cum[i] - below));
        }
    }
    return NaN;
}

export function table(before, after) {
    const rows = [];
    for (const stage of STAGES) {
        const a = after[stage];
        if (!a) continue;
        const b = before[stage] ?? { le: new Map(), sum: 0, count: 0 };
        const bounds = [...a.le.keys()].sort((x, y) => x - y);
        const cum = bounds.map((k) => a.le.get(k) - (b.le.get(k) ?? 0));
        const count = a.count - b.count;
        rows.push({
            stage, count,
            p50: quantile(bounds, cum, 0.5),
            p99: quantile(bounds, cum, 0.99),
            mean: count ? (a.sum - b.sum) / count : NaN,
        });
    }
    return rows;
}

const ms = (s) => (Number.isFinite(s) ? (s * 1000).toFixed(2) : '-');

export function print(rows, out = console.log) {
    out('stage       count      p50 ms   p99 ms  mean ms   p50 step');
    let prev = 0;
    for (const r of rows) {
        // the step from the stage before, on the same path (acked is a side
        // branch: the client's ack, not a step towards delivery)
        const step = r.stage === 'acked' ? '' : ms(r.p50 - prev);
        if (r.stage !== 'acked') prev = r.p50;
        out(`${r.stage.padEnd(10)} ${String(r.count).padStart(6)} ${ms(r.p50).padStart(10)} ` +
            `${ms(r.p99).padStart(8)} ${ms(r.mean).padStart(8)} ${step.padStart(10)}`);
    }
}

const toJson = (snap) => Object.fromEntries(Object.entries(snap).map(([k, h]) =>
    [k, { ...h, le: [...h.le].map(([b, n]) => [b === Infinity ? '+Inf' : b, n]) }]));
const fromJson = (j) => Object.fromEntries(Object.entries(j).map(([k, h]) =>
    [k, { ...h, le: new Map(h.le.map(([b, n]) => [b === '+Inf' ? Infinity : b, n])) }]));

async function main() {
    const fs = await import('node:fs');
    const argv = process.argv.slice(2);
    const opt = (name, d) => { const i = argv.indexOf(`--${name}`); return i >= 0 ? argv[i + 1] : d; };
    const load = (f) => fromJson(JSON.parse(fs.readFileSync(f, 'utf8')));
    if (opt('before') && opt('after')) {
        const rows = table(load(opt('before')), load(opt('after')));
        print(rows);
        if (opt('json')) fs.writeFileSync(opt('json'), JSON.stringify(rows));
        return;
    }
    const urls = (opt('urls', '') || '').split(',').filter(Boolean);
    if (!urls.length) {
        console.error('usage: stages.mjs --urls U0,U1 [--seconds 10 | --save FILE] | --before F0 --after F1');
        process.exit(2);
    }
    if (opt('save')) {
        fs.writeFileSync(opt('save'), JSON.stringify(toJson(await snapshot(urls))));
        return;
    }
    const before = await snapshot(urls);
    await new Promise((r) => setTimeout(r, Number(opt('seconds', 10)) * 1000));
    print(table(before, await snapshot(urls)));
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
