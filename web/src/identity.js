// The one place that knows who the user is and how the page proves it.
//
// Today the server takes `auth.user` on trust (PROTOCOL.md, Identity). When token
// authentication arrives, only this file changes: auth() returns what the server
// then wants, and signIn() obtains it.

const KEY = 'chatd.user';
const NAME = /^[A-Za-z0-9_.-]{1,32}$/;

export function validUserName(name) {
    return NAME.test(name);
}

export function currentUser() {
    try {
        const v = sessionStorage.getItem(KEY);
        return v && validUserName(v) ? v : null;
    } catch {
        return null;
    }
}

export function signIn(name) {
    if (!validUserName(name)) throw new Error('invalid user');
    try { sessionStorage.setItem(KEY, name); } catch { /* private mode: memory only */ }
    memory = name;
}

export function signOut() {
    try { sessionStorage.removeItem(KEY); } catch { /* ignore */ }
    memory = null;
}

let memory = null;

export function user() {
    return memory || currentUser();
}

// The Socket.IO CONNECT packet's auth payload.
export function auth() {
    return { user: user() };
}
