// A fatal error of the idempotent producer (librdkafka raises one when the broker
// fences the producer, e.g. after an out-of-order sequence): the producer actor
// crashes, its supervisor starts a new one with a new producer id, and clients
// keep sending: what was in flight is answered (ok or unavailable, never left
// hanging), a retry with the same id is stored once, and later messages are ok.
// The fatal error is librdkafka's own (rd_kafka_test_fatal_error), raised at the
// producer's fault point "fatal" on the 20th message, on a real Kafka broker.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { useCluster, connect, emitAck, sleep, slow, uniq, until, assertDense } from './cluster.mjs';
import { metric, pgMessages } from './cluster_ops.mjs';

const ctx = useCluster({
    nodes: 1, partitions: 2,
    args: ['--faults', 'seed=3; crash:producer.fatal,after=20,max=1', '--produce-timeout-ms', '3000'],
});

ctx.it('a fatal producer error restarts the producer; every message is answered and stored once', { timeout: slow(90000) }, async (t, c) => {
    const room = uniq('fatal');
    const s = await connect(c.url(0), 'fatal-user');
    assert.equal((await emitAck(s, 'join', { room })).ok, true);
    const before = await metric(c.nodes[0], 'chatd_actor_restarts_total', { actor: 'producer' });
    const codes = {};
    const ids = [];
    for (let i = 0; i < 60; i++) {
        const id = `f${i}`;
        ids.push(id);
        let ack = null;
        for (let tries = 0; tries < 20; tries++) {
            ack = await emitAck(s, 'message', { room, id, text: `n ${i}` }, slow(10000));
            const code = ack.ok ? 'ok' : ack.error?.code ?? JSON.stringify(ack);
            codes[code] = (codes[code] || 0) + 1;
            if (ack.ok) break;
            await sleep(200);
        }
        assert.equal(ack.ok, true, `message ${id} never acked ok: ${JSON.stringify(ack)}`);
    }
    const restarts = (await metric(c.nodes[0], 'chatd_actor_restarts_total', { actor: 'producer' })) - before;
    t.diagnostic(`acks ${JSON.stringify(codes)}, producer restarts ${restarts}`);
    assert.ok(restarts >= 1, 'the producer was restarted after the fatal error');
    assert.match(fs.readFileSync(c.nodes[0].log, 'utf8'), /kafka fatal error/, 'the fatal error is logged');
    await until('all 60 stored', () => pgMessages(c, room).length >= 60, slow(20000), 200);
    const rows = pgMessages(c, room);
    assert.deepEqual(rows.map((r) => r.id).sort(), [...ids].sort(), 'each message stored exactly once');
    assertDense(rows.map((r) => r.seq));
    s.close();
});
