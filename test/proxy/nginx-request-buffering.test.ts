/**
 * `proxy_request_buffering off` / `uwsgi_request_buffering off` next to the real nginx (Debian's 1.22.1): the
 * backend (made here) sees the request and the first part of its body while the client is still sending the
 * rest; a body of unknown length goes chunked with proxy_http_version 1.1; once a body byte went to a backend
 * that then fails, no other backend is tried (502), while a backend that refused the connection is passed
 * over even for a POST; client_max_body_size still gives 413. The same with uwsgi_pass to the real uWSGI.
 * Without nginx (or root) tsgi-proxy is checked alone against what nginx did.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, createServer as createTcpServer, type Server as TcpServer } from 'node:net';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { canConnect, freePort, have, haveUwsgiPython, parseRaw, run, startSideBySide, tempDir, waitFor, type Proc, type RawResponse } from './helpers.js';

const withNginx = have('/usr/sbin/nginx') && process.getuid?.() === 0;

/** Sends the head and `first`, waits until `seen()` is true (or 1.5 s), then sends `rest`; reads to the close. */
function slowPost(port: number, head: string, first: string, rest: string, seen: () => boolean): Promise<{ res: RawResponse; early: boolean }> {
  return new Promise((res) => {
    const s = connect(port, '127.0.0.1');
    let out = '';
    let early = false;
    s.on('data', (d: Buffer) => (out += d.toString('latin1')));
    s.on('close', () => res({ res: parseRaw(out), early }));
    s.on('connect', () => {
      s.write(head + first);
      const started = Date.now();
      const poll = setInterval(() => {
        if (seen() || Date.now() - started > 1500) {
          clearInterval(poll);
          early = seen();
          s.write(rest);
        }
      }, 20);
    });
  });
}

const conf = (port: number, back: number, dead: number, cutter: number, uw: number): string => `events {}
http {
  access_log off;
  upstream failover { server 127.0.0.1:${dead}; server 127.0.0.1:${back}; }
  upstream cut { server 127.0.0.1:${cutter}; server 127.0.0.1:${back}; }
  server {
    listen 127.0.0.1:${port};
    proxy_request_buffering off;
    location /stream { proxy_pass http://127.0.0.1:${back}; }
    location /chunked { proxy_http_version 1.1; proxy_pass http://127.0.0.1:${back}; }
    location /failover { proxy_pass http://failover; }
    location /cut { proxy_pass http://cut; }
    location /small { client_max_body_size 10; proxy_pass http://127.0.0.1:${back}; }
    location /buffered { proxy_request_buffering on; proxy_pass http://cut; }
    location /uwsgi { uwsgi_request_buffering off; uwsgi_param REQUEST_METHOD $request_method; uwsgi_param CONTENT_LENGTH $content_length; uwsgi_pass 127.0.0.1:${uw}; }
  }
}
`;

