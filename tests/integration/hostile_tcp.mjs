// A raw TCP client for the hostile tests: the upgrade by hand, then frames
// built byte by byte, and the server's close as seen on the wire.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import net from 'node:net';
import { slow, sleep, until } from './cluster.mjs';

// ---- a raw TCP client: the upgrade by hand, then frames built byte by byte ----

export function tcp(url) {
    const { hostname, port } = new URL(url);
    const sock = net.connect(Number(port), hostname);
    const r = { sock, data: Buffer.alloc(0), closed: false };
    sock.on('data', (d) => { r.data = Buffer.concat([r.data, d]); });
    r.done = new Promise((resolve) => sock.on('close', () => { r.closed = true; resolve(); }));
    sock.on('error', () => {});
    r.ready = new Promise((resolve, reject) => { sock.once('connect', resolve); sock.once('error', reject); });
    return r;
}

// upgraded(url, {version, status}): status is a regexp source for the status
// line after "HTTP/" (default 1.1 101); version null sends no version header.
export async function upgraded(url, { version = '13', status = '1\\.1 101' } = {}) {
    const r = tcp(url);
    await r.ready;
    const key = crypto.randomBytes(16).toString('base64');
    r.sock.write('GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n' +
        `Connection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\n` +
        (version === null ? '' : `Sec-WebSocket-Version: ${version}\r\n`) + '\r\n');
    await until('the 101', () => r.data.includes('\r\n\r\n'), slow(5000), 10);
    const head = r.data.toString('latin1');
    assert.match(head, new RegExp(`^HTTP/${status}`));
    r.head = head.slice(0, head.indexOf('\r\n\r\n'));
    r.data = r.data.subarray(head.indexOf('\r\n\r\n') + 4);
    return r;
}

// One frame: fin, opcode, payload; masked unless mask === false; len overrides
// the length field (for lies about it).
export function frame({ fin = true, op = 1, payload = Buffer.alloc(0), mask = true, len = null }) {
    const p = Buffer.from(payload);
    const n = len ?? BigInt(p.length);
    const head = [(fin ? 0x80 : 0) | op];
    const m = mask ? 0x80 : 0;
    if (n < 126n) head.push(m | Number(n));
    else if (n < 65536n) head.push(m | 126, Number(n >> 8n) & 255, Number(n) & 255);
    else {
        head.push(m | 127);
        for (let i = 7; i >= 0; i--) head.push(Number((n >> BigInt(8 * i)) & 255n));
    }
    if (!mask) return Buffer.concat([Buffer.from(head), p]);
    const key = crypto.randomBytes(4);
    const body = Buffer.from(p.map((x, i) => x ^ key[i % 4]));
    return Buffer.concat([Buffer.from(head), key, body]);
}

// The server's close: the code of its close frame (1005 when it has none),
// 'tcp' for a close without one, or null when neither came within ms.
export async function closeOf(r, ms = slow(5000)) {
    const deadline = Date.now() + ms;
    while (Date.now() < deadline) {
        for (let i = 0; i + 2 <= r.data.length;) {
            const op = r.data[i] & 0x0f;
            let len = r.data[i + 1] & 0x7f;
            let hl = 2;
            if (len === 126) { len = r.data.length >= i + 4 ? r.data.readUInt16BE(i + 2) : Infinity; hl = 4; }
            else if (len === 127) { len = Infinity; }
            if (i + hl + len > r.data.length) break;
            if (op === 8) return len >= 2 ? r.data.readUInt16BE(i + hl) : 1005;
            i += hl + len;
        }
        if (r.closed) return 'tcp';
        await sleep(20);
    }
    return null;
}

