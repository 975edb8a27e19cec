/**
 * Upstream groups in front of several real uWSGI processes: round-robin spread and weights, failover of
 * idempotent requests, the non-idempotent rule, backup servers, max_fails, http_503 retries, hashing, and
 * response buffering (a slow client does not hold the backend). The persistent link is tested against a
 * small fake tsgi backend in this process (tsgi's side does not exist yet) and against real uWSGI.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { decodePacket } from '../../src/protocol/uwsgi.js';
import { freePort, get, haveUwsgiPython, readText, startProxy, startUwsgi, tempDir, waitFor, type Proc } from './helpers.js';

const APP = `import os, time
def application(environ, start_response):
    name = os.environ.get('BACKEND', '?')
    path = environ['PATH_INFO']
    if path == '/crash' and name == os.environ.get('CRASHER'):
        os._exit(1)
    if path == '/busy' and name == os.environ.get('CRASHER'):
        start_response('503 Service Unavailable', [('Content-Type', 'text/plain')])
        return [b'busy ' + name.encode()]
    if path == '/big':
        start_response('200 OK', [('Content-Type', 'application/octet-stream')])
        return [b'x' * (4 * 1024 * 1024)]
    environ['wsgi.input'].read(int(environ.get('CONTENT_LENGTH') or 0))
    start_response('200 OK', [('Content-Type', 'text/plain')])
    return [name.encode()]
`;

const skip = haveUwsgiPython() ? false : 'the real uWSGI with the python3 plugin is not installed (Debian uwsgi, uwsgi-plugin-python3)';

/** A fake tsgi backend speaking the persistent-link contract of docs/protocol-keepalive.md. */
function fakeTsgi(path: string, honour: boolean | 'split' | 'silent'): Promise<{ server: Server; connections: () => number; requests: () => number }> {
  let conns = 0;
  let reqs = 0;
  const server = createServer((s: Socket) => {
    conns++;
    let buf = Buffer.alloc(0);
    s.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      for (;;) {
        const p = decodePacket(buf, 65535);
        if ('need' in p) return;
        if ('error' in p) {
          s.destroy();
          return;
        }
        const vars = new Map(p.vars);
        const len = Number(vars.get('CONTENT_LENGTH') || 0);
        if (buf.length < p.headerEnd + len) return;
        buf = buf.subarray(p.headerEnd + len);
        reqs++;
        const body = `conn ${conns} req ${reqs} ka ${vars.get('TSGI_KEEPALIVE')}`;
        if (honour === 'silent') continue;
        if (honour === 'split') {
          // Head and half the body now, the rest in a later turn: the relay sends what it has, then the end.
          const whole = `HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Tsgi-Keepalive: 1\r\nContent-Length: ${body.length * 2}\r\n\r\n${body}`;
          s.write(whole);
          setTimeout(() => s.write(body), 50);
        } else if (honour) s.write(`HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Tsgi-Keepalive: 1\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
        else s.end(`HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n${body}`);
      }
    });
    s.on('error', () => {});
  });
  return new Promise((res) => server.listen(path, () => res({ server, connections: () => conns, requests: () => reqs })));
}

describe('upstream groups, failover and links', { skip }, () => {
  let t: ReturnType<typeof tempDir>;
  let port: number;
  let proxy: Proc;
  const procs: Proc[] = [];
  const ports: number[] = [];
  let fakeKeep: Awaited<ReturnType<typeof fakeTsgi>>;
  let fakePlain: Awaited<ReturnType<typeof fakeTsgi>>;
  let fakeSplit: Awaited<ReturnType<typeof fakeTsgi>>;
  let fakeSilent: Awaited<ReturnType<typeof fakeTsgi>>;

  before(async () => {
    t = tempDir('ups');
    writeFileSync(join(t.dir, 'app.py'), APP);
    port = await freePort();
    for (let i = 0; i < 4; i++) ports.push(await freePort());
    const deadPort = await freePort();
    // a, b, c serve; "b" crashes on /crash and answers 503 on /busy. d is a backup.
    for (const [i, name] of ['a', 'b', 'c', 'd'].entries()) {
      procs.push(await startUwsgi(t.dir, `127.0.0.1:${ports[i]}`, 'app.py', ['--env', `BACKEND=${name}`, '--env', 'CRASHER=b', '--master', '--processes', '1']));
    }
    // A single-process backend for the buffering test.
    procs.push(await startUwsgi(t.dir, join(t.dir, 'one.sock'), 'app.py', ['--env', 'BACKEND=one', '--processes', '1']));
    fakeKeep = await fakeTsgi(join(t.dir, 'tsgi.sock'), true);
    fakePlain = await fakeTsgi(join(t.dir, 'plain.sock'), false);
    fakeSplit = await fakeTsgi(join(t.dir, 'split.sock'), 'split');
    fakeSilent = await fakeTsgi(join(t.dir, 'silent.sock'), 'silent');
    const [pa, pb, pc, pd] = ports;
    writeFileSync(
      join(t.dir, 'nginx.conf'),
      `worker_processes 1;
events {}
http {
  access_log off;
  error_log ${t.dir}/error.log;
  upstream rr { server 127.0.0.1:${pa}; server 127.0.0.1:${pb}; server 127.0.0.1:${pc}; }
  upstream nofail { server 127.0.0.1:${pa} max_fails=0; server 127.0.0.1:${pb} max_fails=0; }
  upstream weighted { server 127.0.0.1:${pa} weight=3; server 127.0.0.1:${pc}; }
  upstream withdead { server 127.0.0.1:${deadPort} max_fails=1 fail_timeout=60s; server 127.0.0.1:${pa}; }
  upstream withbackup { server 127.0.0.1:${deadPort}; server 127.0.0.1:${pd} backup; }
  upstream hashed { hash $arg_k consistent; server 127.0.0.1:${pa}; server 127.0.0.1:${pb}; server 127.0.0.1:${pc}; }
  upstream iphash { ip_hash; server 127.0.0.1:${pa}; server 127.0.0.1:${pb}; server 127.0.0.1:${pc}; }
  upstream leastconn { least_conn; server 127.0.0.1:${pa}; server 127.0.0.1:${pc}; }
  upstream tsgi { server unix:${t.dir}/tsgi.sock; keepalive 4; }
  upstream split { server unix:${t.dir}/split.sock; }
  server {
    listen 127.0.0.1:${port};
    include uwsgi_params;
    location /rr/ { rewrite ^/rr(/.*)$ $1 break; uwsgi_pass rr; }
    location /weighted/ { uwsgi_pass weighted; }
    location /withdead/ { uwsgi_pass withdead; }
    location /withbackup/ { uwsgi_pass withbackup; }
    location /hashed/ { uwsgi_pass hashed; }
    location /iphash/ { uwsgi_pass iphash; }
    location /leastconn/ { uwsgi_pass leastconn; }
    location /retry503 { rewrite ^ /busy break; uwsgi_pass nofail; uwsgi_next_upstream error timeout http_503; }
    location /no503 { rewrite ^ /busy break; uwsgi_pass nofail; }
    location /postcrash { rewrite ^ /crash break; uwsgi_pass nofail; }
    location /one/ { rewrite ^/one(/.*)$ $1 break; uwsgi_pass unix:${t.dir}/one.sock; }
    location /unbuffered/ { rewrite ^/unbuffered(/.*)$ $1 break; uwsgi_pass unix:${t.dir}/one.sock; uwsgi_buffering off; }
    location /tsgi { uwsgi_pass tsgi; }
    location /plainlink { uwsgi_pass unix:${t.dir}/plain.sock; }
    location /off { uwsgi_pass tsgi; uwsgi_tsgi_keepalive off; }
    location /split { uwsgi_pass split; }
    location /silent-read { uwsgi_pass unix:${t.dir}/silent.sock; uwsgi_read_timeout 1s; }
    location /silent-both { uwsgi_pass unix:${t.dir}/silent.sock; uwsgi_read_timeout 1s; uwsgi_send_timeout 1s; }
  }
}
`,
    );
    proxy = await startProxy(t.dir, 'nginx.conf', port);
  });

  after(async () => {
    await proxy?.stop('SIGQUIT');
    for (const p of procs) await p.stop('SIGTERM');
    fakeKeep?.server.close();
    fakePlain?.server.close();
    fakeSplit?.server.close();
    fakeSilent?.server.close();
    t?.cleanup();
  });

  async function names(path: string, n: number, headers: Record<string, string> = {}): Promise<string[]> {
    const out: string[] = [];
    for (let i = 0; i < n; i++) {
      const r = await get(port, path, headers);
      assert.equal(r.status, 200, r.raw);
      out.push(r.body);
    }
    return out;
  }

  test('round robin spreads requests evenly over the servers', async () => {
    const got = await names('/rr/x', 9);
    assert.deepEqual(['a', 'b', 'c'].map((n) => got.filter((g) => g === n).length), [3, 3, 3]);
  });

  test('weights: a server with weight=3 gets three requests of every four', async () => {
    const got = await names('/weighted/x', 8);
    assert.equal(got.filter((g) => g === 'a').length, 6);
    assert.equal(got.filter((g) => g === 'c').length, 2);
  });

  test('a GET whose backend dies mid-request is retried on the next server: no failed GET', async () => {
    const got = await names('/rr/crash', 6);
    assert.ok(got.every((g) => g === 'a' || g === 'c'), got.join());
    await waitFor('premature close logged', () => /upstream prematurely closed connection/.test(readText(join(t.dir, 'error.log'))));
  });

  test('a POST is not repeated once it reached a backend (non-idempotent rule): 502', async () => {
    let saw502 = false;
    for (let i = 0; i < 6 && !saw502; i++) {
      const r = await get(port, '/postcrash', { 'Content-Length': '0' }, 'POST');
      if (r.status === 502) saw502 = true;
      else assert.equal(r.status, 200);
    }
    assert.ok(saw502, 'the POST that reached the crashing backend must not be retried');
  });

  test('a dead server is tried once, then left out for fail_timeout (max_fails=1)', async () => {
    const before = (readText(join(t.dir, 'error.log')).match(/ECONNREFUSED/g) ?? []).length;
    const got = await names('/withdead/x', 6);
    assert.ok(got.every((g) => g === 'a'));
    const after = (readText(join(t.dir, 'error.log')).match(/ECONNREFUSED/g) ?? []).length;
    await waitFor('log flushed', () => (readText(join(t.dir, 'error.log')).match(/ECONNREFUSED/g) ?? []).length >= before + 1);
    assert.ok(after - before <= 1, `tried the dead server ${after - before} times`);
  });

  test('a backup server answers only when the primary servers are down', async () => {
    const got = await names('/withbackup/x', 3);
    assert.deepEqual(got, ['d', 'd', 'd']);
  });

  test('uwsgi_next_upstream http_503 moves on from a 503; without it the 503 is passed through', async () => {
    const got = await names('/retry503', 6);
    assert.ok(got.every((g) => g === 'a'), got.join());
    let saw503 = false;
    for (let i = 0; i < 3; i++) if ((await get(port, '/no503')).status === 503) saw503 = true;
    assert.ok(saw503);
  });

  test('hash $arg_k consistent and ip_hash keep a key on one server', async () => {
    for (const k of ['alpha', 'beta', 'gamma']) {
      const got = await names(`/hashed/x?k=${k}`, 4);
      assert.equal(new Set(got).size, 1, `${k}: ${got}`);
    }
    assert.equal(new Set(await names('/iphash/x', 5)).size, 1);
  });

  test('least_conn still serves from every server when idle', async () => {
    const got = await names('/leastconn/x', 4);
    assert.deepEqual(new Set(got), new Set(['a', 'c']));
  });

  test('response buffering: a client that never reads does not hold the (single-process) backend', async () => {
    const slow = connect(port, '127.0.0.1');
    slow.write('GET /one/big HTTP/1.1\r\nHost: x\r\n\r\n');
    slow.pause();
    await new Promise((r) => slow.once('readable', r));
    try {
      const r = await get(port, '/one/small');
      assert.equal(r.status, 200);
      assert.equal(r.body, 'one');
    } finally {
      slow.destroy();
    }
  });

  test('uwsgi_buffering off: a client that stops reading pauses the backend, and the whole body arrives once it reads again', async () => {
    const slow = connect(port, '127.0.0.1');
    slow.write('GET /unbuffered/big HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    slow.pause();
    // Wait until the proxy has stopped reading the backend: the bytes waiting in the kernel stop growing.
    await new Promise((r) => slow.once('readable', r));
    const chunks: Buffer[] = [];
    await new Promise<void>((resolve, reject) => {
      slow.on('data', (c: Buffer) => chunks.push(c));
      slow.on('end', resolve);
      slow.on('error', reject);
      setTimeout(() => slow.resume(), 500);
    });
    const all = Buffer.concat(chunks).toString('latin1');
    const body = all.slice(all.indexOf('\r\n\r\n') + 4);
    assert.match(all, /^HTTP\/1\.1 200 /);
    const decoded = /transfer-encoding: chunked/i.test(all.slice(0, all.indexOf('\r\n\r\n')))
      ? body.replace(/(?:^|\r\n)[0-9a-f]+\r\n/gi, '')
      : body;
    assert.equal(decoded.replace(/\r\n$/, '').length, 4 * 1024 * 1024);
    assert.ok(/^x+$/.test(decoded.replace(/\r\n$/, '')), 'the body is the backend\'s bytes only');
  });

  test('a tsgi backend that answers X-Tsgi-Keepalive keeps one connection for sequential requests', async () => {
    const before = fakeKeep.connections();
    const bodies = await names('/tsgi', 20);
    assert.ok(bodies.every((b) => b.endsWith('ka 2')), 'the proxy offers keep-alive with pipelining (TSGI_KEEPALIVE=2)');
    assert.equal(fakeKeep.connections() - before, 1);
    const r = await get(port, '/tsgi');
    assert.equal(r.headers.has('x-tsgi-keepalive'), false, 'the link header is not passed to clients');
  });

  test('a backend without the extension gets one connection per request, read to close', async () => {
    const before = fakePlain.connections();
    await names('/plainlink', 5);
    assert.equal(fakePlain.connections() - before, 5);
  });

  test('uwsgi_tsgi_keepalive off sends no TSGI_KEEPALIVE var', async () => {
    const r = await get(port, '/off');
    assert.match(r.body, /ka undefined$/);
  });

  test('a kept link whose response arrives in parts relays it whole and is kept', async () => {
    const before = fakeSplit.connections();
    for (let i = 0; i < 3; i++) {
      const r = await get(port, '/split');
      assert.equal(r.status, 200);
      assert.match(r.body, /^(conn \d+ req \d+ ka 2){2}$/);
    }
    assert.equal(fakeSplit.connections() - before, 1);
  });

  test('a backend that never answers: 504 after the read timeout, logged as reading the response header', async () => {
    for (const path of ['/silent-read', '/silent-both']) {
      const r = await get(port, path);
      assert.equal(r.status, 504, path);
    }
    // The error log is written after the response (asynchronously): wait for both lines.
    const count = () => readText(join(t.dir, 'error.log')).match(/upstream timed out \(110: Connection timed out\) while reading response header from upstream/g)?.length ?? 0;
    await waitFor('two read-timeout lines in error.log', () => count() >= 2).catch(() => {});
    const log = readText(join(t.dir, 'error.log'));
    assert.equal(log.match(/upstream timed out \(110: Connection timed out\) while reading response header from upstream/g)?.length, 2, log);
  });
});
