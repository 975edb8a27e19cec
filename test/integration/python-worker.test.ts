/**
 * A real tsgi with two Python workers on a Unix socket, spoken to in raw uwsgi: PEP 3333 behaviour, bad input
 * and failing apps. After every bad thing, a good request must still be served.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { repoRoot } from '../helpers/paths.js';
import { activatedEnv, sharedVenv, startTsgi, stopProcess, tempDir, type RunningProcess } from '../helpers/procs.js';
import { getVars, parseResponse, rawExchange, uwsgiPacket, uwsgiRequest } from '../helpers/uwsgi-client.js';

const APP = join(repoRoot, 'test/fixtures/apps/behaviours.py');

describe('python worker over uwsgi', () => {
  let tsgi: RunningProcess;
  let sock: string;
  let dir: string;

  before(async () => {
    dir = tempDir();
    sock = join(dir, 'app.sock');
    tsgi = await startTsgi(['--socket', sock, '--processes', '2', '--wsgi-file', APP], { env: activatedEnv(sharedVenv()) });
  });
  after(async () => {
    const r = await stopProcess(tsgi);
    assert.equal(r.code, 0, tsgi.output());
  });

  async function good(): Promise<void> {
    const r = await uwsgiRequest(sock, getVars('/fine'));
    assert.equal(r.status, 200);
    assert.equal(r.body.toString(), 'ok /fine');
  }

  test('a GET is answered with status line, headers and a Content-Length body', async () => {
    const r = await uwsgiRequest(sock, getVars('/hello'));
    assert.equal(r.statusLine, 'HTTP/1.1 200 OK');
    assert.deepEqual(r.headers, [['Content-Type', 'text/plain'], ['Content-Length', '9']]);
    assert.equal(r.body.toString(), 'ok /hello');
  });

  test('the environ carries the request vars and the wsgi.* keys of PEP 3333', async () => {
    const r = await uwsgiRequest(sock, getVars('/environ?x=1&y=%C3%A9', { HTTPS: 'on', HTTP_COOKIE: 'a=b', PATH_INFO: '/environ' }));
    const env = new Map(r.body.toString().trim().split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)] as [string, string]));
    assert.equal(env.get('REQUEST_METHOD'), 'GET');
    assert.equal(env.get('QUERY_STRING'), 'x=1&y=%C3%A9');
    assert.equal(env.get('HTTP_COOKIE'), 'a=b');
    assert.equal(env.get('SCRIPT_NAME'), '');
    assert.equal(env.get('wsgi.url_scheme'), 'https', 'HTTPS=on makes the scheme https');
    assert.equal(env.get('wsgi.multiprocess'), 'True');
    assert.equal(env.get('wsgi.multithread'), 'False');
    assert.equal(env.get('wsgi.run_once'), 'False');
    assert.equal(env.get('wsgi.version'), '(1, 0)');
  });

  test('UWSGI_SCHEME sets wsgi.url_scheme', async () => {
    const r = await uwsgiRequest(sock, getVars('/environ', { UWSGI_SCHEME: 'https' }));
    assert.match(r.body.toString(), /^wsgi\.url_scheme=https$/m);
  });

  test('a request body arrives whole in wsgi.input, bounded by CONTENT_LENGTH', async () => {
    const body = randomBytes(300_000);
    const r = await uwsgiRequest(sock, { ...getVars('/echo'), REQUEST_METHOD: 'POST' }, body);
    assert.equal(r.status, 200);
    assert.ok(r.body.equals(body), 'echoed body equals the sent body');
  });

  test('wsgi.input stops at CONTENT_LENGTH even when more bytes follow', async () => {
    const packet = uwsgiPacket({ ...getVars('/read-all'), REQUEST_METHOD: 'POST', CONTENT_LENGTH: '5' });
    const raw = await rawExchange(sock, Buffer.concat([packet, Buffer.from('12345EXTRA')]));
    assert.equal(parseResponse(raw).body.toString(), '12345');
  });

  test('wsgi.input.readlines() returns every line', async () => {
    const r = await uwsgiRequest(sock, { ...getVars('/readlines'), REQUEST_METHOD: 'POST' }, Buffer.from('a\nb\nc\n'.repeat(20000)));
    assert.equal(r.body.toString(), '60000\n');
  });

  test('streamed bodies, write() and the close() of the iterable', async () => {
    assert.equal((await uwsgiRequest(sock, getVars('/stream'))).body.toString(), 'chunk 0\nchunk 1\nchunk 2\nchunk 3\nchunk 4\n');
    assert.equal((await uwsgiRequest(sock, getVars('/write'))).body.toString(), 'written and returned');
    assert.equal((await uwsgiRequest(sock, getVars('/closing'))).body.toString(), 'closed body');
    await tsgi.waitFor(/APP-CLOSE-CALLED/);
  });

  test('wsgi.file_wrapper sends the whole file', async () => {
    const file = join(dir, 'big.bin');
    const data = randomBytes(1_500_000);
    writeFileSync(file, data);
    const r = await uwsgiRequest(sock, getVars(`/file?${file}`));
    assert.equal(r.status, 200);
    assert.ok(r.body.equals(data));
    assert.ok(r.headers.some(([k, v]) => k === 'Content-Length' && v === String(data.length)));
  });

  test('start_response with exc_info before the headers are sent replaces the status', async () => {
    const r = await uwsgiRequest(sock, getVars('/exc-info'));
    assert.equal(r.status, 503);
    assert.equal(r.body.toString(), 'replaced status');
  });

  test('HEAD is answered without a body', async () => {
    const raw = await rawExchange(sock, uwsgiPacket({ ...getVars('/hello'), REQUEST_METHOD: 'HEAD' }));
    assert.equal(parseResponse(raw).status, 200);
    assert.equal(parseResponse(raw).body.length, 0);
  });

  test('an app that raises: 500, the traceback in the log, the worker lives on', async () => {
    const pidBefore = new Set(tsgi.output().match(/spawned worker \d+ \(pid: \d+/g));
    const r = await uwsgiRequest(sock, getVars('/raise'));
    assert.equal(r.status, 500);
    await tsgi.waitFor(/exception in the app, answered 500:\nTraceback[\s\S]*RuntimeError: boom from the app/);
    await good();
    assert.deepEqual(new Set(tsgi.output().match(/spawned worker \d+ \(pid: \d+/g)), pidBefore, 'no worker was respawned');
  });

  test('an app that returns a non-iterable: 500 and a log line saying so', async () => {
    const r = await uwsgiRequest(sock, getVars('/none'));
    assert.equal(r.status, 500);
    await tsgi.waitFor(/the app returned None, which is not an iterable of bytes/);
    await good();
  });

  test('an app that fails after the headers went out: the response is cut, the next one served', async () => {
    const raw = await rawExchange(sock, uwsgiPacket(getVars('/late-error')));
    assert.match(raw.toString(), /^HTTP\/1\.1 200 OK[\s\S]*partial $/);
    await tsgi.waitFor(/ValueError: failed after the headers/);
    await good();
  });

  test('a body longer than its Content-Length is cut to it, with a log line', async () => {
    const r = parseResponse(await rawExchange(sock, uwsgiPacket(getVars('/too-long'))));
    assert.equal(r.status, 200);
    assert.equal(r.body.toString(), 'Hello');
    await tsgi.waitFor(/the app gave 9 body bytes more than its Content-Length \(GET \/too-long\); they were not sent/);
    await good();
  });

  test('an app calling os._exit: the connection closes, the worker is respawned, the next request served', async () => {
    const raw = await rawExchange(sock, uwsgiPacket(getVars('/exit')));
    assert.equal(raw.length, 0, 'no response from a worker that died');
    await tsgi.waitFor(/worker \d \(pid: \d+\) exited with status 3; respawning/);
    await tsgi.waitFor(/spawned worker \d \(pid: \d+\)[\s\S]*spawned worker \d \(pid: \d+\)[\s\S]*spawned worker \d \(pid: \d+\)/);
    await good();
    await good();
  });

  test('bad input: a truncated header is logged and closed, the next request served', async () => {
    const raw = await rawExchange(sock, Buffer.from([0, 10]), { end: true });
    assert.equal(raw.length, 0);
    await tsgi.waitFor(/bad request: truncated uwsgi header \(2 of 4 bytes\)/);
    await good();
  });

  test('bad input: vars longer than the packet', async () => {
    const bogus = Buffer.from([0, 8, 0, 0, 200, 0, 65, 66, 67, 68, 69, 70]); // key length 200 in an 8-byte packet
    const raw = await rawExchange(sock, bogus, { end: true });
    assert.equal(raw.length, 0);
    await tsgi.waitFor(/bad request: uwsgi vars run past the end of the packet/);
    await good();
  });

  test('bad input: a packet over buffer-size is refused without reading it', async () => {
    const big = uwsgiPacket(getVars('/', { HTTP_X_BIG: 'x'.repeat(6000) }));
    const raw = await rawExchange(sock, big);
    assert.equal(raw.length, 0);
    await tsgi.waitFor(/bad request: uwsgi packet of \d+ bytes is larger than buffer-size 4096/);
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
    await tsgi.waitFor(/client closed the connection with \d+ body bytes unsent/);
    await good();
  });

  test('bad input: a connection that sends nothing is dropped after socket-timeout', async () => {
    // Not a timing assertion: the connection must end (the default socket-timeout is 4 s).
    const raw = await rawExchange(sock, Buffer.alloc(0), { timeoutMs: 30_000 });
    assert.equal(raw.length, 0);
    await tsgi.waitFor(/no complete uwsgi request within socket-timeout/);
    await good();
  });
});

describe('python worker over uwsgi: a client that stops reading', () => {
  let tsgi: RunningProcess;
  let sock: string;
  let dir: string;

  before(async () => {
    dir = tempDir();
    sock = join(dir, 'app.sock');
    writeFileSync(join(dir, 'big.bin'), Buffer.alloc(8 * 1024 * 1024, 7));
    // One worker: a connection holding it would leave nobody to answer the next request.
    tsgi = await startTsgi(['--socket', sock, '--processes', '1', '--socket-timeout', '1', '--wsgi-file', APP], { env: activatedEnv(sharedVenv()) });
  });
  after(async () => {
    const r = await stopProcess(tsgi);
    assert.equal(r.code, 0, tsgi.output());
  });

  /** Sends a request and never reads: the response cannot fit in the socket's buffers. */
  function stalledClient(path: string, query = ''): net.Socket {
    const c = net.connect(sock, () => c.write(uwsgiPacket(getVars(path, { QUERY_STRING: query }))));
    c.pause();
    c.on('error', () => {});
    return c;
  }

  /** Resolves once the log has said `re` `n` times (each test adds one line). */
  async function logged(re: RegExp, n: number): Promise<void> {
    const global = new RegExp(re.source, 'g');
    for (let waited = 0; (tsgi.output().match(global)?.length ?? 0) < n; waited += 50) {
      if (waited > 30_000) assert.fail(`not logged ${n} times: ${re}\n${tsgi.output()}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  let stalls = 0;
  for (const [what, path, query] of [['a response the app returns', '/big', ''], ['a file sent with sendfile', '/big-file', 'big.bin']] as const) {
    test(`${what}: the connection is dropped after socket-timeout and the worker serves the next request`, async () => {
      const stalled = stalledClient(path, query === '' ? '' : join(dir, query));
      try {
        await logged(/the client did not take the response within socket-timeout \(1 s\); connection closed/, ++stalls);
        const r = await uwsgiRequest(sock, getVars('/fine'));
        assert.equal(r.status, 200);
        assert.equal(r.body.toString(), 'ok /fine');
      } finally {
        stalled.destroy();
      }
    });
  }
});
