// Error codes of PROTOCOL.md in words a person understands.

const WORDS = {
    bad_request: 'The server did not understand that request.',
    too_large: 'That is too long for the server (a message holds at most 4096 bytes).',
    forbidden: 'You are not allowed in that room.',
    not_member: 'You are not in that room any more.',
    rate_limited: 'You are sending too fast; wait a moment, then retry.',
    unavailable: 'The server is unavailable right now; nothing was lost, retry in a moment.',
    timeout: 'The server did not answer in time.',
    disconnected: 'You are offline; the page is reconnecting.',
    'invalid user': 'That name is not allowed: use 1 to 32 letters, digits, dots, dashes or underscores.',
    'invalid token': 'The server wants a valid token: paste the one your sign-in gave you.',
};

// Why the server refused a token (connect_error data.reason), in words.
const TOKEN_WORDS = {
    missing: 'This server wants a token: paste the one your sign-in gave you.',
    malformed: 'That is not a token the server can read.',
    bad_signature: 'The server does not trust that token (its signature does not match).',
    expired: 'Your token has expired: paste a new one.',
    not_yet_valid: 'That token is not valid yet; check your clock or wait a moment.',
    wrong_issuer: 'That token was issued for another service.',
    wrong_audience: 'That token is meant for another service.',
    bad_subject: 'That token does not name a valid user.',
};

export function describeToken(reason) {
    return TOKEN_WORDS[reason] || WORDS['invalid token'];
}

export function describe(err) {
    if (!err) return 'Something went wrong.';
    const code = typeof err === 'string' ? err : err.code || err.message;
    return WORDS[code] || (err.message ? `Something went wrong: ${err.message}` : 'Something went wrong.');
}

// Errors after which sending the same event again may succeed.
export function retryable(code) {
    return code === 'unavailable' || code === 'timeout' || code === 'rate_limited' ||
        code === 'disconnected' || code === 'not_member';
}
