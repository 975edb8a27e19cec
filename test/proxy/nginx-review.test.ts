/**
 * An adversarial review of the newest tsgi-proxy features, each finding a regression test, next to the real
 * nginx (Debian's 1.22.1) on the same configuration where nginx has the answer:
 * - an HTTP/2 client that resets its streams (RST_STREAM) while a backend is sending: the backend connection
 *   is closed, as nginx closes it (before: node:http2 reports a reset stream as finished, so the backend was
 *   read on forever, its connection and data held by the worker);
 * - CONNECT on an HTTP/2 stream: a 400 as nginx answers (before: an HTTP/1.1 error page as the body of a 200);
 * - a cache file cut short or damaged on disk: a MISS and the backend's whole answer (before: the part that
 *   was left was served as a HIT).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import http2 from 'node:http2';
import { connect, type Socket } from 'node:net';
import { readdirSync, readFileSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { have, proxySync, startSideBySide, tempDir, waitFor, type Proc } from './helpers.js';

const withNginx = have('/usr/sbin/nginx') && process.getuid?.() === 0;

/** A backend that streams without end on /endless (counting the connections open), and a fixed body elsewhere. */
interface Backend {
  port: number;
  open: number;
  served: number;
  close(): Promise<void>;
}

function backend(): Promise<Backend> {
  const b: Backend = { port: 0, open: 0, served: 0, close: async () => undefined };
  const srv = http.createServer((req, res) => {
    b.served++;
    if (req.url!.startsWith('/endless')) {
      b.open++;
      res.on('close', () => b.open--);
      // The head comes late, so a client can reset its stream before it: then (with the head or after it)
      // the body flows without end. Flow-controlled: a reader that stops reading stops the writes.
      const more = (): void => {
        while (!res.destroyed && res.write(Buffer.alloc(16384, 120)));
      };
      setTimeout(() => {
        if (res.destroyed) return;
        res.writeHead(200, { 'Content-Type': 'text/plain' });
        res.on('drain', more);
        more();
      }, Number(new URL(req.url!, 'http://x').searchParams.get('delay') ?? 0));
      return;
    }
    const body = `${req.url} #${b.served} ` + 'abcdefghij'.repeat(100) + ' end\n';
    res.writeHead(200, { 'Content-Type': 'text/plain', 'Cache-Control': req.url!.includes('maxage1') ? 'max-age=1' : 'max-age=600', 'Content-Length': Buffer.byteLength(body) });
    res.end(body);
  });
  srv.keepAliveTimeout = 100;
  return new Promise((resolve) => {
    srv.listen(0, '127.0.0.1', () => {
      b.port = (srv.address() as { port: number }).port;
      b.close = () => new Promise((r) => {
        srv.closeAllConnections();
        srv.close(() => r());
      });
      resolve(b);
    });
  });
}

const conf = (dir: string, who: string, port: number, back: number): string => `
worker_processes 1;
events {}
http {
  access_log off;
  proxy_cache_path ${dir}/cache-${who} levels=1:2 keys_zone=z:1m;
  server {
    listen 127.0.0.1:${port} http2;
    location /endless { proxy_pass http://127.0.0.1:${back}; }
    location /c/ { proxy_pass http://127.0.0.1:${back}; proxy_cache z; add_header X-Cache $upstream_cache_status; }
    location /ce/ { proxy_pass http://127.0.0.1:${back}/endless/; proxy_cache z; proxy_cache_valid 200 1m; }
    location /cs/ { proxy_pass http://127.0.0.1:${back}; proxy_cache z; proxy_cache_use_stale updating; add_header X-Cache $upstream_cache_status; }
    location /h { return 200 "[$http_x_h0][$http_x_h299][$http_cookie]\\n"; }
    location / { return 200 "ok\\n"; }
  }
}
`;

