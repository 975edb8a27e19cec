/**
 * HTTP/2 clients (`listen ... ssl http2`, `listen ... http2` in clear text) next to the real nginx (Debian's
 * 1.22.1) on the same configuration: the same answers over node:http2's client for variables ($http2,
 * $server_protocol, $http_host made from :authority, cookies joined), static files (ranges, 304, HEAD), a
 * backend behind proxy_pass (what it receives, request bodies with and without a length, a response whose
 * connection-specific headers HTTP/2 forbids), concurrent streams on one connection, HTTP/1.1 clients on
 * the same port and HTTP/2 with prior knowledge on a clear-text one.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import http2 from 'node:http2';
import { connect as tlsConnect } from 'node:tls';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { freePort, have, tempDir, startSideBySide, type Proc } from './helpers.js';

const withNginx = have('/usr/sbin/nginx') && process.getuid?.() === 0;
const skip = have('openssl') ? false : 'the openssl command is not installed';

/** A backend that answers with what it received, in a chunked response carrying Connection and Keep-Alive. */
function startBackend(): Promise<http.Server> {
  const srv = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const seen = ['host', 'cookie', 'content-length', 'transfer-encoding', 'connection', 'x-test']
        .map((h) => `${h}=${JSON.stringify(req.headers[h] ?? null)}`).join(' ');
      res.writeHead(200, { 'Content-Type': 'text/plain', 'Keep-Alive': 'timeout=5', 'X-Backend': 'yes' });
      res.write(`${req.method} ${req.url} HTTP/${req.httpVersion} ${seen} body=${body.length}:${body.toString('latin1').slice(0, 20)}\n`);
      res.end('end\n');
    });
  });
  return new Promise((res) => srv.listen(0, '127.0.0.1', () => res(srv)));
}

const conf = (port: number, h2cPort: number, dir: string, back: number): string => `events {}
http {
  access_log off;
  ssl_protocols TLSv1.2 TLSv1.3;
  ssl_certificate ${dir}/srv.crt;
  ssl_certificate_key ${dir}/srv.key;
  server {
    listen 127.0.0.1:${port} ssl http2;
    location /vars { return 200 "[$http_host][$host][$server_protocol][$request][$http2][$http_cookie][$scheme][$https][$request_method]\\n"; }
    location /n { return 200 "$connection_requests\\n"; }
    location /static/ { alias ${dir}/static/; }
    location /back { proxy_pass http://127.0.0.1:${back}; }
    location /missing { return 404 "gone\\n"; }
  }
  server {
    listen 127.0.0.1:${h2cPort} http2;
    location / { return 200 "[$http2][$server_protocol][$http_host]\\n"; }
  }
}
`;

