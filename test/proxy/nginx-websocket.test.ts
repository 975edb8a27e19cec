/**
 * WebSocket (any Upgrade) through proxy_pass and uwsgi_pass, next to the real nginx (Debian's 1.22.1) with the
 * same configuration: the classic `map $http_upgrade $connection_upgrade` setup, a backend written here with
 * node:http's 'upgrade' event that speaks real WebSocket frames (Sec-WebSocket-Accept, masked client frames,
 * echo), and a client on a raw socket. Checked: the same bytes back from both, the 101 head, the idle timeout
 * (proxy_read_timeout, re-armed by traffic in either direction), the access log line written when the tunnel
 * ends (status 101), a graceful quit that lets an open tunnel finish, and a 101 nobody asked for.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { canConnect, freePort, have, rawRequest, startProxy, tempDir, waitFor, startSideBySide, type Proc } from './helpers.js';

const withNginx = have('/usr/sbin/nginx') && process.getuid?.() === 0;
const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

function frame(payload: string, opcode = 1, mask = true): Buffer {
  const p = Buffer.from(payload);
  const key = mask ? randomBytes(4) : Buffer.alloc(0);
  const head = Buffer.from([0x80 | opcode, (mask ? 0x80 : 0) | p.length]);
  const body = mask ? Buffer.from(p.map((b, i) => b ^ key[i % 4]!)) : p;
  return Buffer.concat([head, key, body]);
}

/** Frames in `buf` (payloads < 126 bytes): [opcode, unmasked payload]; the rest is returned. */
function parseFrames(buf: Buffer): { frames: Array<[number, string]>; rest: Buffer } {
  const frames: Array<[number, string]> = [];
  let i = 0;
  while (buf.length - i >= 2) {
    const masked = (buf[i + 1]! & 0x80) !== 0;
    const len = buf[i + 1]! & 0x7f;
    const need = 2 + (masked ? 4 : 0) + len;
    if (buf.length - i < need) break;
    const key = masked ? buf.subarray(i + 2, i + 6) : null;
    const data = Buffer.from(buf.subarray(i + need - len, i + need));
    if (key) for (let k = 0; k < data.length; k++) data[k]! ^= key[k % 4]!;
    frames.push([buf[i]! & 0x0f, data.toString()]);
    i += need;
  }
  return { frames, rest: buf.subarray(i) };
}