function h2(port: number): Promise<http2.ClientHttp2Session> {
  return new Promise((resolve, reject) => {
    const s = http2.connect(`http://127.0.0.1:${port}`);
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
}

function fetchH2(s: http2.ClientHttp2Session, headers: http2.OutgoingHttpHeaders): Promise<{ headers: http2.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const rq = s.request(headers);
    let h: http2.IncomingHttpHeaders = {};
    let body = '';
    rq.setEncoding('latin1');
    rq.on('response', (x) => (h = x));
    rq.on('data', (d: string) => (body += d));
    rq.on('end', () => resolve({ headers: h, body }));
    rq.on('error', reject);
  });
}

/**
 * HTTP/2 with prior knowledge, by hand: each request's HEADERS frame (HPACK literals, no compression) and its
 * RST_STREAM(CANCEL) in one write, so the reset is read before anything asynchronous the request started
 * (a cache lookup) is done. The connection is left open, so it is the stream that goes, not the session.
 */
function resetAtOnce(port: number, paths: string[]): Promise<Socket> {
  const frame = (type: number, flags: number, id: number, payload: Buffer): Buffer => {
    const h = Buffer.alloc(9);
    h.writeUIntBE(payload.length, 0, 3);
    h[3] = type;
    h[4] = flags;
    h.writeUInt32BE(id, 5);
    return Buffer.concat([h, payload]);
  };
  const literal = (n: string, v: string): Buffer => Buffer.concat([Buffer.from([0, n.length]), Buffer.from(n, 'latin1'), Buffer.from([v.length]), Buffer.from(v, 'latin1')]);
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1', () => {
      const out: Buffer[] = [Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1'), frame(4, 0, 0, Buffer.alloc(0))];
      paths.forEach((path, i) => {
        const id = 1 + 2 * i;
        out.push(frame(1, 5, id, Buffer.concat([literal(':method', 'GET'), literal(':scheme', 'http'), literal(':path', path), literal(':authority', 'x')])));
        out.push(frame(3, 0, id, Buffer.from([0, 0, 0, 8])));
      });
      s.write(Buffer.concat(out));
      resolve(s);
    });
    s.on('data', () => undefined);
    s.once('error', reject);
  });
}