interface H2Answer {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** Headers worth comparing (Date and Server differ by nature). */
const COMPARED = ['content-type', 'content-length', 'etag', 'last-modified', 'accept-ranges', 'content-range', 'x-backend', 'connection', 'keep-alive', 'transfer-encoding'];

function h2Request(session: http2.ClientHttp2Session, headers: http2.OutgoingHttpHeaders, body?: Buffer): Promise<H2Answer> {
  return new Promise((res, rej) => {
    const req = session.request(headers, { endStream: body === undefined });
    let status = 0;
    const got: Record<string, string> = {};
    req.on('response', (h) => {
      status = Number(h[':status']);
      for (const k of COMPARED) if (h[k] !== undefined) got[k] = String(h[k]);
    });
    let data = '';
    req.setEncoding('latin1');
    req.on('data', (d: string) => (data += d));
    req.on('end', () => res({ status, headers: got, body: data }));
    req.on('error', rej);
    if (body !== undefined) req.end(body);
  });
}

function open(url: string): Promise<http2.ClientHttp2Session> {
  return new Promise((res, rej) => {
    const s = http2.connect(url, { rejectUnauthorized: false });
    s.once('connect', () => res(s));
    s.once('error', rej);
  });
}

/** A plain HTTP/1.1 request over TLS with ALPN http/1.1 (and no h2) on the h2 port. */
function http11(port: number, path: string): Promise<string> {
  return new Promise((res, rej) => {
    const s = tlsConnect({ port, host: '127.0.0.1', ALPNProtocols: ['http/1.1'], rejectUnauthorized: false }, () => {
      s.write(`GET ${path} HTTP/1.1\r\nHost: one.test\r\nConnection: close\r\n\r\n`);
    });
    let raw = '';
    s.setEncoding('latin1');
    s.on('data', (d) => (raw += d));
    s.on('end', () => res(raw));
    s.on('error', rej);
  });
}

describe('HTTP/2 next to nginx', { skip }, () => {
  let t: ReturnType<typeof tempDir>;
  let proxy: Proc | undefined;
  let nginx: Proc | undefined;
  let backend: http.Server;
  let ports: { proxy: number; nginx: number };
  const h2c = { proxy: 0, nginx: 0 };
  let etag = '';

  before(async () => {
    t = tempDir('http2');
    const r = spawnSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=localhost', '-keyout', 'srv.key', '-out', 'srv.crt'], { cwd: t.dir, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(r.stderr);
    mkdirSync(join(t.dir, 'static'));
    writeFileSync(join(t.dir, 'static', 'f.txt'), 'the quick brown fox\n');
    backend = await startBackend();
    const back = (backend.address() as AddressInfo).port;
    h2c.proxy = await freePort();
    h2c.nginx = await freePort();
    ({ proxy, nginx, ports } = await startSideBySide(t.dir, (port, who) => conf(port, h2c[who], t.dir, back), withNginx));
  });
  after(async () => {
    await proxy?.stop('SIGQUIT');
    await nginx?.stop('SIGQUIT');
    backend?.close();
    t.cleanup();
  });

  /** Every case on one fresh connection per server: [what, headers, body]. */
  const cases = (): Array<[string, http2.OutgoingHttpHeaders, Buffer | undefined]> => [
    ['variables, cookies joined', { ':path': '/vars?x=1', cookie: ['a=1', 'b=2'] }, undefined],
    ['variables, HEAD', { ':path': '/vars', ':method': 'HEAD' }, undefined],
    ['static file', { ':path': '/static/f.txt' }, undefined],
    ['static range', { ':path': '/static/f.txt', range: 'bytes=4-8' }, undefined],
    ['static 304', { ':path': '/static/f.txt', 'if-none-match': etag }, undefined],
    ['static HEAD', { ':path': '/static/f.txt', ':method': 'HEAD' }, undefined],
    ['404 page', { ':path': '/missing' }, undefined],
    ['backend GET', { ':path': '/back/x?y=2', 'x-test': 'v', cookie: ['c=3', 'd=4'] }, undefined],
    ['backend POST with a length', { ':path': '/back/p', ':method': 'POST', 'content-length': '11' }, Buffer.from('hello world')],
    ['backend POST without a length', { ':path': '/back/q', ':method': 'POST' }, Buffer.from('no length given')],
  ];

  test('the same answers as nginx over HTTP/2', async (ctx) => {
    if (!withNginx) return ctx.skip('nginx is not installed or the test is not root');
    const first = await open(`https://127.0.0.1:${ports.nginx}`);
    etag = (await h2Request(first, { ':path': '/static/f.txt' })).headers.etag ?? '';
    first.close();
    assert.notEqual(etag, '');
    const a = await open(`https://127.0.0.1:${ports.proxy}`);
    const b = await open(`https://127.0.0.1:${ports.nginx}`);
    const differ: string[] = [];
    for (const [what, headers, body] of cases()) {
      const x = await h2Request(a, headers, body);
      const y = await h2Request(b, headers, body);
      const norm = (s: string, port: number): string => s.replaceAll(String(port), 'PORT');
      if (x.status !== y.status || norm(x.body, ports.proxy) !== norm(y.body, ports.nginx) || JSON.stringify(x.headers) !== JSON.stringify(y.headers)) {
        differ.push(`${what}:\n  tsgi-proxy ${x.status} ${JSON.stringify(x.headers)} ${JSON.stringify(x.body)}\n  nginx      ${y.status} ${JSON.stringify(y.headers)} ${JSON.stringify(y.body)}`);
      }
    }
    a.close();
    b.close();
    assert.deepEqual(differ, []);
  });

  test('concurrent streams on one connection are all answered, numbered as nginx numbers them', async () => {
    const counts = async (port: number): Promise<string[]> => {
      const s = await open(`https://127.0.0.1:${port}`);
      const answers = await Promise.all(Array.from({ length: 8 }, () => h2Request(s, { ':path': '/n' })));
      s.close();
      return answers.map((x) => `${x.status} ${x.body.trim()}`).sort();
    };
    const mine = await counts(ports.proxy);
    assert.deepEqual(mine, ['200 1', '200 2', '200 3', '200 4', '200 5', '200 6', '200 7', '200 8']);
    if (withNginx) assert.deepEqual(mine, await counts(ports.nginx));
  });

  test('HTTP/1.1 clients on the same port, HTTP/2 with prior knowledge in clear text', async () => {
    const one = await http11(ports.proxy, '/vars');
    assert.match(one, /^HTTP\/1\.1 200 OK\r\n/);
    assert.match(one, /\r\n\r\n\[one\.test\]\[one\.test\]\[HTTP\/1\.1\]\[GET \/vars HTTP\/1\.1\]\[\]\[\]\[https\]\[on\]\[GET\]\n$/);
    const c = await open(`http://127.0.0.1:${h2c.proxy}`);
    const x = await h2Request(c, { ':path': '/' });
    c.close();
    assert.equal(x.body, `[h2c][HTTP/2.0][127.0.0.1:${h2c.proxy}]\n`);
    if (withNginx) {
      const two = await http11(ports.nginx, '/vars');
      assert.equal(one.slice(one.indexOf('\r\n\r\n')), two.slice(two.indexOf('\r\n\r\n')));
      const d = await open(`http://127.0.0.1:${h2c.nginx}`);
      const y = await h2Request(d, { ':path': '/' });
      d.close();
      assert.equal(y.body, `[h2c][HTTP/2.0][127.0.0.1:${h2c.nginx}]\n`);
    }
  });
});

describe('HTTP/2 connections end as nginx ends them', () => {
  let t: ReturnType<typeof tempDir>;
  let proxy: Proc;
  let nginx: Proc | undefined;
  let ports: { proxy: number; nginx: number };
  before(async () => {
    t = tempDir('http2-ka');
    ({ proxy, nginx, ports } = await startSideBySide(t.dir, (port) => `events {}
http {
  access_log off;
  keepalive_requests 3;
  server { listen 127.0.0.1:${port} http2; location / { return 200 "ok\\n"; } }
}
`, withNginx));
  });
  after(async () => {
    await proxy?.stop('SIGQUIT');
    await nginx?.stop('SIGQUIT');
    t?.cleanup();
  });

  test('keepalive_requests 3: three streams are answered, then a GOAWAY closes the connection', async () => {
    const run = async (port: number): Promise<{ answers: string[]; goaway: boolean; closed: boolean }> => {
      const s = await open(`http://127.0.0.1:${port}`);
      let goaway = false;
      s.on('goaway', () => (goaway = true));
      s.on('error', () => {});
      const answers: string[] = [];
      // One after another, as long as the connection takes them: a fourth is never sent on it.
      for (let i = 0; i < 5 && !s.closed && !s.destroyed && !goaway; i++) {
        const a = await h2Request(s, { ':path': `/${i}` });
        answers.push(`${a.status} ${a.body.trim()}`);
      }
      await new Promise<void>((res) => (s.closed || s.destroyed ? res() : s.once('close', () => res())));
      return { answers, goaway, closed: s.closed || s.destroyed };
    };
    const mine = await run(ports.proxy);
    assert.deepEqual(mine, { answers: ['200 ok', '200 ok', '200 ok'], goaway: true, closed: true });
    if (withNginx) assert.deepEqual(await run(ports.nginx), mine);
  });
});
