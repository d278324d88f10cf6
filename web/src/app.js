// chatd's web page: one Socket.IO connection to the node that served the page.
// Every piece of user data reaches the DOM through textContent, never as HTML.

import { io } from 'socket.io-client';
import * as identity from './identity.js';
import { describe, describeToken, retryable } from './errors.js';
import { Room, MAX_TEXT_BYTES, roomNameProblem, dmRoom, dmPeer } from './room.js';
import './app.css';

const SEND_TIMEOUT_MS = 10000;
const REQUEST_TIMEOUT_MS = 10000;
const HISTORY_PAGE = 50;
const TYPING_EVERY_MS = 2000;
const TYPING_SHOWN_MS = 4000;
const PRESENCE_EVERY_MS = 3000;

const $ = (id) => document.getElementById(id);
const el = (tag, cls, text) => {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const encoder = new TextEncoder();

let socket = null;
let me = null;
const rooms = new Map(); // name -> Room, in the order joined
let active = null;       // Room shown
let lastTypingSent = 0;
let presenceTimer = null;
let rendered = new Map(); // key -> <li> of the active room's log
let renderQueued = false;
let stickToBottom = true;

// ---- status line -------------------------------------------------------------

function setStatus(text, kind = 'warn') {
    const s = $('status');
    if (!text) {
        s.hidden = true;
        s.textContent = '';
        return;
    }
    s.hidden = false;
    s.className = `status ${kind}`;
    s.textContent = text;
}

// ---- sign in / out -----------------------------------------------------------

function showSignIn(error) {
    $('chat').hidden = true;
    $('signin').hidden = false;
    $('signin-error').textContent = error || '';
    setStatus(null);
    $('signin-name').focus();
}

function start() {
    me = identity.user();
    $('signin').hidden = true;
    $('chat').hidden = false;
    $('me').textContent = me;
    rooms.clear();
    active = null;
    let saved = [];
    try { saved = JSON.parse(localStorage.getItem(`chatd.rooms.${me}`) || '[]'); } catch { /* none */ }
    if (!Array.isArray(saved) || saved.length === 0) saved = ['lobby'];
    for (const name of saved) if (typeof name === 'string' && !roomNameProblem(name)) rooms.set(name, new Room(name));
    active = rooms.values().next().value || null;
    renderAll();
    setStatus('Connecting…', 'info');
    socket = io(location.origin, {
        transports: ['websocket'],
        auth: (cb) => cb(identity.auth()),
        reconnectionDelay: 500,
        reconnectionDelayMax: 3000,
    });
    socket.on('connect', onConnect);
    socket.on('disconnect', onDisconnect);
    socket.on('connect_error', onConnectError);
    socket.on('message', onMessage);
    socket.on('typing', onTyping);
    socket.on('token_expired', () => {
        stop();
        identity.signOut();
        showSignIn(describeToken('expired'));
    });
    clearInterval(presenceTimer);
    presenceTimer = setInterval(() => { if (active) refreshPresence(active); expireTyping(); }, PRESENCE_EVERY_MS);
    $('composer-input').focus();
}

function stop() {
    if (socket) {
        socket.removeAllListeners();
        socket.disconnect();
        socket = null;
    }
    clearInterval(presenceTimer);
    rooms.clear();
    active = null;
}

function saveRooms() {
    try { localStorage.setItem(`chatd.rooms.${me}`, JSON.stringify([...rooms.keys()])); } catch { /* ignore */ }
}

// ---- connection --------------------------------------------------------------

function onConnect() {
    setStatus(null);
    for (const r of rooms.values()) sync(r);
}

function onDisconnect(reason) {
    for (const r of rooms.values()) r.joined = false;
    if (reason === 'io client disconnect') return;
    setStatus('Connection lost; reconnecting…');
    // Socket.IO does not reconnect by itself after the server said goodbye (a node
    // draining on restart); this page does, after a moment.
    if (reason === 'io server disconnect') setTimeout(() => { if (socket && !socket.connected) socket.connect(); }, 1000);
}

function onConnectError(err) {
    if (err && err.message === 'invalid user') {
        stop();
        identity.signOut();
        showSignIn(describe('invalid user'));
        return;
    }
    if (err && err.message === 'invalid token') {
        stop();
        identity.signOut();
        showSignIn(describeToken(err.data && err.data.reason));
        return;
    }
    setStatus('The server is unavailable, retrying…');
}

async function request(event, payload, timeoutMs = REQUEST_TIMEOUT_MS) {
    if (!socket || !socket.connected) return { ok: false, error: { code: 'disconnected' } };
    try {
        return await socket.timeout(timeoutMs).emitWithAck(event, payload);
    } catch {
        return { ok: false, error: { code: 'timeout' } };
    }
}

// Joins (or rejoins) a room and catches up: the first join takes the newest seq and
// loads history below it; later ones ask for everything after the caught-up point,
// page by page while `more`. Runs once at a time per room; a request made meanwhile
// runs again afterwards.
async function sync(r) {
    if (r.syncing) { r.resync = true; return; }
    r.syncing = true;
    try {
        let delay = 500;
        let rounds = 0;
        do {
            r.resync = false;
            if (++rounds > 20) break; // a gap the server cannot fill: stop asking
            for (;;) {
                if (!socket || !socket.connected || !rooms.has(r.name)) return;
                const payload = r.everJoined ? { room: r.name, since: r.contig } : { room: r.name };
                const ack = await request('join', payload);
                if (!rooms.has(r.name)) return;
                if (!ack.ok) {
                    const code = ack.error && ack.error.code;
                    if (code === 'disconnected') return; // onConnect syncs again
                    if (!retryable(code)) {
                        r.error = describe(ack.error);
                        joinDone(r);    // what waited for the join fails with it
                        scheduleRender();
                        return;
                    }
                    setStatus(code === 'unavailable' || code === 'timeout'
                        ? 'The server is unavailable, retrying…' : describe(ack.error));
                    await sleep(delay);
                    delay = Math.min(delay * 2, 5000);
                    continue;
                }
                r.error = null;
                if (!$('status').hidden && socket.connected) setStatus(null);
                const first = !r.everJoined;
                r.joinedAt(ack.seq);
                for (const m of ack.missed || []) {
                    if (r.add(m, me) && r !== active && m.user !== me) r.unread++;
                }
                r.joined = true;
                joinDone(r);
                scheduleRender();
                if (first) {
                    if (r === active) refreshPresence(r);
                    await loadOlder(r);
                }
                if (!ack.more) break;
            }
        } while (r.resync || r.hasGap());
    } finally {
        r.syncing = false;
    }
}

function onMessage(m) {
    if (!m || typeof m.room !== 'string') return;
    const r = rooms.get(m.room);
    if (!r) return;
    if (r.add(m, me)) {
        if (r !== active && m.user !== me) r.unread++;
        if (r === active && !r.presence.includes(m.user)) refreshPresence(r);
    }
    if (r.hasGap() && r.joined) sync(r);
    scheduleRender();
}

function onTyping(t) {
    if (!t || t.user === me) return;
    const r = rooms.get(t.room);
    if (!r) return;
    r.typing.set(t.user, Date.now() + TYPING_SHOWN_MS);
    if (r === active) renderTyping();
    setTimeout(expireTyping, TYPING_SHOWN_MS + 50);
}

function expireTyping() {
    const now = Date.now();
    for (const r of rooms.values()) for (const [u, until] of r.typing) if (until <= now) r.typing.delete(u);
    renderTyping();
}

async function refreshPresence(r) {
    const ack = await request('presence', { room: r.name });
    if (ack.ok && Array.isArray(ack.users)) {
        r.presence = ack.users;
        if (r === active) renderPeople();
    }
}

async function loadOlder(r) {
    if (r.loadingOlder || !r.moreOlder || !r.everJoined) return;
    if (r.floor <= 1) { r.moreOlder = false; scheduleRender(); return; }
    r.loadingOlder = true;
    renderOlderControl();
    try {
        const ack = await request('history', { room: r.name, before: r.floor, limit: HISTORY_PAGE });
        if (!ack.ok) {
            if (r === active) $('older-error').textContent = describe(ack.error);
            return;
        }
        if (r === active) $('older-error').textContent = '';
        const log = $('log');
        const keepFrom = log.scrollHeight - log.scrollTop;
        for (const m of ack.messages || []) r.add(m, me);
        if (!ack.more || (ack.messages || []).length === 0) r.moreOlder = false;
        if (r === active) {
            renderLog();
            // keep the reader where they were: older messages appear above
            if (!stickToBottom) log.scrollTop = log.scrollHeight - keepFrom;
        }
    } finally {
        r.loadingOlder = false;
        renderOlderControl();
    }
    if (r === active) maybeLoadOlder();
}

// Loads more history when the top of the log is in view (scrolled up, or the
// messages do not fill the log yet).
function maybeLoadOlder() {
    if (!active || active.loadingOlder || !active.moreOlder) return;
    const log = $('log');
    if (log.scrollTop < 120) loadOlder(active);
}

// ---- sending -----------------------------------------------------------------

function newId() {
    const rnd = crypto.getRandomValues(new Uint32Array(2));
    return `${Date.now().toString(36)}-${rnd[0].toString(36)}${rnd[1].toString(36)}`;
}

function send(text) {
    const r = active;
    if (!r) return false;
    if (encoder.encode(text).length > MAX_TEXT_BYTES) {
        $('composer-error').textContent = describe('too_large');
        return false;
    }
    $('composer-error').textContent = '';
    const p = { id: newId(), text, user: me, ts: Date.now(), state: 'sending', error: null };
    r.pending.set(p.id, p);
    stickToBottom = true;
    scheduleRender();
    deliver(r, p);
    return true;
}

// The room's join was answered (r.joined) or refused (r.error): the messages
// typed while it was on its way are sent now, or fail with its error.
function joinDone(r) {
    for (const p of r.pending.values()) {
        if (!p.awaitingJoin) continue;
        p.awaitingJoin = false;
        deliver(r, p);
    }
}

async function deliver(r, p) {
    p.state = 'sending';
    p.error = null;
    p.version = (p.version || 0) + 1;
    scheduleRender();
    if (!r.joined && socket && socket.connected && !r.error) {
        // the room's join is still on its way (a message typed right after
        // opening the room): it goes once the join is answered (joinDone)
        p.awaitingJoin = true;
        return;
    }
    const ack = r.joined
        ? await request('message', { room: r.name, id: p.id, text: p.text }, SEND_TIMEOUT_MS)
        : { ok: false, error: { code: socket && socket.connected ? 'not_member' : 'disconnected' } };
    if (!r.pending.has(p.id)) return; // already arrived as a stored message
    p.version++;
    if (ack.ok) {
        p.state = 'sent';
        // The stored message normally arrives live right away; if it does not, catch up.
        setTimeout(() => { if (r.pending.has(p.id) && r.joined) sync(r); }, 3000);
    } else {
        p.state = 'failed';
        p.error = ack.error && ack.error.code === 'unavailable'
            ? 'Not sent: the server is unavailable. Retry when it is back.'
            : `Not sent: ${describe(ack.error)}`;
    }
    scheduleRender();
}

// ---- rooms -------------------------------------------------------------------

function openRoom(name, { focus = true } = {}) {
    let r = rooms.get(name);
    if (!r) {
        r = new Room(name);
        rooms.set(name, r);
        saveRooms();
        sync(r);
    }
    setActive(r);
    if (focus) $('composer-input').focus();
}

function setActive(r) {
    active = r;
    if (r) {
        r.unread = 0;
        r.error = null;
    }
    stickToBottom = true;
    $('messages').textContent = '';
    rendered = new Map();
    $('typing').textContent = '';
    $('older-error').textContent = '';
    setSidebar(false);
    renderAll();
    if (r) refreshPresence(r);
}

async function leaveRoom(r) {
    rooms.delete(r.name);
    saveRooms();
    if (active === r) setActive(rooms.values().next().value || null);
    else renderRooms();
    await request('leave', { room: r.name });
}

function roomLabel(name) {
    return name.startsWith('dm:') ? `@${dmPeer(name, me)}` : `#${name}`;
}

// ---- rendering ---------------------------------------------------------------

function scheduleRender() {
    if (renderQueued) return;
    renderQueued = true;
    requestAnimationFrame(() => {
        renderQueued = false;
        renderAll();
    });
}

function renderAll() {
    renderRooms();
    renderHeader();
    renderLog();
    renderPeople();
    renderTyping();
}

function renderHeader() {
    $('room-title').textContent = active ? roomLabel(active.name) : 'No room';
    $('composer-input').disabled = !active;
    $('composer-input').placeholder = active ? `Message ${roomLabel(active.name)}` : 'Join a room first';
    $('composer-send').disabled = !active;
    $('room-error').textContent = active && active.error ? active.error : '';
    $('empty').hidden = !!active;
}

function renderRooms() {
    const list = $('rooms');
    list.textContent = '';
    for (const r of rooms.values()) {
        const li = el('li', 'room-item');
        const open = el('button', 'room-open');
        open.type = 'button';
        open.dataset.room = r.name;
        open.append(el('span', 'room-name', roomLabel(r.name)));
        if (r === active) open.setAttribute('aria-current', 'true');
        if (r.unread > 0) {
            const badge = el('span', 'badge', String(r.unread));
            badge.setAttribute('aria-label', `${r.unread} unread`);
            open.append(badge);
        }
        const leave = el('button', 'room-leave', '×');
        leave.type = 'button';
        leave.dataset.leave = r.name;
        leave.setAttribute('aria-label', `Leave ${roomLabel(r.name)}`);
        leave.title = `Leave ${roomLabel(r.name)}`;
        li.append(open, leave);
        list.append(li);
    }
    const unread = [...rooms.values()].reduce((n, r) => n + r.unread, 0);
    document.title = unread ? `(${unread}) chatd` : 'chatd';
    $('toggle-rooms').textContent = unread ? `Rooms (${unread})` : 'Rooms';
}

function renderPeople() {
    const list = $('people');
    list.textContent = '';
    if (!active) return;
    for (const u of active.presence) {
        const li = el('li', 'person');
        if (u === me) {
            li.append(el('span', 'person-me', `${u} (you)`));
        } else if (active.isDm) {
            li.append(el('span', 'person-name', u));
        } else {
            const b = el('button', 'person-open');
            b.type = 'button';
            b.append(el('span', 'person-name', u));
            const hint = el('span', 'person-hint', 'message');
            hint.setAttribute('aria-hidden', 'true');
            b.append(hint);
            b.dataset.user = u;
            b.setAttribute('aria-label', `Message ${u} directly`);
            li.append(b);
        }
        list.append(li);
    }
}

function renderTyping() {
    const t = $('typing');
    if (!active) { t.textContent = ''; return; }
    const now = Date.now();
    const who = [...active.typing].filter(([, until]) => until > now).map(([u]) => u).sort();
    t.textContent = who.length === 0 ? ''
        : who.length === 1 ? `${who[0]} is typing…`
            : who.length <= 3 ? `${who.slice(0, -1).join(', ')} and ${who[who.length - 1]} are typing…`
                : 'Several people are typing…';
}

function renderOlderControl() {
    const r = active;
    $('older').hidden = !r || !r.moreOlder || !r.everJoined;
    $('older').disabled = !!(r && r.loadingOlder);
    $('older').textContent = r && r.loadingOlder ? 'Loading older messages…' : 'Load older messages';
    $('log-start').hidden = !r || r.moreOlder || !r.everJoined;
}

const dayFmt = new Intl.DateTimeFormat(undefined, { year: 'numeric', month: 'short', day: 'numeric' });
const timeFmt = new Intl.DateTimeFormat(undefined, { hour: 'numeric', minute: '2-digit' });
const fullFmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'full', timeStyle: 'medium' });

