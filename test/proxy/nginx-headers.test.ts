/**
 * Response heads and connection handling as a client sees them, next to the real nginx (Debian's 1.22.1)
 * serving the same tree with the same config: keep-alive (the Keep-Alive header of keepalive_timeout's
 * second value, `keepalive_timeout 0`, the idle timeout of the location that answered, pipelined requests),
 * and the header set of a static file, an error page, a redirect and a proxied response.
 * Without nginx (or without root, which its workers need here) the comparisons are skipped and the
 * tsgi-proxy side is still checked against what nginx was seen to send.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync, utimesSync } from 'node:fs';
import http from 'node:http';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { canConnect, freePort, have, parseRaw, run, startProxy, tempDir, waitFor, type Proc, type RawResponse } from './helpers.js';

const withNginx = have('/usr/sbin/nginx') && process.getuid?.() === 0;
const nginxSkip = withNginx ? false : 'needs /usr/sbin/nginx and root (nginx workers run as root here)';

/** One client connection kept open: responses are read one by one (framed by Content-Length). */
class Conn {
  private readonly s: Socket;
  private buf = Buffer.alloc(0);
  private wake: (() => void) | undefined;
  /** Resolves with the time the server closed the connection. */
  readonly closed: Promise<number>;
  isClosed = false;

  constructor(port: number) {
    this.s = connect(port, '127.0.0.1');
    this.s.on('data', (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.wake?.();
    });
    this.closed = new Promise((res) => {
      this.s.on('close', () => {
        this.isClosed = true;
        this.wake?.();
        res(Date.now());
      });
    });
    this.s.on('error', () => {});
  }

  send(raw: string): void {
    this.s.write(raw);
  }

  /** The next response; `head` when it has no body (a HEAD request). */
  async next(head = false): Promise<RawResponse> {
    for (;;) {
      const end = this.buf.indexOf('\r\n\r\n');
      if (end >= 0) {
        const r = parseRaw(this.buf.subarray(0, end + 4).toString('latin1'));
        const len = head ? 0 : Number(r.headers.get('content-length') ?? 0);
        if (this.buf.length >= end + 4 + len) {
          const whole = this.buf.subarray(0, end + 4 + len).toString('latin1');
          this.buf = this.buf.subarray(end + 4 + len);
          return parseRaw(whole);
        }
      }
      if (this.isClosed) throw new Error(`connection closed before a whole response: ${JSON.stringify(this.buf.toString('latin1'))}`);
      await new Promise<void>((res) => {
        const t = setTimeout(res, 20000);
        this.wake = () => {
          clearTimeout(t);
          res();
        };
      });
    }
  }

  close(): void {
    this.s.destroy();
  }
}

/** One request on a fresh connection; the connection is kept open until the caller is done. */
async function one(port: number, path: string, extra = '', method = 'GET', version = '1.1'): Promise<{ r: RawResponse; c: Conn }> {
  const c = new Conn(port);
  c.send(`${method} ${path} HTTP/${version}\r\n${version === '1.1' ? 'Host: localhost\r\n' : ''}${extra}\r\n`);
  return { r: await c.next(method === 'HEAD'), c };
}

