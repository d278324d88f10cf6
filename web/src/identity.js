// The one place that knows who the user is and how the page proves it.
//
// With --auth none the server takes `auth.user` on trust; with tokens on
// (PROTOCOL.md, Identity) it wants a signed token in `auth.token`, which the
// person pastes (signInWithToken). The page reads the token's sub and exp only
// to show who it names and when it ends: the server is what verifies it.

const KEY = 'chatd.user';
const TOKEN_KEY = 'chatd.token';
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

// The claims of a JWT's payload, or null when it is not one (not verified).
export function tokenClaims(token) {
    const parts = typeof token === 'string' ? token.trim().split('.') : [];
    if (parts.length !== 3) return null;
    try {
        const json = atob(parts[1].replace(/-/g, '+').replace(/_/g, '/'));
        const claims = JSON.parse(json);
        return claims && typeof claims === 'object' && typeof claims.sub === 'string' ? claims : null;
    } catch {
        return null;
    }
}

export function signInWithToken(token) {
    const claims = tokenClaims(token);
    if (!claims || !validUserName(claims.sub)) throw new Error('invalid token');
    const t = token.trim();
    try {
        sessionStorage.setItem(TOKEN_KEY, t);
        sessionStorage.setItem(KEY, claims.sub);
    } catch { /* private mode: memory only */ }
    memory = claims.sub;
    memoryToken = t;
}

export function signOut() {
    try {
        sessionStorage.removeItem(KEY);
        sessionStorage.removeItem(TOKEN_KEY);
    } catch { /* ignore */ }
    memory = null;
    memoryToken = null;
}

let memory = null;
let memoryToken = null;

export function user() {
    return memory || currentUser();
}

function token() {
    if (memoryToken) return memoryToken;
    try { return sessionStorage.getItem(TOKEN_KEY); } catch { return null; }
}

// The Socket.IO CONNECT packet's auth payload: the token when there is one.
export function auth() {
    const t = token();
    return t ? { token: t } : { user: user() };
}