function timeEl(ts) {
    const d = new Date(ts);
    const t = el('time', 'when');
    if (Number.isNaN(d.getTime())) return t;
    t.dateTime = d.toISOString();
    const today = new Date();
    t.textContent = d.toDateString() === today.toDateString()
        ? timeFmt.format(d) : `${dayFmt.format(d)} ${timeFmt.format(d)}`;
    t.title = fullFmt.format(d);
    return t;
}

function messageEl(m, pending) {
    const li = el('li', 'msg');
    if (m.user === me) li.classList.add('mine');
    const meta = el('div', 'meta');
    meta.append(el('span', 'who', m.user), ' ', timeEl(m.ts));
    const text = el('p', 'text', m.text);
    li.append(meta, text);
    if (pending) {
        li.classList.add(m.state);
        li.dataset.id = m.id;
        const status = el('div', 'state');
        if (m.state === 'failed') {
            status.append(el('span', 'state-text', m.error));
            const retry = el('button', 'retry', 'Retry');
            retry.type = 'button';
            retry.dataset.retry = m.id;
            retry.setAttribute('aria-label', 'Retry sending this message');
            status.append(' ', retry);
        } else {
            status.append(el('span', 'state-text', m.state === 'sent' ? 'Sent' : 'Sending…'));
        }
        li.append(status);
    } else {
        li.dataset.seq = String(m.seq);
        li.dataset.id = m.id;
    }
    return li;
}

