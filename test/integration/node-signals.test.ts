/**
 * Node workers under the master's signals, as Python workers are: SIGTERM answers everything accepted and
 * exits 0, SIGINT stops at once, SIGHUP reloads without failing a request, a dead worker is respawned.
 * Also the master's socket options and logging options, which apply to Node workers unchanged.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { join } from 'node:path';
import { until } from '../helpers/emperor.js';
import { KeptAliveConnection } from '../helpers/http-raw.js';
import { cleanEnv, NODE_APPS } from '../helpers/node-apps.js';
import { childPids, freePort, httpRequest, startTsgi, stopProcess, tempDir, writeFiles } from '../helpers/procs.js';
import { getVars, rawExchange, uwsgiPacket, uwsgiRequest } from '../helpers/uwsgi-client.js';

const APP = join(NODE_APPS, 'behaviours.mjs');
const env = cleanEnv();

test('SIGTERM: requests in progress over uwsgi and HTTP are answered, then the master exits 0', async () => {
  const dir = tempDir();
  const sock = join(dir, 't.sock');
  const port = await freePort();
  const tsgi = await startTsgi(['-s', sock, '--http-socket', `127.0.0.1:${port}`, '-p', '2', '--wsgi-file', APP, '--vacuum'], { env });
  const slow = Array.from({ length: 4 }, (_, i) => uwsgiRequest(sock, getVars(`/sleep-${i}`, { PATH_INFO: '/sleep', QUERY_STRING: '1' })));
  // A keep-alive HTTP client with a request in progress: it is answered, then told the connection closes.
  const agent = new http.Agent({ keepAlive: true });
  const overHttp = new Promise<{ status: number; body: string; connection: string | undefined }>((resolve, reject) => {
    http.get(`http://127.0.0.1:${port}/sleep?1`, { agent }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, connection: res.headers.connection }));
    }).on('error', reject);
  });
  await tsgi.waitFor(/ready/);
  await new Promise((r) => setTimeout(r, 300));
  tsgi.kill('SIGTERM');
  const answers = await Promise.all(slow);
  assert.deepEqual(answers.map((a) => a.body.toString()), [0, 1, 2, 3].map((i) => `slept /sleep-${i}`));
  const h = await overHttp;
  assert.equal(h.status, 200);
  assert.equal(h.body, 'slept /sleep?1');
  assert.equal(h.connection, 'close', 'the keep-alive client is told the connection ends');
  agent.destroy();
  assert.deepEqual(await tsgi.exited, { code: 0, signal: null }, tsgi.output());
  assert.match(tsgi.output(), /worker 1 \(pid: \d+\) stopped \(exited with status 0\)/);
  assert.equal(existsSync(sock), false, 'vacuum removed the socket');
});

test('SIGINT stops at once, even with a request in progress', async () => {
  const dir = tempDir();
  const sock = join(dir, 'i.sock');
  const tsgi = await startTsgi(['-s', sock, '--wsgi-file', APP], { env });
  const hanging = rawExchange(sock, uwsgiPacket(getVars('/sleep', { QUERY_STRING: '60' })));
  await new Promise((r) => setTimeout(r, 300));
  tsgi.kill('SIGINT');
  assert.equal((await tsgi.exited).code, 0);
  assert.equal((await hanging).length, 0, 'the request in progress was cut');
  assert.match(tsgi.output(), /stopping now \(SIGINT\)/);
});

test('SIGHUP reloads gracefully: new Node workers, no uwsgi or HTTP request refused or failed', async () => {
  const dir = tempDir();
  const sock = join(dir, 'h.sock');
  const port = await freePort();
  const tsgi = await startTsgi(['-s', sock, '--http-socket', `127.0.0.1:${port}`, '-p', '2', '--wsgi-file', APP], { env });
  try {
    const before = childPids(tsgi.pid).sort();
    let stop = false;
    let ok = 0;
    const failures: string[] = [];
    const load = async (one: () => Promise<number>): Promise<void> => {
      while (!stop) {
        try {
          const status = await one();
          if (status === 200) ok++;
          else failures.push(`status ${status}`);
        } catch (err) {
          failures.push(String(err));
        }
      }
    };
    const loads = [
      load(async () => (await uwsgiRequest(sock, getVars('/pid'))).status),
      load(async () => (await httpRequest(`http://127.0.0.1:${port}/pid`)).status),
    ];
    for (let i = 0; i < 2; i++) {
      const done = tsgi.output().match(/graceful reload done/g)?.length ?? 0;
      tsgi.kill('SIGHUP');
      await tsgi.waitFor(new RegExp(`(graceful reload done[\\s\\S]*){${done + 1}}`));
    }
    stop = true;
    await Promise.all(loads);
    assert.deepEqual(failures, [], 'no request failed during the reloads');
    assert.ok(ok > 0);
    await tsgi.waitFor(/(retired[\s\S]*){4}/);
    const after = childPids(tsgi.pid).sort();
    assert.equal(after.length, 2);
    assert.ok(after.every((p) => !before.includes(p)), 'all workers are new');
  } finally {
    assert.equal((await stopProcess(tsgi)).code, 0);
  }
});

test('SIGHUP: a kept-alive HTTP connection idle at the reload is not cut; its next request is answered, with Connection: close', async () => {
  const port = await freePort();
  // A keep-alive timeout far beyond the test: the old worker closes a connection that stays silent after a
  // grace of its own (5 s), and the one that speaks (within the grace) when it has answered.
  const tsgi = await startTsgi(['--http-socket', `127.0.0.1:${port}`, '--socket-timeout', '120', '--wsgi-file', APP], { env });
  const conn = await KeptAliveConnection.open(port);
  const silent = await KeptAliveConnection.open(port);
  try {
    const first = await conn.get('/pid');
    assert.equal(first.headers.get('connection'), 'keep-alive');
    const old = first.body.toString();
    assert.equal((await silent.get('/pid')).body.toString(), old);
    // The worker's listening socket (descriptor 5): once it is closed, the worker is stopping.
    const listener = `/proc/${old}/fd/5`;
    const link = readlinkSync(listener);
    assert.match(link, /^socket:/);
    tsgi.kill('SIGHUP');
    await tsgi.waitFor(/graceful reload done/);
    await until('the old worker has stopped accepting', () => {
      try {
        return readlinkSync(listener) !== link;
      } catch {
        return true;
      }
    });
    const second = await conn.get('/pid');
    assert.equal(second.status, 200);
    assert.equal(second.body.toString(), old, 'the old worker answers the connection it holds');
    assert.equal(second.headers.get('connection'), 'close');
    await conn.closed;
    await silent.closed;
    await tsgi.waitFor(new RegExp(`worker 1 \\(pid: ${old}, generation 1\\) retired \\(exited with status 0\\)`));
  } finally {
    conn.close();
    silent.close();
    assert.equal((await stopProcess(tsgi)).code, 0);
  }
});

test('a reload whose new app does not load keeps the old workers serving', async () => {
  const dir = tempDir();
  const sock = join(dir, 'b.sock');
  const version = (n: number): string => `export function application(e, s) {\n  s("200 OK", []);\n  return ["version ${n}"];\n}\n`;
  writeFiles(dir, { 'wsgi.mjs': version(1) });
  const tsgi = await startTsgi(['-s', sock, '-w', 'wsgi', '-p', '2'], { cwd: dir, env });
  try {
    writeFiles(dir, { 'wsgi.mjs': 'throw new Error("deliberately broken");\n' });
    tsgi.kill('SIGHUP');
    await tsgi.waitFor(/reload failed: the new app could not be loaded \(traceback above\); the previous workers keep serving/);
    assert.match(tsgi.output(), /cannot load the app wsgi:application:\nError: deliberately broken/);
    assert.equal((await uwsgiRequest(sock, getVars('/'))).body.toString(), 'version 1');
    // ESM caches modules by URL, but every worker is a new process: the next reload loads the new file.
    writeFiles(dir, { 'wsgi.mjs': version(2) });
    const old = childPids(tsgi.pid);
    tsgi.kill('SIGHUP');
    await tsgi.waitFor(/graceful reload done/);
    // An old worker may still take a connection that arrives before it has seen its SIGHUP (it answers it,
    // with the old app): once the old workers are gone, only the new app answers.
    for (let i = 0; i < 600 && old.some((p) => existsSync(`/proc/${p}`)); i++) await new Promise((r) => setTimeout(r, 50));
    assert.equal((await uwsgiRequest(sock, getVars('/'))).body.toString(), 'version 2');
  } finally {
    await stopProcess(tsgi);
  }
});

test('a worker killed from outside, or crashed by an exception outside any request, is replaced', async () => {
  const dir = tempDir();
  const sock = join(dir, 'k.sock');
  const tsgi = await startTsgi(['-s', sock, '--wsgi-file', APP], { env });
  try {
    const [first] = childPids(tsgi.pid);
    process.kill(first!, 'SIGKILL');
    await tsgi.waitFor(new RegExp(`worker 1 \\(pid: ${first}\\) killed by SIGKILL; respawning`));
    const second = Number((await uwsgiRequest(sock, getVars('/pid'))).body.toString());
    assert.notEqual(second, first);
    assert.equal((await uwsgiRequest(sock, getVars('/throw-later'))).body.toString(), 'answered before the timer');
    await tsgi.waitFor(/uncaught exception outside any request; the worker finishes its requests and exits to be replaced:\nError: thrown from a timer/);
    await tsgi.waitFor(new RegExp(`worker 1 \\(pid: ${second}\\) exited with status 1; respawning`));
    const third = Number((await uwsgiRequest(sock, getVars('/pid'))).body.toString());
    assert.ok(third !== second && third !== first, 'a new worker serves');
  } finally {
    await stopProcess(tsgi);
  }
});

test('chmod-socket, logto and disable-logging apply to Node workers', async () => {
  const dir = tempDir();
  const sock = join(dir, 'm.sock');
  const log = join(dir, 'tsgi.log');
  const tsgi = await startTsgi(['-s', sock, '--chmod-socket', '660', '--wsgi-file', APP, '--logto', log, '--disable-logging'], { env, ready: false });
  try {
    for (let i = 0; i < 300 && !/ready/.test(existsSync(log) ? readFileSync(log, 'utf8') : ''); i++) await new Promise((r) => setTimeout(r, 50));
    assert.equal(statSync(sock).mode & 0o777, 0o660);
    assert.equal((await uwsgiRequest(sock, getVars('/hello'))).status, 200);
    assert.equal((await uwsgiRequest(sock, getVars('/raise'))).status, 500);
    for (let i = 0; i < 300 && !/boom from the app/.test(readFileSync(log, 'utf8')); i++) await new Promise((r) => setTimeout(r, 50));
    const text = readFileSync(log, 'utf8');
    assert.match(text, /exception in the app \(GET \/raise\), answered 500:\nError: boom from the app/, 'errors are still logged');
    assert.doesNotMatch(text, /\[pid: \d+\|app: 0\|req:/, 'no request lines');
    assert.equal(tsgi.output(), '', 'nothing on stderr: everything went to the logto file');
  } finally {
    await stopProcess(tsgi);
  }
});

test('--http with a Node app: slow clients sending a header byte at a time do not delay a normal request', async () => {
  const port = await freePort();
  const tsgi = await startTsgi(['--http', `127.0.0.1:${port}`, '--wsgi-file', APP, '--http-timeout', '30'], { env });
  const slow: net.Socket[] = [];
  try {
    for (let i = 0; i < 30; i++) {
      const s = net.connect(port, '127.0.0.1');
      s.on('error', () => {});
      s.write('GET /slow HTTP/1.1\r\nHost: x\r\n');
      slow.push(s);
    }
    const ticker = setInterval(() => slow.forEach((s) => s.write('X')), 200);
    try {
      const r = await httpRequest(`http://127.0.0.1:${port}/fast`);
      assert.equal(r.body.toString(), 'ok /fast');
      assert.ok(slow.every((s) => !s.destroyed), 'the slow clients are still connected, held by node, not by a busy worker');
    } finally {
      clearInterval(ticker);
    }
  } finally {
    slow.forEach((s) => s.destroy());
    assert.equal((await stopProcess(tsgi)).code, 0);
  }
});