describe('tsgi-proxy review: HTTP/2, the cache, malformed input', () => {
  let t: ReturnType<typeof tempDir>;
  let proxy: Proc | undefined;
  let nginx: Proc | undefined;
  const backs: Record<string, Backend> = {};
  let ports: { proxy: number; nginx: number };

  before(async () => {
    t = tempDir('review');
    backs.proxy = await backend();
    backs.nginx = await backend();
    const both = await startSideBySide(t.dir, (port, who) => conf(t.dir, who, port, backs[who]!.port), withNginx);
    proxy = both.proxy;
    nginx = both.nginx;
    ports = both.ports;
  });

  after(async () => {
    await proxy?.stop('SIGQUIT');
    await nginx?.stop('SIGQUIT');
    for (const b of Object.values(backs)) await b.close();
    t?.cleanup();
  });

  const sides = (): Array<'proxy' | 'nginx'> => (withNginx ? ['proxy', 'nginx'] : ['proxy']);

  test('streams reset by the client while the backend sends: the backend connections are closed', async () => {
    for (const who of sides()) {
      const s = await h2(ports[who]);
      const resets: Array<Promise<void>> = [];
      // Reset after some of the body (even i), and before the response head (odd i: the backend has the
      // request, its head comes 300 ms later).
      const before = backs[who]!.served;
      const late: http2.ClientHttp2Stream[] = [];
      for (let i = 0; i < 6; i++) {
        const rq = s.request({ ':path': `/endless?i=${i}&delay=${i % 2 === 0 ? 0 : 300}` });
        rq.on('error', () => undefined);
        if (i % 2 === 0) rq.once('data', () => rq.close(http2.constants.NGHTTP2_CANCEL));
        else late.push(rq);
        resets.push(new Promise((resolve) => rq.on('close', () => resolve())));
      }
      await waitFor(`${who}: the backend asked`, () => backs[who]!.served === before + 6);
      for (const rq of late) rq.close(http2.constants.NGHTTP2_CANCEL);
      await Promise.all(resets);
      await waitFor(`${who}: backend connections of reset streams closed (open: ${backs[who]!.open})`, () => backs[who]!.open === 0, 10000);
      // The connection and the worker still serve.
      assert.equal((await fetchH2(s, { ':path': '/' })).body, 'ok\n', who);
      s.close();
    }
    assert.doesNotMatch(readFileSync(join(t.dir, 'error.log'), 'latin1'), /\[alert\]/);
  });

  test('a stream reset while its cache lookup runs: no backend is kept reading, no key stays "updating"', async () => {
    const b = backs.proxy!;
    const s = await h2(ports.proxy);
    // A stored entry that goes stale, for proxy_cache_use_stale updating.
    assert.equal((await fetchH2(s, { ':path': '/cs/maxage1' })).headers['x-cache'], 'MISS');
    await new Promise((r) => setTimeout(r, 2100));
    const raw = await resetAtOnce(ports.proxy, ['/ce/a', '/ce/b', '/ce/c', '/cs/maxage1']);
    await new Promise((r) => setTimeout(r, 300));
    await waitFor(`backend connections of reset streams closed (open: ${b.open})`, () => b.open === 0, 10000);
    // The reset request did not leave its key marked as being fetched: once the entry is stale (whether the
    // reset request got to refresh it or not), the next request fetches it (EXPIRED), rather than being
    // answered from the stale copy as if an update were under way (UPDATING), then and for good.
    await new Promise((r) => setTimeout(r, 2100));
    const again = await fetchH2(s, { ':path': '/cs/maxage1' });
    assert.equal(again.headers['x-cache'], 'EXPIRED');
    assert.match(again.body, /^\/cs\/maxage1 #/);
    raw.destroy();
    s.close();
    assert.doesNotMatch(readFileSync(join(t.dir, 'error.log'), 'latin1'), /\[alert\]/);
  });

  test('a request with 300 header fields (cookie crumbs among them) is served, as nginx serves it', async () => {
    const got: Record<string, string> = {};
    for (const who of sides()) {
      const s = await h2(ports[who]);
      const headers: http2.OutgoingHttpHeaders = { ':path': '/h' };
      for (let i = 0; i < 300; i++) headers[`x-h${i}`] = `v${i}`;
      // An array goes out as one field per value (the crumbs of RFC 9113 8.2.3).
      headers.cookie = Array.from({ length: 50 }, (_, i) => `c${i}=${i}`);
      const r = await fetchH2(s, headers);
      got[who] = `${r.headers[':status']} ${r.body}`;
      s.close();
    }
    assert.equal(got.proxy, `200 [v0][v299][${Array.from({ length: 50 }, (_, i) => `c${i}=${i}`).join('; ')}]\n`);
    if (withNginx) assert.equal(got.proxy, got.nginx);
  });

  test('CONNECT on an HTTP/2 stream: 400 with an error page, as nginx answers', async () => {
    const got: Record<string, { status: unknown; body: string }> = {};
    for (const who of sides()) {
      const s = await h2(ports[who]);
      const r = await fetchH2(s, { ':method': 'CONNECT', ':authority': 'example.com:443' });
      got[who] = { status: r.headers[':status'], body: r.body };
      // The stream's neighbours are still served.
      assert.equal((await fetchH2(s, { ':path': '/' })).body, 'ok\n', who);
      s.close();
    }
    assert.equal(got.proxy!.status, 400);
    assert.match(got.proxy!.body, /^<html>\r\n<head><title>400 Bad Request<\/title>/);
    if (withNginx) assert.equal(got.nginx!.status, got.proxy!.status);
  });

  test('a cache file cut short or damaged on disk is a MISS, never a part of the body', async () => {
    const s = await h2(ports.proxy);
    const dir = join(t.dir, 'cache-proxy');
    const fileOf = (path: string): string => {
      const walk = (d: string): string[] => readdirSync(d).flatMap((n) => (statSync(join(d, n)).isDirectory() ? walk(join(d, n)) : [join(d, n)]));
      const f = walk(dir).find((p) => readFileSync(p, 'latin1').includes(`"key":"http://127.0.0.1:${backs.proxy!.port}${path}"`));
      assert.ok(f, `cache file of ${path}`);
      return f;
    };
    const damage: Record<string, (f: string) => void> = {
      '/c/truncated': (f) => truncateSync(f, statSync(f).size - 300),
      '/c/grown': (f) => writeFileSync(f, Buffer.concat([readFileSync(f), Buffer.from('trailing garbage')])),
      '/c/headers': (f) => writeFileSync(f, readFileSync(f, 'latin1').replace(/"headers":\[/, '"headers":[7,'), 'latin1'),
      '/c/json': (f) => writeFileSync(f, readFileSync(f, 'latin1').replace(/"key"/, '"key'), 'latin1'),
    };
    for (const [path, spoil] of Object.entries(damage)) {
      const first = await fetchH2(s, { ':path': path });
      assert.equal(first.headers['x-cache'], 'MISS', path);
      const hit = await fetchH2(s, { ':path': path });
      assert.equal(hit.headers['x-cache'], 'HIT', path);
      assert.equal(hit.body, first.body, path);
      spoil(fileOf(path));
      const served = backs.proxy!.served;
      const again = await fetchH2(s, { ':path': path });
      assert.equal(again.headers['x-cache'], 'MISS', `${path}: a damaged entry is not a HIT`);
      // The whole body, fetched anew (the backend numbers its answers).
      assert.equal(again.body.replace(/ #\d+ /, ' '), first.body.replace(/ #\d+ /, ' '), `${path}: the whole body`);
      assert.equal(backs.proxy!.served, served + 1, path);
      // Stored again, whole.
      const next = await fetchH2(s, { ':path': path });
      assert.equal(next.headers['x-cache'], 'HIT', path);
      assert.equal(next.body, again.body, path);
    }
    s.close();
    assert.doesNotMatch(readFileSync(join(t.dir, 'error.log'), 'latin1'), /\[alert\]/);
  });
});

describe('tsgi-proxy review: a cache directory that cannot be made', () => {
  test('is refused at start with the mkdir() line, as nginx -t refuses it (not a cache that stores nothing, or a spinning worker)', () => {
    const t = tempDir('review-cachedir');
    try {
      writeFileSync(join(t.dir, 'afile'), 'x');
      for (const path of [join(t.dir, 'afile/cache'), '/proc/tsgi-review-nope']) {
        const text = `events {}\nhttp {\n  proxy_cache_path ${path} keys_zone=z:1m;\n  server { listen 127.0.0.1:1; location / { proxy_pass http://127.0.0.1:1; proxy_cache z; } }\n}\n`;
        writeFileSync(join(t.dir, 'p.conf'), text);
        const r = proxySync(['-t', '-p', t.dir, '-c', 'p.conf']);
        assert.equal(r.code, 1, r.stderr);
        assert.match(r.stderr, new RegExp(`\\[emerg\\] mkdir\\(\\) "${path}" failed \\((20: Not a directory|2: No such file or directory)\\) in ${join(t.dir, 'p.conf')}:3\n`));
        if (withNginx) {
          writeFileSync(join(t.dir, 'n.conf'), `pid ${t.dir}/n.pid;\n${text}`);
          const n = spawnSync('/usr/sbin/nginx', ['-t', '-p', t.dir, '-c', join(t.dir, 'n.conf'), '-e', join(t.dir, 'n.log'), '-g', 'user root;'], { encoding: 'latin1' });
          assert.equal(n.status, 1, n.stderr);
          assert.match(n.stderr, new RegExp(`mkdir\\(\\) "${path}" failed`));
        }
      }
    } finally {
      t.cleanup();
    }
  });
});
