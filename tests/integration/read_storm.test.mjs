// A read storm does not hold the write path (issue 13): while many connections
// fire joins with since and history requests at a room as fast as they can
// (far more than the store's read queue holds), a live sender keeps sending to
// another room. Every message the sender got acked is stored in PostgreSQL
// exactly once and delivered live to the other member; every storm request is
// answered, with its messages or `unavailable`, never left hanging; the store
// shed reads and never a batch (its metrics), and the consumer never had to
// resend a batch (its log).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { connect, emitAck, errCode, metricSum, sleep, slow, uniq, until, useCluster, waitFor } from './cluster.mjs';
import { pgMessages } from './cluster_ops.mjs';

// the storm's connections may burst their 200 requests; the sender's rate is its own
const ctx = useCluster({ nodes: 1, partitions: 2, args: ['--rate', '1000', '--rate-burst', '2000'] });

const STORM_CONNS = 40;
const STORM_PER_CONN = 200;     // in flight at once per connection (under its limit of 256)
const STORM_ROUNDS = 2;
const SEEDED = 300;             // messages in the storm's room
const SENDS = 60;               // the live sender's messages, one every SEND_GAP_MS
const SEND_GAP_MS = 25;

ctx.it('a read storm beside a live sender: every acked message stored and delivered live; reads answered or unavailable', { timeout: slow(90000) }, async (t, c) => {
    const nd = c.nodes[0];
    const hot = uniq('storm');
    const live = uniq('live');
    // the storm's room, written straight into the tables (the store reads
    // rows, whoever wrote them): 300 messages of 200 bytes
    c.sql(`INSERT INTO rooms (room, last_seq) VALUES ('${hot}', ${SEEDED});` +
        `INSERT INTO messages (room, seq, id, user_name, body, ts) SELECT '${hot}', g, 'seed' || g, ` +
        `'seeder', convert_to(repeat('x', 200), 'UTF8'), 1700000000000 FROM generate_series(1, ${SEEDED}) g`);

    const sender = await connect(nd.url, 'storm-sender');
    const member = await connect(nd.url, 'storm-member');
    for (const s of [sender, member]) assert.equal((await emitAck(s, 'join', { room: live })).ok, true);
    const stormers = await Promise.all(Array.from({ length: STORM_CONNS }, (_, i) => connect(nd.url, `stormer${i}`)));
    for (const s of stormers) assert.equal((await emitAck(s, 'join', { room: hot })).ok, true);
    const before = await nd.metrics();
    const logFrom = nd.logSize();

    // the storm: each connection fires its requests at once, then again
    const counts = { ok: 0, unavailable: 0 };
    const other = [];
    const storm = (async () => {
        for (let round = 0; round < STORM_ROUNDS; round++) {
            await Promise.all(stormers.map((s, i) => Promise.all(Array.from({ length: STORM_PER_CONN }, (_, k) => {
                const n = i * STORM_PER_CONN + k;
                // small replies: the storm is about requests, not bytes
                const req = n % 2
                    ? ['join', { room: hot, since: SEEDED - 1 - (n % 5) }]
                    : ['history', { room: hot, before: SEEDED - (n % 50), limit: 3 }];
                // a hang is a failure: every request is answered within the
                // request timeout (5 s) plus slack
                return emitAck(s, req[0], req[1], slow(20000)).then((ack) => {
                    if (ack.ok) {
                        const msgs = req[0] === 'join' ? ack.missed : ack.messages;
                        assert.ok(msgs.length >= 1 && msgs.length <= 5, JSON.stringify(ack).slice(0, 200));
                        counts.ok++;
                    } else if (errCode(ack) === 'unavailable') {
                        counts.unavailable++;
                    } else {
                        other.push(ack);
                    }
                });
            }))));
        }
    })();

    // the live sender, meanwhile
    const acked = [];
    const sentAt = new Map();
    const delays = [];
    member.on('message', (m) => {
        if (m.room === live && sentAt.has(m.id)) delays.push(Date.now() - sentAt.get(m.id));
    });
    for (let i = 0; i < SENDS; i++) {
        const id = `l${i}`;
        sentAt.set(id, Date.now());
        // a retry with the same id is always safe; the message path never
        // waits for the store before its ack
        for (let attempt = 0; ; attempt++) {
            const ack = await emitAck(sender, 'message', { room: live, id, text: `live ${i}` }, slow(15000));
            if (ack.ok) { acked.push(id); break; }
            assert.equal(errCode(ack), 'unavailable', JSON.stringify(ack));
            assert.ok(attempt < 10, `message ${id} refused 10 times: ${JSON.stringify(ack)}`);
            await sleep(100);
        }
        await sleep(SEND_GAP_MS);
    }
    await storm;
    // the write path never waited behind the reads: no batch refused or resent
    const log = fs.readFileSync(nd.log, 'utf8').slice(logFrom);
    assert.doesNotMatch(log, /resending batch|store refused batch|write queue full/);
    t.diagnostic(`storm: ${counts.ok} answered, ${counts.unavailable} unavailable of ` +
        `${STORM_CONNS * STORM_PER_CONN * STORM_ROUNDS}`);
    assert.deepEqual(other, [], 'storm requests answered with messages or unavailable only');
    assert.equal(counts.ok + counts.unavailable, STORM_CONNS * STORM_PER_CONN * STORM_ROUNDS);
    assert.ok(counts.ok > 0, 'some storm reads were answered');

    // every acked message: delivered live to the member, and stored once
    assert.equal(acked.length, SENDS);
    for (const id of acked) await waitFor(member, 'message', (m) => m.room === live && m.id === id, slow(20000));
    const rows = await until('every acked message stored', () => {
        const r = pgMessages(c, live);
        return r.length >= SENDS && r;
    }, slow(20000));
    assert.deepEqual(rows.map((r) => r.id).sort(), [...acked].sort(), 'each acked message stored once');
    assert.deepEqual(rows.map((r) => r.seq), rows.map((_, i) => i + 1), 'dense seqs');
    const got = member.got.message.filter((m) => m.room === live);
    assert.equal(new Set(got.map((m) => m.id)).size, SENDS);
    delays.sort((a, b) => a - b);
    t.diagnostic(`live delivery during the storm: median ${delays[delays.length >> 1]} ms, ` +
        `max ${delays[delays.length - 1]} ms`);

    // the store shed reads (the read queue was full), never a batch, and the
    // consumer never resent a batch
    const after = await nd.metrics();
    const shed = (q, m) => metricSum(m, 'chatd_store_shed_total', { queue: q });
    t.diagnostic(`store shed ${shed('read', after) - shed('read', before)} reads`);
    assert.ok(shed('read', after) - shed('read', before) > 0, 'the storm filled the read queue');
    assert.equal(shed('write', after), 0, 'no batch shed');
    // nor did the storm fill the store's mailbox (the consumer's send would
    // have been refused there)
    const overflows = (m) => metricSum(m, 'chatd_mailbox_overflows_total', { actor: 'store' });
    t.diagnostic(`store mailbox high water ${metricSum(after, 'chatd_mailbox_high_water', { actor: 'store' })}`);
    assert.equal(overflows(after) - overflows(before), 0, 'store mailbox never full');
    for (const s of [sender, member, ...stormers]) s.close();
});
