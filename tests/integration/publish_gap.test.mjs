// No live-delivery gap: a message stored in PostgreSQL whose storing node dies
// before the Redis PUBLISH is still delivered live. The storing node (store1)
// holds the publish at its fault point "publish" (between the commit and the
// PUBLISH) and is SIGKILLed there; it never acked the batch, so the consumer
// group never committed the record's offset, and the node that takes the
// partition over (store0) gets the record again, finds it stored, and
// publishes it again with its stored seq. The member on the edge node receives
// it live, exactly once, with the seq PostgreSQL holds.
import assert from 'node:assert/strict';
import { connect, emitAck, sleep, slow, uniq, waitFor } from './cluster.mjs';
import { STORAGE, kill9, pgMessages, restart, terminate, useSplitCluster, waitLog } from './cluster_ops.mjs';

const ctx = useSplitCluster({ edges: 1, storage: 1, partitions: 2 });

ctx.it('a node killed between the commit and the PUBLISH: the message is still delivered live, once', { timeout: slow(180000) }, async (t, c) => {
    const [edge] = ctx.edges;
    const [store0] = ctx.storage;
    const room = uniq('gap');
    const m = await connect(edge.url, 'gap-member');
    const s = await connect(edge.url, 'gap-sender');
    for (const x of [m, s]) assert.equal((await emitAck(x, 'join', { room })).ok, true);
    const got = [];
    m.on('message', (msg) => { if (msg.room === room) got.push(msg); });

    // store1 holds its first publish for a minute; it alone consumes once store0 left
    const store1 = c.addNode(STORAGE.concat(['--faults', 'delay:store.publish,ms=60000,max=1']), 'store1');
    await store1._portPromise;
    await waitLog(store1, /rebalance: assigned/, 0, slow(60000));
    let from = store1.logSize();
    assert.equal((await terminate(store0)).code, 0);
    await waitLog(store1, /rebalance: assigned 2 partition/, from, slow(60000));

    from = store1.logSize();
    const ack = await emitAck(s, 'message', { room, id: 'x1', text: 'committed, not yet published' }, slow(15000));
    assert.equal(ack.ok, true, JSON.stringify(ack));
    await waitLog(store1, /fault injected: delay at publish/, from, slow(30000));
    const rows = pgMessages(c, room);
    assert.deepEqual(rows.map((r) => [r.id, r.seq]), [['x1', 1]], 'stored (committed) before the publish');
    await sleep(500);
    assert.equal(got.length, 0, 'not delivered yet: the publish is held');

    store1.expectExit = true;   // killed for good: the test is its death
    await kill9(store1);
    const t0 = Date.now();
    await restart(store0, { readyLog: /rebalance: assigned 2 partition/ });
    const live = await waitFor(m, 'message', (msg) => msg.room === room && msg.id === 'x1', slow(60000));
    t.diagnostic(`delivered live ${Date.now() - t0} ms after the storing node died`);
    assert.equal(live.seq, 1, 'with the seq PostgreSQL holds');
    assert.equal(live.text, 'committed, not yet published');
    await sleep(2000);
    assert.equal(got.length, 1, `delivered once: ${JSON.stringify(got.map((g) => g.seq))}`);
    assert.deepEqual(pgMessages(c, room).map((r) => r.id), ['x1'], 'stored once');

    // and the room goes on: the next message gets the next seq, live
    const next = waitFor(m, 'message', (msg) => msg.room === room && msg.id === 'x2', slow(20000));
    assert.equal((await emitAck(s, 'message', { room, id: 'x2', text: 'next' })).ok, true);
    assert.equal((await next).seq, 2);
    for (const x of [m, s]) x.close();
});
