/**
 * A real tsgi with two Node workers serving a WSGI-style JavaScript app on a uwsgi Unix socket and an HTTP
 * socket at once: the environ, bodies both ways, request lines in the log, and every bad thing a client or
 * an app can do. After each bad thing, a good request must still be served.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { join } from 'node:path';
import { cleanEnv, NODE_APPS, openFds } from '../helpers/node-apps.js';
import { childPids, freePort, httpRequest, startTsgi, stopProcess, tempDir, type RunningProcess } from '../helpers/procs.js';
import { getVars, parseResponse, rawExchange, uwsgiPacket, uwsgiRequest } from '../helpers/uwsgi-client.js';
import { parseResponses, rawHttp } from '../helpers/http-raw.js';

const APP = join(NODE_APPS, 'behaviours.mjs');

describe('node worker: a WSGI-style JS app over uwsgi and HTTP', () => {
  let tsgi: RunningProcess;
  let sock: string;
  let base: string;

  before(async () => {
    const dir = tempDir();
    sock = join(dir, 'app.sock');
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    tsgi = await startTsgi(['--socket', sock, '--http-socket', `127.0.0.1:${port}`, '--processes', '2', '--wsgi-file', APP], { env: cleanEnv() });
  });
  after(async () => {
    const r = await stopProcess(tsgi);
    assert.equal(r.code, 0, tsgi.output());
  });

  async function good(): Promise<void> {
    const r = await uwsgiRequest(sock, getVars('/fine'));
    assert.equal(r.status, 200);
    assert.equal(r.body.toString(), 'ok /fine');
    const h = await httpRequest(`${base}/fine`);
    assert.equal(h.body.toString(), 'ok /fine');
  }

  test('over uwsgi: the answer is an HTTP head and a Content-Length body, then the connection closes', async () => {
    const r = await uwsgiRequest(sock, getVars('/hello'));
    assert.equal(r.statusLine, 'HTTP/1.1 200 OK');
    const headers = new Map(r.headers.map(([k, v]) => [k.toLowerCase(), v]));
    assert.equal(headers.get('content-type'), 'text/plain');
    assert.equal(headers.get('content-length'), '9');
    assert.equal(headers.get('connection'), 'close');
    assert.equal(headers.get('transfer-encoding'), undefined, 'never chunked over uwsgi: the close ends the body');
    assert.equal(r.body.toString(), 'ok /hello');
  });

  test('over HTTP: the same app on the same workers, with keep-alive', async () => {
    const r = await fetch(`${base}/hello`);
    assert.equal(r.status, 200);
    assert.equal(await r.text(), 'ok /hello');
  });

  test('the environ carries the uwsgi vars and the wsgi.* keys', async () => {
    const r = await uwsgiRequest(sock, getVars('/environ?x=1', { PATH_INFO: '/environ', HTTPS: 'on', HTTP_COOKIE: 'a=b' }));
    const env = new Map(r.body.toString().trim().split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)] as [string, string]));
    assert.equal(env.get('REQUEST_METHOD'), 'GET');
    assert.equal(env.get('QUERY_STRING'), 'x=1');
    assert.equal(env.get('HTTP_COOKIE'), 'a=b');
    assert.equal(env.get('REMOTE_ADDR'), '127.0.0.1');
    assert.equal(env.get('SCRIPT_NAME'), '');
    assert.equal(env.get('wsgi.url_scheme'), 'https');
    assert.equal(env.get('wsgi.version'), '1.0');
    assert.equal(env.get('wsgi.multiprocess'), 'true');
    assert.equal(env.get('wsgi.multithread'), 'false');
    assert.equal(env.get('wsgi.run_once'), 'false');
    assert.equal(env.get('wsgi.input.readable'), 'true');
  });

  test('over HTTP the environ is derived as nginx would send it', async () => {
    const r = await httpRequest(`${base}/environ?a=%20b`, { headers: { 'X-Custom-Thing': 'yes', Cookie: 'c=d' } });
    const env = new Map(r.body.toString().trim().split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)] as [string, string]));
    assert.equal(env.get('PATH_INFO'), '/environ');
    assert.equal(env.get('QUERY_STRING'), 'a=%20b');
    assert.equal(env.get('REQUEST_URI'), '/environ?a=%20b');
    assert.equal(env.get('SERVER_PROTOCOL'), 'HTTP/1.1');
    assert.equal(env.get('SERVER_PORT'), new URL(base).port);
    assert.equal(env.get('HTTP_X_CUSTOM_THING'), 'yes');
    assert.equal(env.get('HTTP_COOKIE'), 'c=d');
    assert.equal(env.get('wsgi.url_scheme'), 'http');
  });

  test('a request body arrives whole in wsgi.input (uwsgi and HTTP)', async () => {
    const body = randomBytes(3_000_000);
    const r = await uwsgiRequest(sock, { ...getVars('/echo'), REQUEST_METHOD: 'POST' }, body);
    assert.equal(r.status, 200);
    assert.ok(r.body.equals(body), 'echoed over uwsgi');
    const h = await httpRequest(`${base}/echo`, { method: 'POST', body });
    assert.ok(h.body.equals(body), 'echoed over HTTP');
  });

  test('an app that answers without reading a large body: the answer arrives whole, the body is drained', async () => {
    const body = randomBytes(8 * 1024 * 1024);
    const r = await uwsgiRequest(sock, { ...getVars('/ignore-body'), REQUEST_METHOD: 'POST' }, body);
    assert.equal(r.status, 200);
    assert.equal(r.body.toString(), 'body left unread');
    await good();
  });

  test('wsgi.input stops at CONTENT_LENGTH even when more bytes follow', async () => {
    const packet = uwsgiPacket({ ...getVars('/echo'), REQUEST_METHOD: 'POST', CONTENT_LENGTH: '5' });
    const raw = await rawExchange(sock, Buffer.concat([packet, Buffer.from('12345EXTRA')]));
    assert.equal(parseResponse(raw).body.toString(), '12345');
  });

  test('async iterables, write() and the close() of the iterable', async () => {
    assert.equal((await uwsgiRequest(sock, getVars('/stream'))).body.toString(), 'chunk 0\nchunk 1\nchunk 2\nchunk 3\nchunk 4\n');
    assert.equal((await uwsgiRequest(sock, getVars('/write'))).body.toString(), 'written and returned');
    assert.equal((await uwsgiRequest(sock, getVars('/closing'))).body.toString(), 'closed body');
    await tsgi.waitFor(/APP-CLOSE-CALLED/);
  });

  test('start_response with exc_info before the head is out replaces the status', async () => {
    const r = await uwsgiRequest(sock, getVars('/exc-info'));
    assert.equal(r.status, 503);
    assert.equal(r.body.toString(), 'replaced status');
  });

  test('HEAD is answered without a body', async () => {
    const raw = await rawExchange(sock, uwsgiPacket({ ...getVars('/hello'), REQUEST_METHOD: 'HEAD' }));
    assert.equal(parseResponse(raw).status, 200);
    assert.equal(parseResponse(raw).body.length, 0);
  });

  test("each request is logged in uWSGI's format", async () => {
    await uwsgiRequest(sock, getVars('/logged-uwsgi'));
    await tsgi.waitFor(/\[pid: \d+\|app: 0\|req: \d+\/\d+\] 127\.0\.0\.1 \(\) \{10 vars in \d+ bytes\} \[\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}\] GET \/logged-uwsgi => generated 16 bytes in \d+ msecs \(HTTP\/1\.1 200\) \d+ headers in \d+ bytes \(1 switches on core 0\)/);
    await httpRequest(`${base}/logged-http?x`);
    await tsgi.waitFor(/\[pid: \d+\|app: 0\|req: \d+\/\d+\] 127\.0\.0\.1 \(\) \{\d+ vars in \d+ bytes\} \[[^\]]+\] GET \/logged-http\?x => generated 15 bytes in \d+ msecs \(HTTP\/1\.1 200\) \d+ headers in \d+ bytes \(1 switches on core 0\)/);
  });

  test('a body longer than its Content-Length is cut to it and logged; a kept connection goes on', async () => {
    const u = await uwsgiRequest(sock, getVars('/too-long'));
    assert.equal(u.body.toString(), 'Hello');
    const { bytes } = await rawHttp(Number(new URL(base).port), 'GET /too-long HTTP/1.1\r\nHost: x\r\n\r\nGET /fine HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    assert.deepEqual(parseResponses(bytes).map((r) => r.body.toString()), ['Hello', 'ok /fine'], bytes.toString('latin1'));
    await tsgi.waitFor(/the app gave 9 body bytes more than its Content-Length \(GET \/too-long\); they were not sent/);
  });

  test('an app that throws: 500, the stack in the log, the worker lives on', async () => {
    const before = childPids(tsgi.pid).sort();
    const r = await uwsgiRequest(sock, getVars('/raise'));
    assert.equal(r.status, 500);
    assert.equal(r.body.toString(), 'Internal Server Error\n');
    await tsgi.waitFor(/exception in the app \(GET \/raise\), answered 500:\nError: boom from the app\n\s+at application \(file:\/\/.*behaviours\.mjs:\d+:\d+\)/);
    const h = await httpRequest(`${base}/raise`);
    assert.equal(h.status, 500);
    await good();
    assert.deepEqual(childPids(tsgi.pid).sort(), before, 'no worker was replaced');
  });

  test('an app whose promise rejects: 500 and the stack in the log', async () => {
    const r = await uwsgiRequest(sock, getVars('/reject'));
    assert.equal(r.status, 500);
    await tsgi.waitFor(/exception in the app \(GET \/reject\), answered 500:\nError: rejected by the app/);
    await good();
  });

  test('an app that returns a non-iterable: 500 and a log line saying so', async () => {
    const r = await uwsgiRequest(sock, getVars('/none'));
    assert.equal(r.status, 500);
    await tsgi.waitFor(/the app returned undefined, which is not an iterable of strings or Uint8Arrays/);
    await good();
  });

  test('an app that fails after the head went out: the response is cut, the next one served', async () => {
    const raw = await rawExchange(sock, uwsgiPacket(getVars('/late-error')));
    assert.match(raw.toString(), /^HTTP\/1\.1 200 OK[\s\S]*partial $/);
    await tsgi.waitFor(/exception in the app after the response started \(GET \/late-error\); response cut:\nError: failed after the headers/);
    await good();
  });

  test('an unhandled rejection is logged and the worker goes on', async () => {
    const before = childPids(tsgi.pid).sort();
    const r = await uwsgiRequest(sock, getVars('/unhandled'));
    assert.equal(r.body.toString(), 'answered anyway');
    await tsgi.waitFor(/unhandled promise rejection \(the worker goes on\):\nError: nobody catches this rejection/);
    await good();
    assert.deepEqual(childPids(tsgi.pid).sort(), before, 'no worker was replaced');
  });

  test('an app that never answers: each client that leaves releases its connection', async () => {
    const workers = childPids(tsgi.pid);
    const baseline = new Map(workers.map((p) => [p, openFds(p)]));
    for (let round = 0; round < 3; round++) {
      await Promise.all(Array.from({ length: 20 }, () => new Promise<void>((resolve) => {
        const c = net.connect(sock, () => {
          c.write(uwsgiPacket(getVars('/never')));
          setTimeout(() => c.destroy(), 50);
        });
        c.on('close', () => resolve());
        c.on('error', () => resolve());
      })));
      const h = await fetch(`${base}/never`, { signal: AbortSignal.timeout(100) }).catch((e: Error) => e);
      assert.ok(h instanceof Error, 'the HTTP client gave up');
    }
    const gone = (): number => tsgi.output().split('client went away before the response was complete (GET /never)').length - 1;
    for (let i = 0; gone() < 63 && i < 600; i++) await new Promise((r) => setTimeout(r, 50));
    assert.equal(gone(), 63, 'every client that left is logged');
    // Every connection the workers held for those clients is closed (the count returns to what it was).
    for (const pid of workers) {
      for (let i = 0; openFds(pid) > baseline.get(pid)! && i < 200; i++) await new Promise((r) => setTimeout(r, 50));
      assert.ok(openFds(pid) <= baseline.get(pid)!, `worker ${pid} holds ${openFds(pid)} descriptors, ${baseline.get(pid)} before`);
    }
    await good();
  });

  test('bad input: a truncated header is logged and closed, the next request served', async () => {
    const raw = await rawExchange(sock, Buffer.from([0, 10]), { end: true });
    assert.equal(raw.length, 0);
    await tsgi.waitFor(/bad request: truncated uwsgi header \(2 of 4 bytes\); connection closed/);
    await good();
  });

  test('bad input: vars longer than the packet', async () => {
    const bogus = Buffer.from([0, 8, 0, 0, 200, 0, 65, 66, 67, 68, 69, 70]);
    const raw = await rawExchange(sock, bogus, { end: true });
    assert.equal(raw.length, 0);
    await tsgi.waitFor(/bad request: uwsgi key at offset 6 runs past the packet end; connection closed/);
    await good();
  });

  test('bad input: a packet over buffer-size is refused without reading it', async () => {
    const raw = await rawExchange(sock, uwsgiPacket(getVars('/', { HTTP_X_BIG: 'x'.repeat(6000) })));
    assert.equal(raw.length, 0);
    await tsgi.waitFor(/bad request: uwsgi packet of \d+ bytes is larger than the 4096 allowed \(buffer-size; raise it/);
    await good();
  });

  test('bad input: a uwsgi packet with another modifier1 is refused', async () => {
    const raw = await rawExchange(sock, uwsgiPacket(getVars('/'), 5));
    assert.equal(raw.length, 0);
    await tsgi.waitFor(/bad request: uwsgi modifier1 5 is not a request for an app/);
    await good();
  });

  test('bad input: random bytes', async () => {
    for (let i = 0; i < 5; i++) {
      const raw = await rawExchange(sock, randomBytes(2000), { end: true });
      assert.ok(raw.length === 0 || /^HTTP\/1\.1 /.test(raw.toString('latin1')), 'closed, or answered as a request');
    }
    await good();
  });

  test('bad input: the client closes in the middle of the body', async () => {
    await new Promise<void>((resolve) => {
      const c = net.connect(sock, () => {
        c.write(uwsgiPacket({ ...getVars('/echo'), REQUEST_METHOD: 'POST', CONTENT_LENGTH: '100000' }));
        c.end(Buffer.alloc(1000, 1));
      });
      c.on('close', () => resolve());
      c.on('error', () => resolve());
      c.resume();
    });
    await tsgi.waitFor(/client closed the connection with 99000 body bytes unsent \(POST \/echo\)/);
    await good();
  });

  test('bad input: a connection that sends nothing is dropped after socket-timeout', async () => {
    const raw = await rawExchange(sock, Buffer.alloc(0), { timeoutMs: 30_000 });
    assert.equal(raw.length, 0);
    await tsgi.waitFor(/no complete uwsgi request within socket-timeout; connection closed/);
    await good();
  });

  test('bad input over HTTP: a malformed request line is answered 400', async () => {
    const { rawHttp } = await import('../helpers/http-raw.js');
    const r = await rawHttp(Number(new URL(base).port), 'GARBAGE\r\n\r\n');
    assert.match(r.bytes.toString(), /^HTTP\/1\.1 400 Bad Request/);
    await good();
  });

  test('an app that kills its worker: the connection closes, the worker is respawned', async () => {
    const raw = await rawExchange(sock, uwsgiPacket(getVars('/exit')));
    assert.equal(raw.length, 0, 'no response from a worker that died');
    await tsgi.waitFor(/worker \d \(pid: \d+\) exited with status 3; respawning/);
    await tsgi.waitFor(/exited with status 3; respawning\ntsgi: spawned worker \d \(pid: \d+\)/);
    await good();
  });
});

describe('node worker: a client that stops reading its response', () => {
  let tsgi: RunningProcess;
  let sock: string;
  let port: number;

  before(async () => {
    const dir = tempDir();
    sock = join(dir, 'app.sock');
    port = await freePort();
    tsgi = await startTsgi(['--socket', sock, '--http-socket', `127.0.0.1:${port}`, '--processes', '1', '--socket-timeout', '1', '--wsgi-file', APP], { env: cleanEnv() });
  });
  after(async () => {
    const r = await stopProcess(tsgi);
    assert.equal(r.code, 0, tsgi.output());
  });

  const line = /the client did not take the response within socket-timeout \(1 s\); connection closed/g;

  /**
   * Sends `request` and reads nothing until the worker has logged `times` stalled clients; then reads what
   * is left and resolves when the connection ends (it would never end had the worker kept it).
   */
  async function stalled(connect: () => net.Socket, request: Buffer | string, times: number): Promise<void> {
    const c = connect();
    c.on('connect', () => c.write(request));
    c.pause();
    c.on('error', () => {});
    const closed = new Promise<void>((resolve) => c.on('close', () => resolve()));
    for (let waited = 0; (tsgi.output().match(line)?.length ?? 0) < times; waited += 50) {
      if (waited > 30_000) {
        c.destroy();
        assert.fail(`no stalled client logged; output:\n${tsgi.output()}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    c.resume();
    let timer: NodeJS.Timeout | undefined;
    const kept = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`the stalled connection was logged but not closed; output:\n${tsgi.output()}`)), 30_000);
    });
    try {
      await Promise.race([closed, kept]);
    } finally {
      clearTimeout(timer);
      c.destroy();
    }
  }

  test('over uwsgi: the connection is closed after socket-timeout and logged; an app that takes its time is not', async () => {
    await stalled(() => net.connect(sock), uwsgiPacket(getVars('/big-stream', { QUERY_STRING: '16' })), 1);
    // Silent for longer than socket-timeout, then answering: the client gets it.
    const r = await uwsgiRequest(sock, getVars('/sleep', { QUERY_STRING: '1.5' }));
    assert.equal(r.status, 200);
  });

  test('over HTTP: the same', async () => {
    await stalled(() => net.connect(port, '127.0.0.1'), 'GET /big-stream?16 HTTP/1.1\r\nHost: x\r\n\r\n', 2);
    const h = await httpRequest(`http://127.0.0.1:${port}/sleep?1.5`);
    assert.equal(h.status, 200);
  });
});
