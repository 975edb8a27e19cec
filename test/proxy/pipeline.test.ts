/**
 * Pipelining on tsgi's persistent link (docs/protocol-keepalive.md): the requests for one tsgi backend that
 * tsgi-proxy reads in the same turn of its event loop share one kept connection and leave in one write, when
 * the backend said it reads pipelined requests (X-Tsgi-Keepalive: 2). An HTTP/2 client's requests created in
 * one tick reach the proxy in one read, so they make such a turn without any timing.
 *
 * The wire-level cases use a small backend in this process that records how packets arrive; the last case runs
 * the real tsgi (one Python worker) behind the proxy.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import { writeFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { decodePacket } from '../../src/protocol/uwsgi.js';
import { canConnect, freePort, get, readText, startProxy, tempDir, waitFor, type Proc } from './helpers.js';
import { activatedEnv, sharedVenv, startTsgi, stopProcess, type RunningProcess } from '../helpers/procs.js';
import { repoRoot } from '../helpers/paths.js';

type Mode = 'pipelining' | 'old' | 'close-after-first' | 'late';

interface Fake {
  server: Server;
  /** Connections accepted so far. */
  connections: () => number;
  /** For every read that held at least one whole packet: how many it held. */
  reads: number[];
}

/**
 * A tsgi backend: answers each packet with its PATH_INFO and the connection's number. 'pipelining' marks its
 * answers X-Tsgi-Keepalive: 2; 'old' marks them 1 (a backend that reads one request at a time); 'close-after-first'
 * is 'pipelining' but closes a connection after answering the first of several packets that came together;
 * 'late' answers 100 ms after the read.
 */