// Keyed update of the active room's log: existing rows stay (focus and selection
// survive), new ones are inserted where their seq puts them.
function renderLog() {
    renderOlderControl();
    const list = $('messages');
    const log = $('log');
    if (!active) { list.textContent = ''; rendered = new Map(); return; }
    const atBottom = stickToBottom || log.scrollHeight - log.scrollTop - log.clientHeight < 40;
    const items = [];
    for (const s of active.sortedSeqs()) items.push({ key: `s${s}`, m: active.msgs.get(s), pending: false, v: 0 });
    for (const p of active.pending.values()) items.push({ key: `p${p.id}`, m: p, pending: true, v: `${p.version}${p.state}` });
    const keep = new Set(items.map((i) => i.key));
    for (const [key, node] of rendered) {
        if (!keep.has(key)) { node.remove(); rendered.delete(key); }
    }
    let cursor = list.firstChild;
    for (const it of items) {
        let node = rendered.get(it.key);
        if (node && node.dataset.v !== String(it.v)) {
            const fresh = messageEl(it.m, it.pending);
            node.replaceWith(fresh);
            if (cursor === node) cursor = fresh;
            node = fresh;
            node.dataset.v = String(it.v);
            rendered.set(it.key, node);
        }
        if (!node) {
            node = messageEl(it.m, it.pending);
            node.dataset.v = String(it.v);
            rendered.set(it.key, node);
        }
        if (node === cursor) cursor = cursor.nextSibling;
        else list.insertBefore(node, cursor);
    }
    if (atBottom) log.scrollTop = log.scrollHeight;
    stickToBottom = false;
}