describe('response heads and keep-alive, next to nginx', () => {
  let t: ReturnType<typeof tempDir>;
  const ports = { proxy: 0, proxyHdr: 0, nginx: 0, nginxHdr: 0 };
  let backend: http.Server;
  let proxy: Proc;
  let nginx: Proc | undefined;

  before(async () => {
    t = tempDir('headers');
    const www = join(t.dir, 'www');
    mkdirSync(join(www, 'dir'), { recursive: true });
    writeFileSync(join(www, 'hello.txt'), 'hello world\n');
    writeFileSync(join(www, 'page.html'), '<p>page</p>\n');
    writeFileSync(join(www, 'dir', 'index.html'), 'dir index\n');
    for (const f of ['hello.txt', 'page.html']) utimesSync(join(www, f), new Date('2021-03-04T05:06:07Z'), new Date('2021-03-04T05:06:07Z'));
    writeFileSync(join(www, 'big.txt'), 'some text to compress\n'.repeat(400));
    utimesSync(join(www, 'big.txt'), new Date('2021-03-04T05:06:07Z'), new Date('2021-03-04T05:06:07Z'));
    // The backend behind proxy_pass: /slow answers after 1.5 s (longer than the 1 s keepalive_timeout there).
    backend = http.createServer((req, res) => {
      const url = req.url ?? '/';
      const send = () => {
        if (url === '/chunked') {
          res.writeHead(200, { 'Content-Type': 'text/plain', 'X-Backend': 'yes' });
          res.write('a');
          setTimeout(() => res.end('b'), 10);
        } else if (url === '/server') {
          res.writeHead(200, 'Fine', { 'X-Powered-By': 'test', 'Set-Cookie': ['a=1', 'b=2'], 'Content-Length': '3', 'Cache-Control': 'no-cache', 'Content-Type': 'text/html; charset=utf-8', Vary: 'Cookie' });
          res.end('ok\n');
        } else if (url === '/redir') {
          res.writeHead(302, { Location: `http://127.0.0.1:${(backend.address() as { port: number }).port}/elsewhere`, 'Content-Length': '0' });
          res.end();
        } else if (url === '/elsewhere-absolute') {
          res.writeHead(301, { Location: 'http://example.com/x', 'Content-Length': '0' });
          res.end();
        } else if (url === '/204') {
          res.writeHead(204, { 'X-Backend': 'yes', 'Content-Type': 'text/plain' });
          res.end();
        } else if (url === '/gone') {
          res.writeHead(404, { 'Content-Type': 'text/plain', 'Content-Length': '3', 'Last-Modified': 'Thu, 04 Mar 2021 05:06:07 GMT', ETag: '"x"' });
          res.end('no\n');
        } else if (url === '/teapot') {
          res.writeHead(418, { 'Content-Length': '3' });
          res.end('ok\n');
        } else {
          res.writeHead(200, { 'Content-Type': 'text/plain', 'X-Backend': 'yes', 'Content-Length': '3' });
          res.end('ok\n');
        }
      };
      if (url === '/slow') setTimeout(send, 1500);
      else send();
    });
    await new Promise<void>((res) => backend.listen(0, '127.0.0.1', res));
    const backendPort = (backend.address() as { port: number }).port;
    for (const k of Object.keys(ports) as Array<keyof typeof ports>) ports[k] = await freePort();
    const conf = (main: number, hdr: number, mime: string) => `events {}
http {
  include ${mime};
  access_log off;
  server {
    listen 127.0.0.1:${main};
    root ${www};
    location /p/ { proxy_pass http://127.0.0.1:${backendPort}/; }
    location /hdr/ { alias ${www}/; keepalive_timeout 30 20; }
    location /off/ { alias ${www}/; keepalive_timeout 0; }
    location /short/ { alias ${www}/; keepalive_timeout 1; }
    location /slow { keepalive_timeout 1; proxy_pass http://127.0.0.1:${backendPort}; }
    location /add/ { alias ${www}/; add_header X-A a; expires 1h; }
    location /tok/ { alias ${www}/; server_tokens off; }
    location /gz/ { alias ${www}/; gzip on; gzip_types text/plain; gzip_min_length 5; gzip_vary on; }
    location = /ret { return 200 "text"; }
    location = /ret-empty { return 200; }
    location = /ret204 { return 204 "dropped"; }
    location = /ret302 { return 302 /x; }
    location = /ret418 { return 418; }
    location = /ret494 { return 494; }
    location /ep/ { error_page 404 /page.html; }
    location /ep200/ { error_page 404 =200 /hello.txt; }
    location /kr/ { alias ${www}/; keepalive_requests 2; }
  }
  server {
    listen 127.0.0.1:${hdr};
    root ${www};
    keepalive_timeout 75 60;
    location /inherit/ { alias ${www}/; keepalive_timeout 30; }
    location /zero/ { alias ${www}/; keepalive_timeout 30 0; }
  }
}
`;
    writeFileSync(join(t.dir, 'proxy.conf'), conf(ports.proxy, ports.proxyHdr, 'mime.types'));
    writeFileSync(join(t.dir, 'nginx.conf'), `pid ${t.dir}/nginx.pid;\n` + conf(ports.nginx, ports.nginxHdr, '/etc/nginx/mime.types'));
    proxy = await startProxy(t.dir, 'proxy.conf', ports.proxy);
    await waitFor('tsgi-proxy on its second port', () => canConnect(ports.proxyHdr));
    if (withNginx) {
      nginx = run('/usr/sbin/nginx', ['-p', t.dir, '-c', join(t.dir, 'nginx.conf'), '-e', join(t.dir, 'nginx-error.log'), '-g', 'daemon off; user root;']);
      await waitFor('nginx', async () => (await canConnect(ports.nginx)) && canConnect(ports.nginxHdr));
    }
  });

  after(async () => {
    await proxy?.stop('SIGQUIT');
    await nginx?.stop('SIGQUIT');
    await new Promise((res) => backend?.close(res));
    t?.cleanup();
  });

  /** Connection and Keep-Alive of one request, on a connection of its own. */
  async function keepAliveHeads(port: number, path: string, extra = '', version = '1.1'): Promise<string> {
    const { r, c } = await one(port, path, extra, 'GET', version);
    c.close();
    return `${r.status} Connection: ${r.headers.get('connection') ?? '-'}, Keep-Alive: ${r.headers.get('keep-alive') ?? '-'}`;
  }

  const KEEPALIVE_CASES: Array<[string, 'main' | 'hdr', string, string, string]> = [
    // name, server, path, extra request headers, HTTP version
    ['default', 'main', '/hello.txt', '', '1.1'],
    ['an error page', 'main', '/missing', '', '1.1'],
    ['a proxied response', 'main', '/p/x', '', '1.1'],
    ['keepalive_timeout 30 20', 'main', '/hdr/hello.txt', '', '1.1'],
    ['keepalive_timeout 0', 'main', '/off/hello.txt', '', '1.1'],
    ['Connection: close', 'main', '/hdr/hello.txt', 'Connection: close\r\n', '1.1'],
    ['server level 75 60', 'hdr', '/hello.txt', '', '1.1'],
    ['server level 75 60, HTTP/1.0 keep-alive', 'hdr', '/hello.txt', 'Connection: keep-alive\r\n', '1.0'],
    ['server level 75 60, HTTP/1.0', 'hdr', '/hello.txt', '', '1.0'],
    ['one value inherits the header value', 'hdr', '/inherit/hello.txt', '', '1.1'],
    ['a second value of 0: no header', 'hdr', '/zero/hello.txt', '', '1.1'],
  ];
  const EXPECTED = [
    '200 Connection: keep-alive, Keep-Alive: -',
    '404 Connection: keep-alive, Keep-Alive: -',
    '200 Connection: keep-alive, Keep-Alive: -',
    '200 Connection: keep-alive, Keep-Alive: timeout=20',
    '200 Connection: close, Keep-Alive: -',
    '200 Connection: close, Keep-Alive: -',
    '200 Connection: keep-alive, Keep-Alive: timeout=60',
    '200 Connection: keep-alive, Keep-Alive: timeout=60',
    '200 Connection: close, Keep-Alive: -',
    '200 Connection: keep-alive, Keep-Alive: timeout=60',
    '200 Connection: keep-alive, Keep-Alive: -',
  ];

  test('Keep-Alive is sent only with keepalive_timeout\'s second value; keepalive_timeout 0 closes', async () => {
    const got: string[] = [];
    for (const [name, srv, path, extra, v] of KEEPALIVE_CASES) got.push(`${name}: ${await keepAliveHeads(srv === 'main' ? ports.proxy : ports.proxyHdr, path, extra, v)}`);
    assert.deepEqual(got, KEEPALIVE_CASES.map(([name], i) => `${name}: ${EXPECTED[i]}`));
  });

  test('Connection and Keep-Alive are the same as nginx\'s', { skip: nginxSkip }, async () => {
    const diffs: string[] = [];
    for (const [name, srv, path, extra, v] of KEEPALIVE_CASES) {
      const ours = await keepAliveHeads(srv === 'main' ? ports.proxy : ports.proxyHdr, path, extra, v);
      const theirs = await keepAliveHeads(srv === 'main' ? ports.nginx : ports.nginxHdr, path, extra, v);
      if (ours !== theirs) diffs.push(`${name}: tsgi-proxy ${ours}; nginx ${theirs}`);
    }
    assert.deepEqual(diffs, []);
  });

  test('an idle connection is closed after the keepalive_timeout of the location that answered', async () => {
    const short = await one(ports.proxy, '/short/hello.txt');
    const answered = Date.now();
    const long = await one(ports.proxy, '/hello.txt');
    assert.equal(short.r.body, 'hello world\n');
    const closedAt = await short.c.closed;
    // keepalive_timeout 1 there; the default (75 s) on the other connection, which is still open.
    assert.ok(closedAt - answered >= 900, `closed ${closedAt - answered} ms after the response`);
    assert.equal(long.c.isClosed, false);
    long.c.send('GET /hello.txt HTTP/1.1\r\nHost: localhost\r\n\r\n');
    assert.equal((await long.c.next()).body, 'hello world\n');
    long.c.close();
  });

  test('the idle timeout does not run while a request is in progress, pipelined or not', async () => {
    // keepalive_timeout 1 in /short/ and /slow; /slow takes 1.5 s at the backend.
    const c = new Conn(ports.proxy);
    c.send('GET /short/hello.txt HTTP/1.1\r\nHost: localhost\r\n\r\n');
    assert.equal((await c.next()).status, 200);
    await new Promise((res) => setTimeout(res, 300));
    c.send('GET /slow HTTP/1.1\r\nHost: localhost\r\n\r\n');
    const slow = await c.next();
    assert.equal(slow.body, 'ok\n');
    // Pipelined: the first answer goes out at once; the connection waits for the second.
    c.send('GET /short/hello.txt HTTP/1.1\r\nHost: localhost\r\n\r\nGET /slow HTTP/1.1\r\nHost: localhost\r\n\r\n');
    assert.equal((await c.next()).body, 'hello world\n');
    assert.equal((await c.next()).body, 'ok\n');
    // And then it is idle: closed after the timeout.
    await c.closed;
  });

  // ---- the whole head, next to nginx ----

  const IMS = 'Thu, 04 Mar 2021 05:06:07 GMT';
  /** Request line, extra headers. */
  const HEAD_CASES: Array<[string, string]> = [
    ['GET /hello.txt HTTP/1.1', ''],
    ['HEAD /hello.txt HTTP/1.1', ''],
    ['GET /page.html HTTP/1.1', ''],
    ['GET /dir/ HTTP/1.1', ''],
    ['GET /hello.txt HTTP/1.1', `If-Modified-Since: ${IMS}`],
    ['GET /hello.txt HTTP/1.1', 'If-None-Match: "60406abf-c"'],
    ['GET /hello.txt HTTP/1.1', 'Range: bytes=0-3'],
    ['GET /hello.txt HTTP/1.1', 'Range: bytes=0-1,4-5'],
    ['GET /hello.txt HTTP/1.1', 'Range: bytes=100-'],
    ['GET /hello.txt HTTP/1.1', 'Range: bytes=0-3\r\nIf-Range: "other"'],
    ['GET /hello.txt HTTP/1.1', 'If-Match: "other"'],
    ['GET /dir HTTP/1.1', ''],
    ['GET /missing HTTP/1.1', ''],
    ['GET /missing HTTP/1.0', ''],
    ['POST /hello.txt HTTP/1.1', 'Content-Length: 0'],
    ['GET /add/hello.txt HTTP/1.1', ''],
    ['GET /add/missing HTTP/1.1', ''],
    ['GET /tok/hello.txt HTTP/1.1', ''],
    ['GET /tok/missing HTTP/1.1', ''],
    ['GET /gz/big.txt HTTP/1.1', 'Accept-Encoding: gzip'],
    ['GET /ret HTTP/1.1', ''],
    ['GET /ret-empty HTTP/1.1', ''],
    ['GET /ret204 HTTP/1.1', ''],
    ['GET /ret302 HTTP/1.1', ''],
    ['GET /ret418 HTTP/1.1', ''],
    ['GET /ret494 HTTP/1.1', ''],
    ['GET /p/x HTTP/1.1', ''],
    ['HEAD /p/x HTTP/1.1', ''],
    ['GET /p/x HTTP/1.0', ''],
    ['GET /p/chunked HTTP/1.1', ''],
    ['GET /p/chunked HTTP/1.0', ''],
    ['GET /p/server HTTP/1.1', ''],
    ['GET /p/redir HTTP/1.1', ''],
    ['GET /p/elsewhere-absolute HTTP/1.1', ''],
    ['GET /p/204 HTTP/1.1', ''],
    ['GET /p/teapot HTTP/1.1', ''],
    ['GET /p/gone HTTP/1.1', ''],
    ['GET /ep/missing HTTP/1.1', ''],
    ['GET /ep/missing HTTP/1.1', 'Range: bytes=0-1'],
    ['GET /ep200/missing HTTP/1.1', ''],
    ['GET / HTTP/1.1', 'Bad Header'],
  ];

  /**
   * A head as lines, with what must differ made equal: Date; the product in Server and in the pages'
   * signature (and so the pages' Content-Length); the port in Location; the multipart boundary; Expires.
   */
  async function headLines(port: number, line: string, extra: string): Promise<{ lines: string[]; body: string }> {
    const head = line.startsWith('HEAD');
    const c = new Conn(port);
    c.send(`${line}\r\n${line.endsWith('1.1') ? 'Host: localhost\r\n' : ''}${extra ? extra + '\r\n' : ''}\r\n`);
    let r: RawResponse;
    try {
      r = await c.next(head);
    } finally {
      c.close();
    }
    const raw = r.raw.slice(0, r.raw.indexOf('\r\n\r\n'));
    const sig = /(?:nginx\/1\.22\.1|tsgi-proxy\/[0-9.]+)/g;
    const body = r.body.replace(sig, 'PRODUCT/VERSION').replace(/<center>(?:nginx|tsgi-proxy)<\/center>/, '<center>PRODUCT</center>').replace(/\d{20}/g, 'BOUNDARY');
    const lines = raw.split('\r\n').map((l) => {
      const i = l.indexOf(':');
      if (i < 0) return l;
      const name = l.slice(0, i);
      let value = l.slice(i + 1).trim();
      switch (name.toLowerCase()) {
        case 'date':
        case 'expires':
          value = '*';
          break;
        case 'server':
          value = value.replace(sig, 'PRODUCT/VERSION').replace(/^(?:nginx|tsgi-proxy)$/, 'PRODUCT');
          break;
        case 'location':
          value = value.replace(`:${port}/`, ':PORT/');
          break;
        case 'content-type':
          value = value.replace(/\d{20}/, 'BOUNDARY');
          break;
        case 'content-length':
          if (body !== r.body) value = String(body.length);
          break;
      }
      return `${name}: ${value}`;
    });
    return { lines, body: /gzip/.test(r.headers.get('content-encoding') ?? '') ? '(gzip)' : body };
  }

  /** Where node:http writes them (after every other header): left out of the order comparison. */
  const NODE_PLACED = /^(connection|keep-alive|transfer-encoding):/i;
  /**
   * Cases whose header order is known to differ, beyond NODE_PLACED: nginx writes Accept-Ranges after
   * expires and add_header (tsgi-proxy before them), and gzip's Vary next to Connection (tsgi-proxy last).
   */
  const ORDER_DIFFERS = new Set(['GET /add/hello.txt HTTP/1.1 ', 'GET /gz/big.txt HTTP/1.1 Accept-Encoding: gzip']);

  test('a static file, an error page, a redirect, a return and a proxied response have the heads nginx sends', { skip: nginxSkip }, async () => {
    const diffs: string[] = [];
    for (const [line, extra] of HEAD_CASES) {
      const name = `${line} ${extra}`;
      const ours = await headLines(ports.proxy, line, extra);
      const theirs = await headLines(ports.nginx, line, extra);
      const sorted = (l: string[]) => [l[0], ...l.slice(1).sort()].join(' | ');
      if (sorted(ours.lines) !== sorted(theirs.lines)) diffs.push(`${name}\n  tsgi-proxy: ${sorted(ours.lines)}\n  nginx:      ${sorted(theirs.lines)}`);
      else if (!ORDER_DIFFERS.has(name)) {
        const order = (l: string[]) => l.filter((x) => !NODE_PLACED.test(x)).join(' | ');
        if (order(ours.lines) !== order(theirs.lines)) diffs.push(`${name} (order)\n  tsgi-proxy: ${order(ours.lines)}\n  nginx:      ${order(theirs.lines)}`);
      }
      if (ours.body !== theirs.body) diffs.push(`${name} (body)\n  tsgi-proxy: ${JSON.stringify(ours.body)}\n  nginx:      ${JSON.stringify(theirs.body)}`);
    }
    assert.equal(diffs.join('\n'), '');
  });

  test('heads without nginx at hand: 304, 206, 416, return, reason phrases, a rewritten Location', async () => {
    const get1 = async (line: string, extra = '') => (await headLines(ports.proxy, line, extra)).lines.filter((l) => !/^(date|server|connection):/i.test(l)).join(' | ');
    assert.equal(await get1('GET /hello.txt HTTP/1.1', `If-Modified-Since: ${IMS}`), `HTTP/1.1 304 Not Modified | Last-Modified: ${IMS} | ETag: "60406abf-c"`);
    assert.equal(await get1('GET /hello.txt HTTP/1.1', 'Range: bytes=0-3'), `HTTP/1.1 206 Partial Content | Content-Type: text/plain | Content-Length: 4 | Last-Modified: ${IMS} | ETag: "60406abf-c" | Content-Range: bytes 0-3/12`);
    assert.match(await get1('GET /hello.txt HTTP/1.1', 'Range: bytes=100-'), /^HTTP\/1\.1 416 Requested Range Not Satisfiable \| Content-Type: text\/html \| Content-Length: \d+ \| Content-Range: bytes \*\/12$/);
    assert.match(await get1('POST /hello.txt HTTP/1.1', 'Content-Length: 0'), /^HTTP\/1\.1 405 Not Allowed /);
    // No reason phrase for a code nginx has none for: "418 " then the end of the line; no page either.
    assert.equal(await get1('GET /ret418 HTTP/1.1'), 'HTTP/1.1 418  | Content-Length: 0');
    assert.match(await get1('GET /ret494 HTTP/1.1'), /^HTTP\/1\.1 400 Bad Request /);
    assert.equal(await get1('GET /ret-empty HTTP/1.1'), 'HTTP/1.1 200 OK | Content-Type: text/plain | Content-Length: 0');
    assert.equal(await get1('GET /ret204 HTTP/1.1'), 'HTTP/1.1 204 No Content');
    assert.equal(await get1('GET /p/server HTTP/1.1'), 'HTTP/1.1 200 Fine | Content-Type: text/html; charset=utf-8 | Content-Length: 3 | X-Powered-By: test | Set-Cookie: a=1 | Set-Cookie: b=2 | Cache-Control: no-cache | Vary: Cookie');
    assert.equal(await get1('GET /p/redir HTTP/1.1'), 'HTTP/1.1 302 Found | Content-Length: 0 | Location: http://localhost:PORT/p/elsewhere');
    assert.equal(await get1('GET /p/elsewhere-absolute HTTP/1.1'), 'HTTP/1.1 301 Moved Permanently | Content-Length: 0 | Location: http://example.com/x');
    assert.equal(await get1('GET /p/204 HTTP/1.1'), 'HTTP/1.1 204 No Content | Content-Type: text/plain | X-Backend: yes');
  });

  /** Sends `raw` (then half-closes) on a fresh connection: the status of every response until the server closes. */
  function statuses(port: number, raw: string): Promise<string> {
    return new Promise((resolve) => {
      const c = connect(port, '127.0.0.1', () => c.end(raw));
      let got = '';
      c.setEncoding('latin1');
      c.on('data', (d: string) => (got += d));
      c.on('error', () => {});
      c.on('close', () => resolve([...got.matchAll(/^HTTP\/1\.1 (\d{3})/gm)].map((m) => m[1]).join(',')));
    });
  }

  const get = (target: string, extra = '') => `GET ${target} HTTP/1.1\r\nHost: localhost\r\n${extra}\r\n`;
  /** A request whose request line, CRLF included, is `n` bytes. */
  const lineOf = (n: number) => get('/hello.txt?' + 'a'.repeat(n - 'GET /hello.txt? HTTP/1.1\r\n'.length));
  /** A request with a header line of `n` bytes, CRLF included. */
  const headerOf = (n: number) => get('/hello.txt', `X-Big: ${'a'.repeat(n - 'X-Big: \r\n'.length)}\r\n`);
  const LIMIT_CASES: Array<[string, string, string]> = [
    // name, what the client sends, the statuses nginx 1.22 answers with (large_client_header_buffers 4 8k)
    ['a request line of 8192 bytes', lineOf(8192), '200'],
    ['a request line of 8193 bytes', lineOf(8193), '414'],
    ['a request line of 20000 bytes', lineOf(20000), '414'],
    ['a header line of 8192 bytes', headerOf(8192), '200'],
    ['a header line of 8193 bytes', headerOf(8193), '400'],
    ['a header line of 8193 bytes, then a request', headerOf(8193) + get('/hello.txt'), '400'],
    ['four header lines of 7000 bytes', get('/hello.txt', [1, 2, 3, 4].map((i) => `X-${i}: ${'a'.repeat(7000)}\r\n`).join('')), '200'],
    ['five header lines of 7000 bytes', get('/hello.txt', [1, 2, 3, 4, 5].map((i) => `X-${i}: ${'a'.repeat(7000)}\r\n`).join('')), '400'],
    ['keepalive_requests 2: four pipelined requests', get('/kr/hello.txt').repeat(4), '200,200'],
    ['keepalive_requests 2 reached in its location', get('/hello.txt') + get('/kr/hello.txt') + get('/kr/hello.txt') + get('/hello.txt'), '200,200'],
    ['keepalive_requests 2 in another location only', get('/hello.txt').repeat(4), '200,200,200,200'],
  ];

  test('request line and header line limits, and keepalive_requests per location, answer as nginx does', async () => {
    const got: string[] = [];
    for (const [name, raw] of LIMIT_CASES) got.push(`${name}: ${await statuses(ports.proxy, raw)}`);
    assert.deepEqual(got, LIMIT_CASES.map(([name, , want]) => `${name}: ${want}`));
  });

  test('the limit cases are what nginx answers', { skip: nginxSkip }, async () => {
    const got: string[] = [];
    for (const [name, raw] of LIMIT_CASES) got.push(`${name}: ${await statuses(ports.nginx, raw)}`);
    assert.deepEqual(got, LIMIT_CASES.map(([name, , want]) => `${name}: ${want}`));
  });
});
