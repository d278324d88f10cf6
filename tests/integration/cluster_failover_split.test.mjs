// Issue 4, failover in a split cluster: 2 edge nodes (socket,producer) and 2
// storage nodes (consumer,store). Under steady traffic from reconnecting,
// retrying clients on the edges:
//   1. a storage node is SIGKILLed while it stores (traffic flows: a batch is in
//      flight) and restarted; the other keeps consuming,
//   2. the other storage node is SIGTERMed (exit 0) and restarted,
//   3. an edge node is SIGKILLed (its clients move to the other edge) and restarted.
// At the end every acked message is in PostgreSQL exactly once, seqs are dense,
// and every client has every message of its rooms in order.
import assert from 'node:assert/strict';
import { sleep, slow, uniq } from './cluster.mjs';
import { useSplitCluster, kill9, terminate, restart, ChatClient, settleAndCheck } from './cluster_ops.mjs';

const ctx = useSplitCluster({
    edges: 2, storage: 2, partitions: 6,
    args: ['--presence-ttl-ms', '1500', '--rate', '1000', '--rate-burst', '1000'],
});
const ROOMS = Array.from({ length: 6 }, (_, i) => uniq(`fs${i}`));

ctx.it('storage nodes killed and stopped during traffic, an edge node killed: nothing acked lost or doubled, every client complete',
    { timeout: slow(240000) }, async (t, c) => {
        const t0 = Date.now();
        const log = (s) => t.diagnostic(`${((Date.now() - t0) / 1000).toFixed(1)}s ${s}`);
        const clients = [];
        for (let i = 0; i < 4; i++) {
            const rooms = ROOMS.filter((_, r) => (r + i) % 2 === 0 || r === i);
            const cl = new ChatClient(c, `fs${i}`, i % 2, rooms, ctx.edges);
            await cl.ensure();
            clients.push(cl);
        }
        const stopAt = Date.now() + slow(120000);
        const loops = clients.map((cl) => cl.traffic(stopAt, 30));
        const [s0, s1] = ctx.storage;

        await sleep(3000);
        log('SIGKILL store0 (during traffic)');
        await kill9(s0);
        await sleep(2000);
        await restart(s0);
        log('store0 restarted and assigned partitions');
        await sleep(3000);

        log('SIGTERM store1');
        const term = await terminate(s1);
        log(`store1 exited ${JSON.stringify(term)}`);
        await restart(s1);
        log('store1 restarted and assigned partitions');
        await sleep(3000);

        log('SIGKILL edge node1');
        await kill9(ctx.edges[1]);
        await sleep(1000);
        await restart(ctx.edges[1]);
        log('node1 restarted');
        await sleep(3000);

        for (const cl of clients) cl.trafficStop = true;
        await Promise.all(loops);
        log(`traffic stopped: ${clients.reduce((n, cl) => n + cl.acked.length, 0)} acked`);
        await settleAndCheck(t, c, clients, ROOMS, log, 0, t0);
        assert.equal(term.code, 0, `store1 after SIGTERM: ${JSON.stringify(term)}`);
    });