/** The echo backend: answers the handshake, echoes text frames, answers a close with a close. */
function wsBackend(): http.Server {
  const srv = http.createServer((q, res) => {
    if (q.url === '/unasked') {
      q.socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n');
      q.socket.end();
      return;
    }
    let body = '';
    q.on('data', (d: Buffer) => (body += d));
    q.on('end', () => res.end(`plain ${q.method} [${body}]`));
  });
  srv.on('upgrade', (q: http.IncomingMessage, s: Socket, head: Buffer) => {
    const accept = createHash('sha1').update(String(q.headers['sec-websocket-key']) + GUID).digest('base64');
    s.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\nX-Seen: ${q.headers.upgrade}/${q.headers.connection}\r\n\r\n`);
    let buf = head;
    const onData = (d: Buffer): void => {
      const { frames, rest } = parseFrames(Buffer.concat([buf, d]));
      buf = rest;
      for (const [op, text] of frames) {
        if (op === 1) s.write(frame('echo:' + text, 1, false));
        else if (op === 8) s.end(frame('', 8, false));
      }
    };
    s.on('data', onData);
    s.on('end', () => s.end());
    s.on('error', () => s.destroy());
    if (head.length) onData(Buffer.alloc(0));
  });
  return srv;
}

interface WsResult { head: string; frames: Array<[number, string]>; closedAfterMs: number }

/** Handshake, then `messages` one every `gapMs`, then a close frame unless `noClose` (then wait for the proxy). */
function wsClient(port: number, path: string, messages: string[], opts: { gapMs?: number; noClose?: boolean; early?: string } = {}): Promise<WsResult> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1');
    const key = randomBytes(16).toString('base64');
    let raw = Buffer.alloc(0);
    const t0 = Date.now();
    s.on('error', reject);
    s.on('data', (d) => (raw = Buffer.concat([raw, d])));
    s.on('close', () => {
      const end = raw.indexOf('\r\n\r\n');
      const head = raw.subarray(0, end).toString('latin1').replace(/^Date: .*$/m, 'Date: -').replace(/^Server: .*$/m, 'Server: -');
      resolve({ head, frames: parseFrames(raw.subarray(end + 4)).frames, closedAfterMs: Date.now() - t0 });
    });
    s.write(`GET ${path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`);
    if (opts.early) s.write(frame(opts.early));
    let i = 0;
    const next = (): void => {
      if (s.destroyed) return;
      if (i < messages.length) {
        s.write(frame(messages[i++]!));
        setTimeout(next, opts.gapMs ?? 20);
      } else if (!opts.noClose) s.write(frame('', 8));
    };
    setTimeout(next, opts.gapMs ?? 20);
  });
}

const conf = (dir: string, port: number, back: number, uw: number, log: string): string => `events {}
http {
  log_format t '$request_method $uri $status $upstream_status';
  access_log ${dir}/${log} t;
  map $http_upgrade $connection_upgrade { default upgrade; '' close; }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://127.0.0.1:${back};
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
    }
    location /idle { proxy_pass http://127.0.0.1:${back}; proxy_http_version 1.1; proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade; proxy_read_timeout 1500ms; }
    location /uw { uwsgi_pass 127.0.0.1:${uw}; }
    location /plain { proxy_pass http://127.0.0.1:${back}; }
  }
}
`;

describe('WebSocket through tsgi-proxy and nginx', () => {
  let t: ReturnType<typeof tempDir>;
  let backend: http.Server;
  let uwsgiLike: Server;
  let proxy: Proc;
  let nginx: Proc | undefined;
  const ports = { proxy: 0, nginx: 0, back: 0, uw: 0 };

  before(async () => {
    t = tempDir('ws');
    backend = wsBackend();
    await new Promise<void>((res) => backend.listen(0, '127.0.0.1', res));
    ports.back = (backend.address() as { port: number }).port;
    // A uwsgi backend's answer is plain HTTP after the uwsgi request packet: this one switches protocols and echoes.
    uwsgiLike = createServer((s) => {
      s.once('data', () => {
        s.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: raw\r\nConnection: Upgrade\r\n\r\nhello ');
        s.on('data', (d) => s.write(Buffer.concat([Buffer.from('echo:'), d])));
      });
      s.on('end', () => s.end());
      s.on('error', () => s.destroy());
    });
    await new Promise<void>((res) => uwsgiLike.listen(0, '127.0.0.1', res));
    ports.uw = (uwsgiLike.address() as { port: number }).port;
    const both = await startSideBySide(t.dir, (port, who) => conf(t.dir, port, ports.back, ports.uw, `${who}-access.log`), withNginx);
    ({ proxy, nginx } = both);
    Object.assign(ports, both.ports);
  });

  after(async () => {
    await proxy?.stop('SIGQUIT');
    await nginx?.stop('SIGQUIT');
    await new Promise((res) => backend?.close(res));
    await new Promise((res) => uwsgiLike?.close(res));
    t?.cleanup();
  });

  test('frames echo through the tunnel, same bytes as through nginx', async () => {
    const go = async (port: number): Promise<Omit<WsResult, 'closedAfterMs'>> => {
      const r = await wsClient(port, '/chat', ['one', 'two', 'x'.repeat(100)], { early: 'sent-with-the-head' });
      return { head: r.head.replace(/^Sec-WebSocket-Accept: .*$/m, 'Sec-WebSocket-Accept: -'), frames: r.frames };
    };
    const ours = await go(ports.proxy);
    assert.equal(ours.head, 'HTTP/1.1 101 Switching Protocols\r\nServer: -\r\nDate: -\r\nConnection: upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: -\r\nX-Seen: websocket/upgrade');
    assert.deepEqual(ours.frames, [[1, 'echo:sent-with-the-head'], [1, 'echo:one'], [1, 'echo:two'], [1, 'echo:' + 'x'.repeat(100)], [8, '']]);
    if (nginx) assert.deepEqual(ours, await go(ports.nginx));
  });

  test('uwsgi_pass relays a 101 too (as nginx 1.22 does)', async () => {
    const go = (port: number): Promise<string> => new Promise((resolve, reject) => {
      const s = connect(port, '127.0.0.1');
      let out = '';
      s.on('error', reject);
      s.on('data', (d) => {
        out += d;
        if (out.endsWith('hello ')) s.write('ping');
        if (out.endsWith('echo:ping')) s.end();
      });
      s.on('close', () => resolve(out.replace(/^Date: .*$/m, 'Date: -').replace(/^Server: .*$/m, 'Server: -')));
      s.write('GET /uw HTTP/1.1\r\nHost: x\r\nUpgrade: raw\r\nConnection: Upgrade\r\n\r\n');
    });
    const ours = await go(ports.proxy);
    assert.equal(ours, 'HTTP/1.1 101 Switching Protocols\r\nServer: -\r\nDate: -\r\nConnection: upgrade\r\nUpgrade: raw\r\n\r\nhello echo:ping');
    if (nginx) assert.equal(ours, await go(ports.nginx));
  });

  test('proxy_read_timeout ends an idle tunnel; traffic either way keeps it open', async () => {
    // Six messages 500ms apart (3s in all) with a 1.5s timeout: open throughout; then idle: closed 1.5s later.
    const busy = await wsClient(ports.proxy, '/idle', ['a', 'b', 'c', 'd', 'e', 'f'], { gapMs: 500, noClose: true });
    assert.equal(busy.frames.length, 6);
    assert.ok(busy.closedAfterMs >= 4000 && busy.closedAfterMs < 9000, `closed after ${busy.closedAfterMs}ms`);
    if (nginx) {
      const n = await wsClient(ports.nginx, '/idle', ['a', 'b', 'c', 'd', 'e', 'f'], { gapMs: 500, noClose: true });
      assert.equal(n.frames.length, 6);
      assert.ok(n.closedAfterMs >= 4000 && n.closedAfterMs < 9000, `nginx closed after ${n.closedAfterMs}ms`);
    }
  });

  test('the access log line is written when the tunnel ends, with status 101', async () => {
    const log = (): string => readFileSync(join(t.dir, 'proxy-access.log'), 'latin1');
    const before = log().split('\n').filter((l) => l.startsWith('GET /chat2 ')).length;
    const s = connect(ports.proxy, '127.0.0.1');
    await new Promise<void>((res) => s.once('connect', () => res()));
    s.write('GET /chat2 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n');
    await new Promise<void>((res) => s.once('data', () => res()));
    await new Promise((res) => setTimeout(res, 200));
    assert.equal(log().split('\n').filter((l) => l.startsWith('GET /chat2 ')).length, before, 'no line while the tunnel is open');
    s.end(frame('', 8));
    await waitFor('the log line', () => log().split('\n').filter((l) => l.startsWith('GET /chat2 101 101')).length === before + 1);
  });

  test('a 101 the client did not ask for is a 502 (nginx passes it on as a response; see docs/proxy.md)', async () => {
    const r = await rawRequest(ports.proxy, 'GET /unasked HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    assert.equal(r.status, 502);
  });

  test('an upgrade request with a body that is not switched (Upgrade: h2c POST) is served with its body', async () => {
    const go = async (port: number): Promise<string> => {
      const r = await rawRequest(port, 'POST /plain HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\nContent-Length: 7\r\n\r\nhello=1');
      return `${r.status} ${r.body}`;
    };
    const ours = await go(ports.proxy);
    assert.equal(ours, '200 plain POST [hello=1]');
    if (nginx) assert.equal(ours, await go(ports.nginx));
  });

  test('a graceful quit lets an open tunnel finish', async () => {
    const dir = t.dir;
    const port = await freePort();
    writeFileSync(join(dir, 'quit.conf'), conf(dir, port, ports.back, ports.uw, 'quit-access.log'));
    const p = await startProxy(dir, 'quit.conf', port);
    const s = connect(port, '127.0.0.1');
    let raw = Buffer.alloc(0);
    s.on('data', (d) => (raw = Buffer.concat([raw, d])));
    s.write('GET /q HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n');
    await waitFor('101', () => raw.includes('\r\n\r\n'));
    p.child.kill('SIGQUIT');
    await waitFor('the listener closed', async () => !(await canConnect(port)));
    s.write(frame('still-there'));
    await waitFor('the echo', () => raw.includes('echo:still-there'));
    assert.equal(p.child.exitCode, null, 'the proxy waits for the tunnel');
    s.end(frame('', 8));
    assert.equal(await p.exited, 0);
  });
});