// ---- narrow screens ----------------------------------------------------------

function setSidebar(open) {
    $('chat').classList.toggle('sidebar-open', open);
    $('toggle-rooms').setAttribute('aria-expanded', String(open));
}

// ---- wiring ------------------------------------------------------------------

function wire() {
    $('signin-form').addEventListener('submit', (e) => {
        e.preventDefault();
        const name = $('signin-name').value.trim();
        const token = $('signin-token').value.trim();
        if (token) {
            try {
                identity.signInWithToken(token);
            } catch {
                $('signin-error').textContent = describeToken('malformed');
                return;
            }
            $('signin-token').value = '';
            start();
            return;
        }
        if (!identity.validUserName(name)) {
            $('signin-error').textContent = describe('invalid user');
            return;
        }
        identity.signIn(name);
        start();
    });
    $('signout').addEventListener('click', () => {
        stop();
        identity.signOut();
        showSignIn();
    });
    $('join-form').addEventListener('submit', (e) => {
        e.preventDefault();
        const name = $('join-name').value.trim();
        const problem = roomNameProblem(name);
        if (problem) { $('join-error').textContent = problem; return; }
        if (name.startsWith('dm:') && !name.split(':').includes(me)) {
            $('join-error').textContent = describe('forbidden');
            return;
        }
        $('join-error').textContent = '';
        $('join-name').value = '';
        openRoom(name);
    });
    $('rooms').addEventListener('click', (e) => {
        const open = e.target.closest('[data-room]');
        const leave = e.target.closest('[data-leave]');
        if (open && rooms.has(open.dataset.room)) openRoom(open.dataset.room);
        else if (leave && rooms.has(leave.dataset.leave)) leaveRoom(rooms.get(leave.dataset.leave));
    });
    $('people').addEventListener('click', (e) => {
        const b = e.target.closest('[data-user]');
        if (b) openRoom(dmRoom(me, b.dataset.user));
    });
    $('messages').addEventListener('click', (e) => {
        const b = e.target.closest('[data-retry]');
        if (!b || !active) return;
        const p = active.pending.get(b.dataset.retry);
        if (p) {
            deliver(active, p);
            $('composer-input').focus();
        }
    });
    $('older').addEventListener('click', () => { if (active) loadOlder(active); });
    $('log').addEventListener('scroll', maybeLoadOlder, { passive: true });
    const input = $('composer-input');
    input.addEventListener('keydown', (e) => {
        if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
            e.preventDefault();
            $('composer').requestSubmit();
        }
    });
    input.addEventListener('input', () => {
        const now = Date.now();
        if (active && active.joined && input.value && now - lastTypingSent > TYPING_EVERY_MS) {
            lastTypingSent = now;
            socket.emit('typing', { room: active.name });
        }
    });
    $('composer').addEventListener('submit', (e) => {
        e.preventDefault();
        const text = input.value;
        if (!text.trim()) return;
        if (send(text)) {
            input.value = '';
            lastTypingSent = 0;
        }
    });
    $('toggle-rooms').addEventListener('click', () => {
        setSidebar(!$('chat').classList.contains('sidebar-open'));
    });
    document.addEventListener('keydown', (e) => {
        if (e.key === 'Escape' && $('chat').classList.contains('sidebar-open')) {
            setSidebar(false);
            $('toggle-rooms').focus();
        }
    });
}

wire();
if (identity.user()) start();
else showSignIn();
