// scripts/bench/peer/server.mjs: the benchmark's peer, the seed's stack.
//
//   node scripts/bench/peer/server.mjs --port P --redis redis://127.0.0.1:N
//
// Socket.IO 4.8 with @socket.io/redis-adapter 8.3 (versions pinned by
// package-lock.json): several processes sharing one Redis form a cluster, as
// chatd's nodes do. It serves only the subset of shared/PROTOCOL.md that the
// benchmark's load uses, with no Kafka and no PostgreSQL in its path:
//   CONNECT with auth {user}            (a missing user: "invalid user")
//   join {room}        -> ack {ok:true, room, seq:0, missed:[], more:false}
//   message {room,id,text} -> ack {ok:true, id}, then emits
//                         message {room, seq, id, user, text, ts} to the room,
//                         the sender included (seq: a per-process counter)
// Prints "ready http://127.0.0.1:P" on stdout once listening and the adapter
// is subscribed; SIGTERM closes it.
import { createServer } from 'node:http';
import { Server } from 'socket.io';
import { createAdapter } from '@socket.io/redis-adapter';
import { createClient } from 'redis';

const argv = process.argv.slice(2);
const opt = (name, dflt) => { const i = argv.indexOf(`--${name}`); return i >= 0 ? argv[i + 1] : dflt; };
const port = Number(opt('port', 8090));
const redisUrl = opt('redis', 'redis://127.0.0.1:6379');

const pub = createClient({ url: redisUrl });
const sub = pub.duplicate();
await Promise.all([pub.connect(), sub.connect()]);

const http = createServer((req, res) => { res.writeHead(200); res.end('ok\n'); });
const io = new Server(http, { transports: ['websocket'], adapter: createAdapter(pub, sub) });

let seq = 0;
io.use((socket, next) => {
    const user = socket.handshake.auth && socket.handshake.auth.user;
    if (typeof user !== 'string' || !/^[A-Za-z0-9_.-]{1,32}$/.test(user)) return next(new Error('invalid user'));
    socket.data.user = user;
    next();
});
io.on('connection', (socket) => {
    socket.on('join', (a, ack) => {
        if (!a || typeof a.room !== 'string') return ack && ack({ ok: false, error: { code: 'bad_request', message: 'room' } });
        socket.join(a.room);
        if (ack) ack({ ok: true, room: a.room, seq: 0, missed: [], more: false });
    });
    socket.on('message', (a, ack) => {
        if (!a || typeof a.room !== 'string' || typeof a.id !== 'string' || typeof a.text !== 'string')
            return ack && ack({ ok: false, error: { code: 'bad_request', message: 'shape' } });
        if (!socket.rooms.has(a.room)) return ack && ack({ ok: false, error: { code: 'not_member', message: 'join first' } });
        if (ack) ack({ ok: true, id: a.id });
        io.to(a.room).emit('message', { room: a.room, seq: ++seq, id: a.id, user: socket.data.user, text: a.text, ts: Date.now() });
    });
});
http.listen(port, '127.0.0.1', () => console.log(`ready http://127.0.0.1:${port}`));
const stop = () => { io.close(); pub.quit().catch(() => {}); sub.quit().catch(() => {}); setTimeout(() => process.exit(0), 500).unref(); };
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