describe('request_buffering off next to nginx', () => {
  let t: ReturnType<typeof tempDir>;
  let proxy: Proc;
  let nginx: Proc | undefined;
  let uwsgi: Proc | undefined;
  let backend: Server;
  let cutter: TcpServer;
  const ports = { proxy: 0, nginx: 0 };
  /** What the backend has received of the request in progress, by the X-Who header. */
  const partial = new Map<string, string>();
  let cutHits = 0;

  before(async () => {
    t = tempDir('reqbuf');
    const back = await freePort();
    const dead = await freePort();
    const cut = await freePort();
    const uw = await freePort();
    backend = createServer((req: IncomingMessage, res) => {
      const who = String(req.headers['x-who'] ?? '');
      let body = '';
      partial.set(who, '');
      req.on('data', (d: Buffer) => {
        body += d.toString('latin1');
        partial.set(who, body);
      });
      req.on('end', () => res.end(`${req.method} ${req.url} cl=${req.headers['content-length'] ?? '-'} te=${req.headers['transfer-encoding'] ?? '-'} body=${body}\n`));
    }).listen(back, '127.0.0.1');
    // Reads a little of the request, then closes: a failure after body bytes were sent.
    cutter = createTcpServer((s) => {
      cutHits++;
      s.once('data', () => setTimeout(() => s.destroy(), 50));
    }).listen(cut, '127.0.0.1');
    if (haveUwsgiPython()) {
      writeFileSync(join(t.dir, 'app.py'), [
        'def application(env, start):',
        "    start('200 OK', [('Content-Type', 'text/plain')])",
        "    return [('%s cl=%s body=%s\\n' % (env['REQUEST_METHOD'], env.get('CONTENT_LENGTH'), env['wsgi.input'].read().decode())).encode()]",
        '',
      ].join('\n'));
      uwsgi = run('uwsgi', ['--plugin', 'python3', '--socket', `127.0.0.1:${uw}`, '--wsgi-file', join(t.dir, 'app.py'), '--disable-logging', '--die-on-term'], { cwd: t.dir });
      await waitFor('uwsgi', () => canConnect(uw));
    }
    const both = await startSideBySide(t.dir, (port) => conf(port, back, dead, cut, uw), withNginx);
    ({ proxy, nginx } = both);
    Object.assign(ports, both.ports);
  });

  after(async () => {
    await proxy?.stop('SIGQUIT');
    await nginx?.stop('SIGQUIT');
    await uwsgi?.stop('SIGTERM');
    backend?.close();
    cutter?.close();
    t?.cleanup();
  });

  const post = (path: string, who: string, body: string, extra = ''): string =>
    `POST ${path} HTTP/1.1\r\nHost: localhost\r\nX-Who: ${who}\r\nConnection: close\r\n${extra}\r\n${body}`;

  for (const who of ['proxy', 'nginx'] as const) {
    test(`${who}: streamed, chunked, retried only before a body byte went out, 413`, { skip: who === 'nginx' && !withNginx ? 'nginx is not installed or not root' : false }, async () => {
      const port = ports[who];
      // The backend has the first half while the client still holds the second.
      const a = await slowPost(port, post('/stream', `${who}-a`, '', 'Content-Length: 10\r\n'), 'hello', 'world', () => partial.get(`${who}-a`) === 'hello');
      assert.equal(a.early, true, 'the body is passed as it arrives');
      assert.equal(a.res.body, 'POST /stream cl=10 te=- body=helloworld\n');
      // Unknown length and HTTP/1.1 to the backend: chunked, also as it arrives.
      const b = await slowPost(port, post('/chunked', `${who}-b`, '', 'Transfer-Encoding: chunked\r\n'), '5\r\nhello\r\n', '5\r\nworld\r\n0\r\n\r\n', () => partial.get(`${who}-b`) === 'hello');
      assert.equal(b.early, true);
      assert.equal(b.res.body, 'POST /chunked cl=- te=chunked body=helloworld\n');
      // A refused connection sends nothing: the next server gets the POST.
      const c = await slowPost(port, post('/failover', `${who}-c`, 'abc', 'Content-Length: 3\r\n'), '', '', () => true);
      assert.equal(c.res.body, 'POST /failover cl=3 te=- body=abc\n');
      // A server that took body bytes and failed: 502, the other one is not tried.
      const before = cutHits;
      const d = await slowPost(port, post('/cut', `${who}-d`, 'abc', 'Content-Length: 3\r\n'), '', '', () => true);
      assert.equal(d.res.status, 502);
      assert.equal(cutHits, before + 1);
      assert.equal(partial.has(`${who}-d`), false);
      // With the body buffered, the same failure of a GET (with a body) is retried on the next server.
      const e = await slowPost(port, `GET /buffered HTTP/1.1\r\nHost: localhost\r\nX-Who: ${who}-e\r\nConnection: close\r\nContent-Length: 3\r\n\r\nabc`, '', '', () => true);
      assert.equal(e.res.body, 'GET /buffered cl=3 te=- body=abc\n');
      // client_max_body_size still applies.
      const f = await slowPost(port, post('/small', `${who}-f`, '', 'Transfer-Encoding: chunked\r\n'), '', 'b\r\nhello world\r\n0\r\n\r\n', () => true);
      assert.equal(f.res.status, 413);
      const g = await slowPost(port, post('/small', `${who}-g`, '', 'Content-Length: 11\r\n'), '', 'hello world', () => true);
      assert.equal(g.res.status, 413);
      if (uwsgi !== undefined) {
        const u = await slowPost(port, post('/uwsgi', `${who}-u`, '', 'Content-Length: 10\r\n'), 'hello', 'world', () => true);
        assert.equal(u.res.body, 'POST cl=10 body=helloworld\n');
      }
    });
  }
});
