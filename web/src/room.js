// One room's client-side state: messages merged by seq (live, missed and history
// may overlap), the caught-up point for `join {since}`, and messages being sent.

export const MAX_TEXT_BYTES = 4096;
const ROOM = /^[A-Za-z0-9_.:-]{1,64}$/;
const USER = /^[A-Za-z0-9_.-]{1,32}$/;

// Why a room name is not acceptable, in words, or null when it is (PROTOCOL.md, Rooms).
export function roomNameProblem(name) {
    if (name.startsWith('dm:')) {
        const parts = name.split(':');
        if (parts.length !== 3 || !USER.test(parts[1]) || !USER.test(parts[2]) || !(parts[1] < parts[2])) {
            return 'A direct-message room is opened by choosing a person in the list of people here.';
        }
        return null;
    }
    if (!ROOM.test(name)) return 'A room name is 1 to 64 letters, digits, dots, colons, dashes or underscores.';
    return null;
}

// The direct-message room of two users: dm:A:B with A < B bytewise. The names are
// ASCII, so JavaScript's UTF-16 comparison is the bytewise one.
export function dmRoom(a, b) {
    return a < b ? `dm:${a}:${b}` : `dm:${b}:${a}`;
}

export function dmPeer(room, me) {
    const [, a, b] = room.split(':');
    return a === me ? b : a;
}

export class Room {
    constructor(name) {
        this.name = name;
        this.msgs = new Map();     // seq -> {room, seq, id, user, text, ts}
        this.pending = new Map();  // id -> {id, text, ts, state: sending|sent|failed, error}
        this.everJoined = false;   // the first join ack came (contig is meaningful)
        this.joined = false;       // joined on the current connection
        this.contig = 0;           // every message from the oldest loaded up to here is known
        this.floor = Infinity;     // lowest seq loaded (or latest + 1 before any history)
        this.moreOlder = true;     // history before `floor` may exist
        this.loadingOlder = false;
        this.unread = 0;
        this.typing = new Map();   // user -> expiry (ms)
        this.presence = [];
        this.error = null;         // words, when joining failed for good
        this.syncing = false;
        this.resync = false;
    }

    get isDm() {
        return this.name.startsWith('dm:');
    }

    maxSeq() {
        let max = 0;
        for (const s of this.msgs.keys()) if (s > max) max = s;
        return max;
    }

    // Adds a stored message; returns true when it was not known yet.
    add(m, me) {
        if (!Number.isInteger(m.seq) || m.seq < 1) return false;
        if (m.user === me) this.pending.delete(m.id);
        if (this.msgs.has(m.seq)) return false;
        this.msgs.set(m.seq, m);
        if (m.seq < this.floor) this.floor = m.seq;
        this.typing.delete(m.user);
        this.advance();
        return true;
    }

    // The first join ack: `seq` is the newest stored message; history goes below it.
    joinedAt(seq) {
        if (!this.everJoined) {
            this.everJoined = true;
            this.contig = Math.max(this.contig, seq);
            this.floor = Math.min(this.floor, seq + 1);
            if (seq === 0) this.moreOlder = false;
        }
        this.advance();
    }

    advance() {
        if (!this.everJoined) return;
        while (this.msgs.has(this.contig + 1)) this.contig++;
    }

    // A message beyond the caught-up point means one was missed on the way.
    hasGap() {
        return this.everJoined && this.maxSeq() > this.contig;
    }

    sortedSeqs() {
        return Array.from(this.msgs.keys()).sort((a, b) => a - b);
    }
}