function fakeBackend(path: string, mode: Mode): Promise<Fake> {
  let conns = 0;
  const reads: number[] = [];
  const server = createServer((s: Socket) => {
    const id = ++conns;
    let buf = Buffer.alloc(0);
    s.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      const answers: string[] = [];
      for (;;) {
        const p = decodePacket(buf, 65535);
        if ('need' in p) break;
        if ('error' in p) {
          s.destroy();
          return;
        }
        const vars = new Map(p.vars);
        const len = Number(vars.get('CONTENT_LENGTH') || 0);
        if (buf.length < p.headerEnd + len) break;
        buf = buf.subarray(p.headerEnd + len);
        const body = `${vars.get('PATH_INFO')} conn ${id} ka ${vars.get('TSGI_KEEPALIVE')}`;
        answers.push(`HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Tsgi-Keepalive: ${mode === 'old' ? '1' : '2'}\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
      }
      if (answers.length === 0) return;
      reads.push(answers.length);
      if (mode === 'close-after-first' && answers.length > 1) {
        s.end(answers[0]);
        return;
      }
      if (mode === 'late') setTimeout(() => s.write(answers.join('')), 100);
      else s.write(answers.join(''));
    });
    s.on('error', () => {});
  });
  return new Promise((res) => server.listen(path, () => res({ server, connections: () => conns, reads })));
}

interface Answer {
  status: number;
  body: string;
}

/** Sends every request in the same tick (one write from the client); resolves with the answers in order. */
function batch(session: http2.ClientHttp2Session, reqs: Array<{ path: string; method?: string; body?: string; cancel?: boolean }>): Promise<Array<Answer | 'cancelled'>> {
  return Promise.all(reqs.map((r) => new Promise<Answer | 'cancelled'>((res, rej) => {
    const st = session.request({ ':path': r.path, ':method': r.method ?? 'GET' }, { endStream: r.body === undefined });
    if (r.body !== undefined) st.end(r.body);
    if (r.cancel) {
      st.on('error', () => {});
      st.close(http2.constants.NGHTTP2_CANCEL, () => res('cancelled'));
      return;
    }
    let status = 0;
    let body = '';
    st.on('response', (h) => (status = Number(h[':status'])));
    st.setEncoding('latin1');
    st.on('data', (d: string) => (body += d));
    st.on('end', () => res({ status, body }));
    st.on('error', rej);
  })));
}

function open(port: number): Promise<http2.ClientHttp2Session> {
  return new Promise((res, rej) => {
    const s = http2.connect(`http://127.0.0.1:${port}`);
    s.once('connect', () => res(s));
    s.once('error', rej);
  });
}

/**
 * tsgi-proxy with one worker on `dir`/nginx.conf: an HTTP/1.1 port and an h2c port over the same `locations`;
 * resolves once both accept, with an HTTP/2 session open on the second.
 */
async function startH2Proxy(dir: string, upstreams: string, locations: string): Promise<{ proxy: Proc; port: number; session: http2.ClientHttp2Session }> {
  const port = await freePort();
  const h2port = await freePort();
  writeFileSync(join(dir, 'nginx.conf'), `worker_processes 1;
events {}
http {
  access_log off;
  error_log ${dir}/error.log;
${upstreams}
  server {
    listen 127.0.0.1:${port};
    listen 127.0.0.1:${h2port} http2;
${locations}
  }
}
`);
  const proxy = await startProxy(dir, 'nginx.conf', port);
  await waitFor('the HTTP/2 port', () => canConnect(h2port));
  return { proxy, port, session: await open(h2port) };
}

const pathOf = (a: Answer | 'cancelled'): string => (a === 'cancelled' ? a : `${a.status} ${a.body.split(' conn ')[0]}`);
const connOf = (a: Answer | 'cancelled'): string => (a === 'cancelled' ? a : a.body.split(' conn ')[1]!.split(' ')[0]!);

describe('pipelined requests on the tsgi link', () => {
  let t: ReturnType<typeof tempDir>;
  let port: number;
  let proxy: Proc;
  const fakes = {} as Record<Mode, Fake>;
  let session: http2.ClientHttp2Session;
  let kr: Fake;

  before(async () => {
    t = tempDir('pipeline');
    for (const m of ['pipelining', 'old', 'close-after-first', 'late'] as Mode[]) fakes[m] = await fakeBackend(join(t.dir, `${m}.sock`), m);
    kr = await fakeBackend(join(t.dir, 'kr.sock'), 'pipelining');
    const locations = (['pipelining', 'old', 'close-after-first', 'late'] as Mode[])
      .map((m) => `    location /${m}/ { include uwsgi_params; uwsgi_pass unix:${t.dir}/${m}.sock; }`).join('\n') +
      `\n    location /nopipe/ { include uwsgi_params; uwsgi_pass unix:${t.dir}/pipelining.sock; uwsgi_tsgi_pipelining off; }` +
      `\n    location /kr/ { include uwsgi_params; uwsgi_pass kr; }`;
    ({ proxy, port, session } = await startH2Proxy(t.dir, `  upstream kr { server unix:${t.dir}/kr.sock; keepalive 8; keepalive_requests 4; }`, locations));
  });

  after(async () => {
    session?.close();
    await proxy?.stop('SIGQUIT');
    for (const f of Object.values(fakes)) f.server.close();
    kr?.server.close();
    t?.cleanup();
  });

  test('the requests of one turn share one kept connection and one write; each client gets its own answer', async () => {
    const f = fakes.pipelining;
    // The first request opens the link and learns that the backend pipelines.
    const [first] = await batch(session, [{ path: '/pipelining/warm' }]);
    assert.equal(pathOf(first!), '200 /pipelining/warm');
    const before = f.connections();
    const paths = ['/pipelining/a', '/pipelining/b', '/pipelining/c', '/pipelining/d'];
    const answers = await batch(session, paths.map((path) => ({ path })));
    assert.deepEqual(answers.map(pathOf), paths.map((p) => `200 ${p}`));
    assert.equal(f.connections(), before, 'no new connection: all four went on the kept link');
    assert.equal(new Set(answers.map(connOf)).size, 1);
    assert.equal(f.reads[f.reads.length - 1], 4, 'the backend read the four packets at once');
  });

  test('past four requests in a turn, the others take connections of their own', async () => {
    const f = fakes.pipelining;
    await batch(session, [{ path: '/pipelining/warm' }]);
    const before = f.connections();
    const paths = ['/pipelining/1', '/pipelining/2', '/pipelining/3', '/pipelining/4', '/pipelining/5', '/pipelining/6'];
    const answers = await batch(session, paths.map((path) => ({ path })));
    assert.deepEqual(answers.map(pathOf), paths.map((p) => `200 ${p}`));
    const byConn = new Map<string, number>();
    for (const a of answers) byConn.set(connOf(a), (byConn.get(connOf(a)) ?? 0) + 1);
    assert.deepEqual([...byConn.values()].sort(), [1, 1, 4], 'four on the kept link, one each on two new ones');
    assert.equal(f.connections(), before + 2);
  });

  test('a backend that reads one request at a time (X-Tsgi-Keepalive: 1) never gets two on one connection', async () => {
    const f = fakes.old;
    await batch(session, [{ path: '/old/warm' }]);
    const paths = ['/old/a', '/old/b', '/old/c'];
    const answers = await batch(session, paths.map((path) => ({ path })));
    assert.deepEqual(answers.map(pathOf), paths.map((p) => `200 ${p}`));
    assert.equal(new Set(answers.map(connOf)).size, 3);
    assert.ok(f.reads.every((n) => n === 1), `reads: ${f.reads.join(',')}`);
  });

  test('uwsgi_tsgi_pipelining off: the proxy offers TSGI_KEEPALIVE=1 and sends one request at a time per link', async () => {
    const f = fakes.pipelining;
    await batch(session, [{ path: '/nopipe/warm' }]);
    const from = f.reads.length;
    const answers = await batch(session, ['/nopipe/a', '/nopipe/b', '/nopipe/c'].map((path) => ({ path })));
    assert.deepEqual(answers.map(pathOf), ['200 /nopipe/a', '200 /nopipe/b', '200 /nopipe/c']);
    assert.ok(answers.every((a) => a !== 'cancelled' && a.body.endsWith(' ka 1')));
    assert.equal(new Set(answers.map(connOf)).size, 3);
    assert.ok(f.reads.slice(from).every((n) => n === 1), `reads: ${f.reads.slice(from).join(',')}`);
  });

  test('requests with a body (POST) are never pipelined', async () => {
    const f = fakes.pipelining;
    await batch(session, [{ path: '/pipelining/warm' }]);
    const from = f.reads.length;
    const answers = await batch(session, ['/pipelining/p1', '/pipelining/p2', '/pipelining/p3'].map((path) => ({ path, method: 'POST', body: 'data' })));
    assert.deepEqual(answers.map(pathOf), ['200 /pipelining/p1', '200 /pipelining/p2', '200 /pipelining/p3']);
    assert.equal(new Set(answers.map(connOf)).size, 3);
    assert.ok(f.reads.slice(from).every((n) => n === 1), `reads: ${f.reads.slice(from).join(',')}`);
  });

  test('a backend that closes after the first answer of a batch: the others are sent again and answered, nothing logged as failed', async () => {
    const f = fakes['close-after-first'];
    await batch(session, [{ path: '/close-after-first/warm' }]);
    const before = f.connections();
    const paths = ['/close-after-first/a', '/close-after-first/b', '/close-after-first/c'];
    const answers = await batch(session, paths.map((path) => ({ path })));
    assert.deepEqual(answers.map(pathOf), paths.map((p) => `200 ${p}`));
    assert.equal(f.connections(), before + 2, 'the two requests left unanswered went on new connections');
    assert.doesNotMatch(readText(join(t.dir, 'error.log')), /close-after-first/);
  });

  test('a client that cancels its request in a batch: the others are answered and the link is kept', async () => {
    const f = fakes.late;
    await batch(session, [{ path: '/late/warm' }]);
    const before = f.connections();
    const answers = await batch(session, [{ path: '/late/a' }, { path: '/late/b', cancel: true }, { path: '/late/c' }]);
    assert.deepEqual(answers.map(pathOf), ['200 /late/a', 'cancelled', '200 /late/c']);
    assert.equal(f.reads[f.reads.length - 1], 3, 'the cancelled request had left with the others');
    const [next] = await batch(session, [{ path: '/late/next' }]);
    assert.equal(pathOf(next!), '200 /late/next');
    assert.equal(f.connections(), before, 'the link carried the cancelled answer and went on');
  });

  test("the upstream's keepalive_requests counts pipelined responses: a link that carried 4 is closed", async () => {
    const [warm] = await batch(session, [{ path: '/kr/warm' }]);
    assert.equal(pathOf(warm!), '200 /kr/warm');
    const answers = await batch(session, ['/kr/a', '/kr/b', '/kr/c'].map((path) => ({ path })));
    assert.equal(new Set(answers.map(connOf)).size, 1, 'the three went on the warm link');
    assert.equal(connOf(answers[0]!), connOf(warm!));
    const before = kr.connections();
    const [next] = await batch(session, [{ path: '/kr/next' }]);
    assert.equal(pathOf(next!), '200 /kr/next');
    assert.equal(kr.connections(), before + 1, 'four responses reached keepalive_requests 4: the next request needed a new connection');
  });

  test('HTTP/1.1 clients are served as before through a pipelining backend', async () => {
    const r = await get(port, '/pipelining/h1');
    assert.equal(r.status, 200);
    assert.match(r.body, /^\/pipelining\/h1 conn \d+ ka 2$/);
    assert.equal(r.headers.has('x-tsgi-keepalive'), false, 'the link header is not passed to clients');
  });
});

describe('pipelined requests to the real tsgi (one Python worker)', () => {
  let t: ReturnType<typeof tempDir>;
  let tsgi: RunningProcess;
  let proxy: Proc;
  let session: http2.ClientHttp2Session;

  before(async () => {
    t = tempDir('pipeline-tsgi');
    const sock = join(t.dir, 'app.sock');
    tsgi = await startTsgi(['-s', sock, '-p', '1', '--wsgi-file', join(repoRoot, 'test/fixtures/apps/behaviours.py')], { env: activatedEnv(sharedVenv()) });
    ({ proxy, session } = await startH2Proxy(t.dir, '', `    location / { include uwsgi_params; uwsgi_pass unix:${sock}; }`));
  });

  after(async () => {
    session?.close();
    await proxy?.stop('SIGQUIT');
    if (tsgi) await stopProcess(tsgi);
    t?.cleanup();
  });

  test('batches of requests, a POST and HEADs among them: every client gets its own answer, in any number of rounds', async () => {
    await batch(session, [{ path: '/warm' }]);
    for (let round = 0; round < 5; round++) {
      // A HEAD's answer has a Content-Length and no body: the answers behind it on the link must still parse.
      const reqs = Array.from({ length: 7 }, (_, i) => (i === 3 ? { path: '/echo', method: 'POST', body: `body ${round}` } : { path: `/r${round}/${i}`, method: i === 1 || i === 5 ? 'HEAD' : 'GET' }));
      const answers = await batch(session, reqs);
      assert.deepEqual(answers.map((a) => (a === 'cancelled' ? a : `${a.status} ${a.body}`)), reqs.map((r) => (r.method === 'POST' ? `200 body ${round}` : r.method === 'HEAD' ? '200 ' : `200 ok ${r.path}`)));
    }
    assert.doesNotMatch(readText(join(t.dir, 'error.log')), /upstream/);
  });
});
