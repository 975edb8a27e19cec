/**
 * tsgi's uwsgi keep-alive extension (docs/protocol-keepalive.md), the backend side: a front server that sends
 * TSGI_KEEPALIVE=1 gets framed responses marked X-Tsgi-Keepalive: 1 and can send its next request on the
 * same connection. A plain uwsgi client (nginx) sees no difference.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { join } from 'node:path';
import { repoRoot } from '../helpers/paths.js';
import { activatedEnv, sharedVenv, startTsgi, stopProcess, tempDir, type RunningProcess } from '../helpers/procs.js';
import { parseResponses, type RawHttpResponse } from '../helpers/http-raw.js';
import { conversation, getVars, rawExchange, uwsgiPacket } from '../helpers/uwsgi-client.js';

const APP = join(repoRoot, 'test/fixtures/apps/behaviours.py');

describe('uwsgi keep-alive extension', () => {
  let tsgi: RunningProcess;
  let sock: string;
  before(async () => {
    sock = join(tempDir(), 'k.sock');
    tsgi = await startTsgi(['-s', sock, '-p', '2', '--wsgi-file', APP], { env: activatedEnv(sharedVenv()) });
  });
  after(async () => {
    await stopProcess(tsgi);
  });

  const ka = (path: string, extra: Record<string, string> = {}): Record<string, string> => ({ ...getVars(path), TSGI_KEEPALIVE: '1', ...extra });

  test('several requests on one connection, each marked and framed', async () => {
    const { responses, closedAfter } = await conversation(sock, [{ vars: ka('/one') }, { vars: ka('/stream') }, { vars: ka('/two') }, { vars: ka('/h', { REQUEST_METHOD: 'HEAD' }), head: true }, { vars: ka('/three') }]);
    assert.equal(closedAfter, -1, 'the connection stayed open');
    assert.equal(responses.length, 5);
    assert.deepEqual(responses.map((r) => r.headers.get('x-tsgi-keepalive')), ['1', '1', '1', '1', '1']);
    assert.equal(responses[0]!.body.toString(), 'ok /one');
    assert.equal(responses[1]!.headers.get('transfer-encoding'), 'chunked', 'a streamed body is chunked');
    assert.equal(responses[1]!.body.toString(), 'chunk 0\nchunk 1\nchunk 2\nchunk 3\nchunk 4\n');
    assert.equal(responses[2]!.body.toString(), 'ok /two');
    assert.equal(responses[3]!.status, 200);
    assert.equal(responses[4]!.body.toString(), 'ok /three');
  });

  test('a request with a body, then another on the same connection', async () => {
    const c = net.connect(sock);
    await new Promise((r) => c.once('connect', r));
    let data = Buffer.alloc(0);
    c.on('data', (d: Buffer) => (data = Buffer.concat([data, d])));
    c.write(Buffer.concat([uwsgiPacket({ ...ka('/echo'), REQUEST_METHOD: 'POST', CONTENT_LENGTH: '11' }), Buffer.from('hello world')]));
    for (let t = 0; t < 300 && parseResponses(data).length < 1; t++) await new Promise((r) => setTimeout(r, 20));
    c.write(uwsgiPacket(ka('/after-body')));
    for (let t = 0; t < 300 && parseResponses(data).length < 2; t++) await new Promise((r) => setTimeout(r, 20));
    c.destroy();
    const [a, b] = parseResponses(data);
    assert.equal(a!.body.toString(), 'hello world');
    assert.equal(b!.body.toString(), 'ok /after-body');
  });

  test('without TSGI_KEEPALIVE the answer is plain uwsgi: no marker, connection closed', async () => {
    const raw = await rawExchange(sock, uwsgiPacket(getVars('/plain')));
    const [r] = parseResponses(raw);
    assert.equal(r!.headers.has('x-tsgi-keepalive'), false);
    assert.equal(r!.body.toString(), 'ok /plain');
  });

  test('TSGI_KEEPALIVE=2: requests pipelined in one write (one with a body) are answered in order, marked 2', async () => {
    const p2 = (path: string, extra: Record<string, string> = {}): Record<string, string> => ({ ...getVars(path), TSGI_KEEPALIVE: '2', ...extra });
    const c = net.connect(sock);
    await new Promise((r) => c.once('connect', r));
    let data = Buffer.alloc(0);
    c.on('data', (d: Buffer) => (data = Buffer.concat([data, d])));
    // Three requests and a body in a single write: the worker reads past the first packet and must keep the rest.
    c.write(Buffer.concat([
      uwsgiPacket(p2('/first')),
      uwsgiPacket(p2('/echo', { REQUEST_METHOD: 'POST', CONTENT_LENGTH: '11' })), Buffer.from('hello world'),
      uwsgiPacket(p2('/third')),
    ]));
    for (let t = 0; t < 500 && parseResponses(data).length < 3; t++) await new Promise((r) => setTimeout(r, 20));
    // Then one more on the same connection: it is still kept.
    c.write(uwsgiPacket(p2('/fourth')));
    for (let t = 0; t < 500 && parseResponses(data).length < 4; t++) await new Promise((r) => setTimeout(r, 20));
    c.destroy();
    const rs = parseResponses(data);
    assert.deepEqual(rs.map((r) => r.body.toString()), ['ok /first', 'hello world', 'ok /third', 'ok /fourth']);
    assert.deepEqual(rs.map((r) => r.headers.get('x-tsgi-keepalive')), ['2', '2', '2', '2']);
  });

  test('an app error after the head ends the connection instead of keeping a broken one', async () => {
    const { closedAfter } = await conversation(sock, [{ vars: ka('/late-error') }, { vars: ka('/never') }]);
    assert.equal(closedAfter, 0);
  });
});

test('TSGI_KEEPALIVE=2: a batch of quick requests is answered in one write; after a slow request, each answer goes out at once', async () => {
  const sock = join(tempDir(), 'hold.sock');
  // A fresh worker with one core: no request before the first batch, so it counts as quick.
  const tsgi = await startTsgi(['-s', sock, '-p', '1', '--wsgi-file', APP], { env: activatedEnv(sharedVenv()) });
  const c = net.connect(sock);
  try {
    await new Promise((r) => c.once('connect', r));
    const reads: Buffer[] = [];
    c.on('data', (d: Buffer) => reads.push(d));
    const all = (): RawHttpResponse[] => parseResponses(Buffer.concat(reads));
    const until = async (n: number): Promise<void> => {
      for (let t = 0; t < 1500 && all().length < n; t++) await new Promise((r) => setTimeout(r, 10));
    };
    const p2 = (path: string): Buffer => uwsgiPacket({ ...getVars(path.split('?')[0]!, { QUERY_STRING: path.split('?')[1] ?? '' }), TSGI_KEEPALIVE: '2' });
    c.write(Buffer.concat([p2('/a'), p2('/b'), p2('/c')]));
    await until(3);
    assert.deepEqual(all().map((r) => r.body.toString()), ['ok /a', 'ok /b', 'ok /c']);
    assert.equal(parseResponses(reads[0]!).length, 3, 'the three answers came in the first read: one write');
    // A slow request (50 ms): the next batch's answers are not held for the ones after them.
    c.write(p2('/sleep?0.05'));
    await until(4);
    const from = reads.length;
    c.write(Buffer.concat([p2('/one'), p2('/sleep?1'), p2('/two')]));
    await until(7);
    assert.deepEqual(all().slice(4).map((r) => r.body.toString()), ['ok /one', 'ok /sleep', 'ok /two']);
    assert.equal(parseResponses(reads[from]!).length, 1, 'the answer to /one did not wait for the 1 s request behind it');
  } finally {
    c.destroy();
    await stopProcess(tsgi);
  }
});

test('a worker keeps at most 64 idle connections: the least recently used one is closed, the others go on', async () => {
  const sock = join(tempDir(), 'lru.sock');
  const tsgi = await startTsgi(['-s', sock, '-p', '1', '--wsgi-file', APP], { env: activatedEnv(sharedVenv()) });
  const conns: Array<{ c: net.Socket; data: () => Buffer; closed: () => boolean }> = [];
  try {
    const ka = (path: string): Record<string, string> => ({ ...getVars(path), TSGI_KEEPALIVE: '1' });
    const open = async (): Promise<(typeof conns)[number]> => {
      const c = net.connect(sock);
      await new Promise((r) => c.once('connect', r));
      let data = Buffer.alloc(0);
      let closed = false;
      c.on('data', (d: Buffer) => (data = Buffer.concat([data, d])));
      c.on('close', () => (closed = true));
      return { c, data: () => data, closed: () => closed };
    };
    const answered = async (k: (typeof conns)[number], n: number): Promise<void> => {
      for (let t = 0; t < 500 && parseResponses(k.data()).length < n && !k.closed(); t++) await new Promise((r) => setTimeout(r, 10));
    };
    // 65 connections, one request each, in turn: the worker holds all of them idle until the 65th.
    for (let i = 0; i < 65; i++) {
      const k = await open();
      k.c.write(uwsgiPacket(ka(`/first-${i}`)));
      await answered(k, 1);
      assert.equal(parseResponses(k.data())[0]?.headers.get('x-tsgi-keepalive'), '1', `connection ${i} kept`);
      conns.push(k);
    }
    for (let t = 0; t < 300 && !conns[0]!.closed(); t++) await new Promise((r) => setTimeout(r, 10));
    assert.ok(conns[0]!.closed(), 'the least recently used connection was closed');
    // The most recent and an older survivor answer a second request on the same connection.
    for (const i of [64, 1]) {
      const k = conns[i]!;
      assert.ok(!k.closed(), `connection ${i} is still open`);
      k.c.write(uwsgiPacket(ka(`/second-${i}`)));
      await answered(k, 2);
      assert.equal(parseResponses(k.data())[1]?.body.toString(), `ok /second-${i}`);
    }
  } finally {
    for (const k of conns) k.c.destroy();
    await stopProcess(tsgi);
  }
});

test('a kept Unix connection whose next packet stops half-way is closed after socket-timeout; the worker goes on serving', async () => {
  const sock = join(tempDir(), 'stall.sock');
  // One worker with one core: while it waited forever on the stalled packet, nobody else would be served.
  const tsgi = await startTsgi(['-s', sock, '-p', '1', '--socket-timeout', '2', '--wsgi-file', APP], { env: activatedEnv(sharedVenv()) });
  // The worker is kept busy while the first request is sent, so that it finds that request whole when it
  // accepts the connection: the fresh connection's socket timeout is then never set (it is set only for a
  // packet that arrives in pieces), and only the kept connection's own arming can end the stall below.
  const busy = rawExchange(sock, uwsgiPacket(getVars('/sleep?1')), { timeoutMs: 60_000 });
  await new Promise((r) => setTimeout(r, 300));
  const c = net.connect(sock);
  try {
    let data = Buffer.alloc(0);
    let closed = false;
    c.on('data', (d: Buffer) => (data = Buffer.concat([data, d])));
    c.on('close', () => (closed = true));
    c.on('error', () => {});
    const ka = (path: string): Record<string, string> => ({ ...getVars(path), TSGI_KEEPALIVE: '1' });
    c.write(uwsgiPacket(ka('/first')));
    assert.equal(parseResponses(await busy)[0]?.body.toString(), 'ok /sleep');
    for (let t = 0; t < 1500 && parseResponses(data).length < 1; t++) await new Promise((r) => setTimeout(r, 20));
    const [first] = parseResponses(data);
    assert.equal(first?.body.toString(), 'ok /first');
    assert.equal(first?.headers.get('x-tsgi-keepalive'), '1', 'the connection is kept');
    // The second request: half of its packet, then nothing.
    const second = uwsgiPacket(ka('/second'));
    c.write(second.subarray(0, second.length >> 1));
    await new Promise((r) => setTimeout(r, 300)); // lets the worker start reading it (the test holds either way)
    const other = parseResponses(await rawExchange(sock, uwsgiPacket(getVars('/other')), { timeoutMs: 60_000 }));
    assert.equal(other[0]?.body.toString(), 'ok /other', 'another client is served');
    for (let t = 0; t < 3000 && !closed; t++) await new Promise((r) => setTimeout(r, 20));
    assert.ok(closed, 'the stalled connection was closed');
    assert.equal(parseResponses(data).length, 1, 'nothing was answered to the half packet');
    await tsgi.waitFor(/no complete uwsgi request within socket-timeout/);
    const after = parseResponses(await rawExchange(sock, uwsgiPacket(getVars('/after')), { timeoutMs: 60_000 }));
    assert.equal(after[0]?.body.toString(), 'ok /after');
  } finally {
    c.destroy();
    await stopProcess(tsgi);
  }
});
