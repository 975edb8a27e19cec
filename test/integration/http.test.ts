/**
 * HTTP/1.1 for Python apps through tsgi's router: the guide's first command, HTTP semantics, limits, and
 * what slow or broken clients and dying workers must not be able to do.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import { join } from 'node:path';
import { repoRoot } from '../helpers/paths.js';
import { activatedEnv, freePort, sharedVenv, startTsgi, stopProcess, tempDir, writeFiles, type RunningProcess } from '../helpers/procs.js';
import { parseResponses, rawHttp } from '../helpers/http-raw.js';

const APP = join(repoRoot, 'test/fixtures/apps/behaviours.py');
const env = activatedEnv(sharedVenv());

const GUIDE_WSGI = `def application(environ, start_response):
    start_response('200 OK', [('Content-Type', 'text/html')])
    return ["<h1 style='color:blue'>Hello There!</h1>"]
`;

for (const form of [['--socket', '--protocol=http'], ['--http'], ['--http-socket']]) {
  test(`the guide's first step with ${form.join(' ')}: curl shows Hello There!`, async () => {
    const dir = tempDir();
    writeFiles(dir, { 'wsgi.py': GUIDE_WSGI });
    const port = await freePort();
    const args = [form[0]!, `127.0.0.1:${port}`, ...form.slice(1), '-w', 'wsgi'];
    const tsgi = await startTsgi(args, { cwd: dir, env });
    try {
      const curl = spawnSync('curl', ['-s', '-i', `http://127.0.0.1:${port}/`], { encoding: 'utf8' });
      assert.equal(curl.status, 0, curl.stderr);
      assert.match(curl.stdout, /^HTTP\/1\.1 200 OK\r\n/);
      assert.match(curl.stdout, /\r\nContent-Type: text\/html\r\n/);
      assert.match(curl.stdout, /\r\nDate: .+ GMT\r\n/);
      assert.match(curl.stdout, /<h1 style='color:blue'>Hello There!<\/h1>$/);
    } finally {
      assert.equal((await stopProcess(tsgi)).code, 0, tsgi.output());
    }
  });
}

describe('HTTP semantics through the router', () => {
  let tsgi: RunningProcess;
  let port: number;

  before(async () => {
    port = await freePort();
    tsgi = await startTsgi(['--http-socket', `127.0.0.1:${port}`, '-p', '2', '--wsgi-file', APP, '--limit-post', '8000000', '--buffer-size', '8192'], { env });
  });
  after(async () => {
    assert.equal((await stopProcess(tsgi)).code, 0, tsgi.output());
  });

  function environOf(body: Buffer): Map<string, string> {
    return new Map(body.toString().trim().split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)] as [string, string]));
  }

  test('keep-alive: several requests on one connection', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const ports = new Set<number>();
    for (let i = 0; i < 5; i++) {
      const r = await new Promise<{ body: string; local: number }>((resolve, reject) => {
        http.get({ port, path: `/k${i}`, agent }, (res) => {
          let b = '';
          const local = res.socket.localPort!;
          res.on('data', (c) => (b += c));
          res.on('end', () => resolve({ body: b, local }));
        }).on('error', reject);
      });
      assert.equal(r.body, `ok /k${i}`);
      ports.add(r.local);
    }
    agent.destroy();
    assert.equal(ports.size, 1, 'all five requests used the same connection');
  });

  test('100 pipelined requests on one connection are answered in order', async () => {
    const reqs = Array.from({ length: 100 }, (_, i) => `GET /p${i} HTTP/1.1\r\nHost: x\r\n\r\n`).join('') + 'GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n';
    const { bytes, closedByServer } = await rawHttp(port, reqs);
    assert.ok(closedByServer, 'Connection: close ends the connection');
    const responses = parseResponses(bytes);
    assert.equal(responses.length, 101);
    responses.slice(0, 100).forEach((r, i) => assert.equal(r.body.toString(), `ok /p${i}`));
  });

  test('a body longer than its Content-Length is cut to it, and an exception after the whole body loses nothing: the connection goes on', async () => {
    const reqs = 'GET /too-long HTTP/1.1\r\nHost: x\r\n\r\nGET /error-after-body HTTP/1.1\r\nHost: x\r\n\r\nGET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n';
    const { bytes } = await rawHttp(port, reqs);
    const responses = parseResponses(bytes);
    assert.deepEqual(responses.map((r) => [r.status, r.body.toString()]), [[200, 'Hello'], [200, 'done'], [200, 'ok /last']], bytes.toString('latin1'));
    await tsgi.waitFor(/the app gave 9 body bytes more than its Content-Length \(GET \/too-long\); they were not sent/);
    await tsgi.waitFor(/exception in the app after its response was complete[\s\S]*ValueError: failed after its body/);
  });

  test('HTTP/1.0 without keep-alive: the response is complete and the connection closed', async () => {
    const { bytes, closedByServer } = await rawHttp(port, 'GET /old HTTP/1.0\r\n\r\n');
    assert.ok(closedByServer);
    const [r] = parseResponses(bytes);
    assert.match(r!.statusLine, /^HTTP\/1\.[01] 200 OK$/);
    assert.equal(r!.body.toString(), 'ok /old');
  });

  test('a chunked POST of 1 MB arrives whole in wsgi.input, with a CONTENT_LENGTH the app can trust', async () => {
    const data = randomBytes(1024 * 1024);
    const chunks: string[] = [];
    let wire = Buffer.from('POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n');
    for (let off = 0; off < data.length; off += 100_000) {
      const piece = data.subarray(off, off + 100_000);
      wire = Buffer.concat([wire, Buffer.from(`${piece.length.toString(16)}\r\n`), piece, Buffer.from('\r\n')]);
      chunks.push(String(piece.length));
    }
    wire = Buffer.concat([wire, Buffer.from('0\r\n\r\n')]);
    const { bytes } = await rawHttp(port, wire);
    const [r] = parseResponses(bytes);
    assert.equal(r!.status, 200);
    assert.equal(createHash('sha256').update(r!.body).digest('hex'), createHash('sha256').update(data).digest('hex'));
  });

  test('Expect: 100-continue gets a 100 before the body is sent', async () => {
    const result = await new Promise<{ status: number; body: string; continued: boolean }>((resolve, reject) => {
      let continued = false;
      const req = http.request({ port, method: 'POST', path: '/echo', headers: { Expect: '100-continue', 'Content-Length': 5 } }, (res) => {
        let b = '';
        res.on('data', (c) => (b += c));
        res.on('end', () => resolve({ status: res.statusCode!, body: b, continued }));
      });
      req.on('continue', () => {
        continued = true;
        req.end('hello');
      });
      req.on('error', reject);
    });
    assert.deepEqual(result, { status: 200, body: 'hello', continued: true });
  });

  test('HEAD: the headers of GET, no body', async () => {
    const { bytes } = await rawHttp(port, 'HEAD /h HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    const [r] = parseResponses(bytes, new Set([0]));
    assert.equal(r!.status, 200);
    assert.equal(bytes.toString().endsWith('\r\n\r\n'), true, 'nothing after the head');
  });

  test('a streamed response without Content-Length is sent chunked', async () => {
    const { bytes } = await rawHttp(port, 'GET /stream HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    const [r] = parseResponses(bytes);
    assert.equal(r!.headers.get('transfer-encoding'), 'chunked');
    assert.equal(r!.body.toString(), 'chunk 0\nchunk 1\nchunk 2\nchunk 3\nchunk 4\n');
  });

  test('the environ: REMOTE_ADDR/PORT from the socket, SERVER_NAME/PORT, scheme; no hop-by-hop headers; X-Forwarded-For not trusted', async () => {
    const { bytes } = await new Promise<{ bytes: Buffer }>((resolve, reject) => {
      const s = net.connect(port, '127.0.0.1', () => {
        const localPort = s.localPort;
        s.write('GET /environ?a=1 HTTP/1.1\r\nHost: example.test:8443\r\nX-Forwarded-For: 6.6.6.6\r\nKeep-Alive: 300\r\nTE: trailers\r\nConnection: close, TE\r\nX_Sneaky: 1\r\nCookie: a=1\r\nCookie: b=2\r\n\r\n');
        const chunks: Buffer[] = [];
        s.on('data', (c: Buffer) => chunks.push(c));
        s.on('close', () => resolve({ bytes: Buffer.concat([Buffer.from(`LOCAL=${localPort}\n`), ...chunks]) }));
      });
      s.on('error', reject);
    });
    const text = bytes.toString();
    const localPort = /^LOCAL=(\d+)/.exec(text)![1];
    const env = environOf(parseResponses(Buffer.from(text.slice(text.indexOf('\n') + 1)))[0]!.body);
    assert.equal(env.get('REMOTE_ADDR'), '127.0.0.1');
    assert.equal(env.get('REMOTE_PORT'), localPort);
    assert.equal(env.get('SERVER_NAME'), 'example.test');
    assert.equal(env.get('SERVER_PORT'), String(port));
    assert.equal(env.get('SERVER_PROTOCOL'), 'HTTP/1.1');
    assert.equal(env.get('QUERY_STRING'), 'a=1');
    assert.equal(env.get('PATH_INFO'), '/environ');
    assert.equal(env.get('wsgi.url_scheme'), 'http');
    assert.equal(env.get('HTTP_X_FORWARDED_FOR'), '6.6.6.6', 'passed to the app as a header...');
    assert.equal(env.get('HTTP_COOKIE'), 'a=1; b=2');
    for (const k of ['HTTP_CONNECTION', 'HTTP_KEEP_ALIVE', 'HTTP_TE', 'HTTP_X_SNEAKY']) assert.equal(env.has(k), false, `${k} must not reach the app`);
  });

  test('many headers: each reaches the environ, and repeats are still joined', async () => {
    // Past a few dozen headers the router indexes names instead of scanning them; both ways must agree.
    const many = Array.from({ length: 60 }, (_, i) => `X-H-${i}: v${i}\r\n`).join('');
    const { bytes } = await rawHttp(port, `GET /environ HTTP/1.1\r\nHost: x\r\nCookie: a=1\r\nX-Dup: 1\r\n${many}X-Dup: 2\r\nCookie: b=2\r\nConnection: close\r\n\r\n`);
    const env = environOf(parseResponses(bytes)[0]!.body);
    for (let i = 0; i < 60; i++) assert.equal(env.get(`HTTP_X_H_${i}`), `v${i}`);
    assert.equal(env.get('HTTP_X_DUP'), '1, 2');
    assert.equal(env.get('HTTP_COOKIE'), 'a=1; b=2');
  });

  test('percent-encoded and non-ASCII paths are decoded into PATH_INFO as bytes', async () => {
    const { bytes } = await rawHttp(port, 'GET /environ/caf%C3%A9%20x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    const env = environOf(parseResponses(bytes)[0]!.body);
    // PEP 3333: environ strings carry bytes (latin-1); the UTF-8 of "café" arrives as its two bytes.
    assert.equal(Buffer.from(env.get('PATH_INFO')!, 'latin1').toString('utf8'), '/environ/café x');
    assert.equal(env.get('REQUEST_URI'), '/environ/caf%C3%A9%20x');
  });

  test('headers over buffer-size: 431 and a log line; the next request is served', async () => {
    const { bytes } = await rawHttp(port, `GET /big HTTP/1.1\r\nHost: x\r\nX-Big: ${'y'.repeat(9000)}\r\n\r\n`);
    assert.equal(parseResponses(bytes)[0]!.status, 431);
    await tsgi.waitFor(/over buffer-size 8192 \(raise buffer-size if it is legitimate\); answered 431/);
    const ok = await rawHttp(port, 'GET /after HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    assert.equal(parseResponses(ok.bytes)[0]!.body.toString(), 'ok /after');
  });

  test('headers too large even for the parser: 431', async () => {
    const { bytes } = await rawHttp(port, `GET / HTTP/1.1\r\nHost: x\r\nX-Huge: ${'z'.repeat(70000)}\r\n\r\n`);
    assert.match(bytes.toString('latin1'), /^HTTP\/1\.1 431 /);
  });

  test('a body over limit-post: 413, and the connection is closed', async () => {
    const { bytes, closedByServer } = await rawHttp(port, 'POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 9000000\r\n\r\n' + 'a'.repeat(1000));
    assert.equal(parseResponses(bytes)[0]!.status, 413);
    assert.ok(closedByServer);
    const chunked = await rawHttp(port, Buffer.concat([Buffer.from('POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n'), ...Array.from({ length: 9 }, () => Buffer.from(`f4240\r\n${'b'.repeat(1_000_000)}\r\n`))]));
    assert.equal(parseResponses(chunked.bytes)[0]!.status, 413);
  });

  test('malformed requests get a 400 and a log line, never reach the app', async () => {
    for (const bad of ['GARBAGE\r\n\r\n', 'GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello', 'GET / HTTP/9.9\r\n\r\n', 'G\x00T / HTTP/1.1\r\n\r\n']) {
      const { bytes } = await rawHttp(port, bad);
      assert.match(bytes.toString('latin1'), /^HTTP\/1\.1 4\d\d /, JSON.stringify(bad));
    }
    await tsgi.waitFor(/bad HTTP request from 127\.0\.0\.1:\d+: HPE_/);
  });

  test('a client idle past the timeout is disconnected', async () => {
    // socket-timeout is 4 s by default for --http-socket; the connection must end without a request.
    const { closedByServer } = await rawHttp(port, 'GET /never-finished HTTP/1.1\r\nHost: x\r\n', { idleMs: 30_000 });
    assert.ok(closedByServer);
  });

  test('a client that shuts down its sending side right after its requests still gets every answer', async () => {
    // printf ... | nc does this: the FIN arrives before the app has answered.
    const sock = net.connect(port, '127.0.0.1');
    const got: Buffer[] = [];
    sock.on('data', (d: Buffer) => got.push(d));
    await new Promise<void>((resolve) => sock.once('connect', () => resolve()));
    sock.end('GET /half-1 HTTP/1.1\r\nHost: x\r\n\r\nGET /half-2 HTTP/1.1\r\nHost: x\r\n\r\n');
    await new Promise<void>((resolve) => sock.once('close', () => resolve()));
    assert.deepEqual(parseResponses(Buffer.concat(got)).map((r) => r.body.toString()), ['ok /half-1', 'ok /half-2']);
  });

  test('a request head trickling in for longer than the timeout: 408, a log line, the connection closed', async () => {
    // socket-timeout is 4 s: a byte every 300 ms keeps the connection from ever being idle, but the head
    // as a whole must arrive within the timeout (the slow-loris defence).
    const sock = net.connect(port, '127.0.0.1');
    const got: Buffer[] = [];
    sock.on('data', (d: Buffer) => got.push(d));
    sock.on('error', () => {});
    await new Promise<void>((resolve) => sock.once('connect', () => resolve()));
    sock.write('GET /trickle HTTP/1.1\r\nHost: x\r\nX-Slow: ');
    const drip = setInterval(() => sock.writable && sock.write('a'), 300);
    const closed = await new Promise<boolean>((resolve) => {
      const giveUp = setTimeout(() => resolve(false), 20_000);
      sock.once('close', () => {
        clearTimeout(giveUp);
        resolve(true);
      });
    });
    clearInterval(drip);
    sock.destroy();
    assert.ok(closed, 'the router must close a connection whose head never completes');
    assert.equal(parseResponses(Buffer.concat(got))[0]?.status, 408);
    await tsgi.waitFor(/client 127\.0\.0\.1:\d+ took too long to send a request head; answered 408/);
  });

  test('an Expect other than 100-continue: 417, never reaches the app', async () => {
    const { bytes } = await rawHttp(port, 'POST /echo HTTP/1.1\r\nHost: x\r\nExpect: something-else\r\nContent-Length: 3\r\n\r\nabc');
    assert.equal(parseResponses(bytes)[0]!.status, 417);
  });

  test('an app that raises: 500; a worker that dies mid-request: 502, respawned, later requests served', async () => {
    const raised = await rawHttp(port, 'GET /raise HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    assert.equal(parseResponses(raised.bytes)[0]!.status, 500);
    // The client asked to close: the 502 ends the connection at once (well before the 4 s idle timeout).
    const died = await rawHttp(port, 'GET /exit HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n', { idleMs: 2500 });
    assert.equal(parseResponses(died.bytes)[0]!.status, 502);
    assert.ok(died.closedByServer, 'the connection of a Connection: close request must be closed after its 502');
    await tsgi.waitFor(/worker died while serving GET \/exit; answered 502/);
    await tsgi.waitFor(/worker \d \(pid: \d+\) exited with status 3; respawning/);
    for (let i = 0; i < 4; i++) {
      const r = await rawHttp(port, `GET /after-death-${i} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
      assert.equal(parseResponses(r.bytes)[0]!.body.toString(), `ok /after-death-${i}`);
    }
  });

  test('requests queued behind a dying worker still get answered', async () => {
    const slow = rawHttp(port, 'GET /sleep HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    const die = rawHttp(port, 'GET /exit HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    const queued = Array.from({ length: 6 }, (_, i) => rawHttp(port, `GET /q${i} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`));
    assert.equal(parseResponses((await die).bytes)[0]!.status, 502);
    assert.equal(parseResponses((await slow).bytes)[0]!.status, 200);
    const answers = await Promise.all(queued);
    answers.forEach((a, i) => assert.equal(parseResponses(a.bytes)[0]!.body.toString(), `ok /q${i}`));
  });
});
