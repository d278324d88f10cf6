// Issue 4, failover: steady traffic from clients spread over 3 full nodes, which
// reconnect (to the next live node, joining again with `since`) and retry a send
// with the same id on `unavailable` or a lost ack, while
//   1. one node is SIGKILLed and restarted,
//   2. another is SIGTERMed (it must exit 0) and restarted,
//   3. the node whose consumer is busiest is SIGKILLed during traffic (so during
//      a batch) and restarted, while the others keep consuming.
// Node 0 is never stopped: its clients stay connected all along.
// At the end: every message that got an ok ack is in PostgreSQL exactly once,
// seqs are dense per room, and every client has every message of its rooms in
// order (live + join-since merged by seq).
import assert from 'node:assert/strict';
import { useCluster, connect, emitAck, sleep, slow, uniq, until } from './cluster.mjs';
import { kill9, terminate, restart, metric, ChatClient, settleAndCheck } from './cluster_ops.mjs';

const ctx = useCluster({
    nodes: 3, partitions: 6,
    args: ['--presence-ttl-ms', '1500', '--rate', '1000', '--rate-burst', '1000'],
});

const ROOMS = Array.from({ length: 8 }, (_, i) => uniq(`fo${i}`));


async function consumedRate(nd, ms = 1000) {
    if (!nd.running) return -1;
    try {
        const a = await metric(nd, 'chatd_messages_consumed_total');
        await sleep(ms);
        return (await metric(nd, 'chatd_messages_consumed_total')) - a;
    } catch { return -1; }
}

ctx.it('SIGKILL, SIGTERM and a kill during a batch, under traffic: no acked message lost or doubled, every client has everything in order',
    { timeout: slow(240000) }, async (t, c) => {
        const t0 = Date.now();
        const log = (s) => t.diagnostic(`${((Date.now() - t0) / 1000).toFixed(1)}s ${s}`);
        const clients = [];
        for (let i = 0; i < 6; i++) {
            // every client in 4 of the 8 rooms, overlapping
            const rooms = ROOMS.filter((_, r) => (r + i) % 2 === 0 || r === i);
            const cl = new ChatClient(c, `fu${i}`, i % 3, rooms);
            await cl.ensure();
            clients.push(cl);
        }
        const stopAt = Date.now() + slow(120000);
        const loops = clients.map((cl) => cl.traffic(stopAt, 40));

        await sleep(3000);
        log(`SIGKILL node1`);
        await kill9(c.nodes[1]);
        await sleep(2000);
        await restart(c.nodes[1]);
        log(`node1 restarted`);
        await sleep(3000);

        log(`SIGTERM node2`);
        const term = await terminate(c.nodes[2]);
        log(`node2 exited ${JSON.stringify(term)}`);
        await restart(c.nodes[2]);
        log(`node2 restarted`);
        await sleep(4000);

        // the busiest consumer of nodes 1 and 2, killed while it consumes
        let victim = null;
        for (let tries = 0; tries < 10 && !victim; tries++) {
            const rates = await Promise.all([consumedRate(c.nodes[1], 700), consumedRate(c.nodes[2], 700)]);
            log(`consumed in 700 ms: node1 ${rates[0]}, node2 ${rates[1]}`);
            if (Math.max(...rates) > 0) victim = c.nodes[rates[0] >= rates[1] ? 1 : 2];
        }
        victim ||= c.nodes[1];
        log(`SIGKILL ${victim.id} (consuming)`);
        await kill9(victim);
        await sleep(1500);
        await restart(victim);
        log(`${victim.id} restarted`);
        await sleep(3000);

        for (const cl of clients) cl.trafficStop = true;
        await Promise.all(loops);
        log(`traffic stopped: ${clients.reduce((n, cl) => n + cl.acked.length, 0)} acked`);

        await settleAndCheck(t, c, clients, ROOMS, log, 0, t0);
        assert.equal(term.code, 0, `node2 after SIGTERM: ${JSON.stringify(term)}`);
    });
