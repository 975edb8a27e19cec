/**
 * The master's operations on Node workers: max-requests (the worker recycles itself), harakiri (read from
 * the worker's scoreboard record, written in bulk once a second) and the stats server's per-worker counts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { join } from 'node:path';
import { cleanEnv, NODE_APPS } from '../helpers/node-apps.js';
import { KeptAliveConnection, rawHttp } from '../helpers/http-raw.js';
import { childPids, freePort, startTsgi, stopProcess, tempDir } from '../helpers/procs.js';
import { getVars, rawExchange, uwsgiPacket, uwsgiRequest } from '../helpers/uwsgi-client.js';

const APP = join(NODE_APPS, 'behaviours.mjs');
const env = cleanEnv();

test('max-requests: a Node worker recycles itself after N requests and a fresh one serves on', async () => {
  const dir = tempDir();
  const sock = join(dir, 'r.sock');
  const tsgi = await startTsgi(['-s', sock, '--wsgi-file', APP, '--max-requests', '3'], { env });
  try {
    const pids = new Set<string>();
    for (let i = 0; i < 7; i++) pids.add((await uwsgiRequest(sock, getVars('/pid'))).body.toString());
    await tsgi.waitFor(/recycling after 3 requests \(max-requests\)[\s\S]*reached max-requests and finishes its connections; its replacement starts now[\s\S]*retired \(exited with status 24\)/);
    assert.ok(pids.size >= 2, `requests were served by ${[...pids].join(', ')}`);
  } finally {
    assert.equal((await stopProcess(tsgi)).code, 0);
  }
});

test('max-requests: the replacement starts at once, while the recycled worker still holds its kept-alive connections', async () => {
  const port = await freePort();
  // One worker, one request per lifetime, a keep-alive timeout far beyond the test: the recycled worker
  // answers a connection that speaks once more, and keeps a silent one for its grace (5 s).
  const tsgi = await startTsgi(['--http-socket', `127.0.0.1:${port}`, '--max-requests', '1', '--socket-timeout', '120', '--wsgi-file', APP], { env });
  const conn = await KeptAliveConnection.open(port);
  const silent = await KeptAliveConnection.open(port);
  try {
    const old = (await conn.get('/pid')).body.toString();
    await tsgi.waitFor(/reached max-requests and finishes its connections; its replacement starts now/);
    const again = await conn.get('/pid');
    assert.equal(again.body.toString(), old, 'the recycled worker answers the connection it holds once more');
    assert.equal(again.headers.get('connection'), 'close');
    await conn.closed;
    const other = await KeptAliveConnection.open(port);
    const fresh = (await other.get('/pid')).body.toString();
    other.close();
    assert.notEqual(fresh, old, 'a new worker serves new connections');
    await silent.closed;
    await tsgi.waitFor(new RegExp(`worker 1 \\(pid: ${old}, generation 1\\) retired \\(exited with status 24\\)`));
    // Started when the old worker stopped accepting, not when it exited.
    assert.match(tsgi.output(), new RegExp(`reached max-requests and finishes its connections; its replacement starts now[\\s\\S]*spawned worker 1 \\(pid: ${fresh}\\)[\\s\\S]*\\(pid: ${old}, generation 1\\) retired`));
  } finally {
    conn.close();
    silent.close();
    assert.equal((await stopProcess(tsgi)).code, 0);
  }
});

test('harakiri: a Node worker whose request never ends is killed and replaced; -verbose says what was running', async () => {
  const dir = tempDir();
  const sock = join(dir, 'h.sock');
  const tsgi = await startTsgi(['-s', sock, '--wsgi-file', APP, '--harakiri', '2', '--harakiri-verbose'], { env });
  try {
    const [first] = childPids(tsgi.pid);
    const cut = await rawExchange(sock, uwsgiPacket(getVars('/never')), { timeoutMs: 30_000 });
    assert.equal(cut.length, 0, 'the request was cut by the kill');
    await tsgi.waitFor(new RegExp(`harakiri: worker 1 \\(pid: ${first}\\) killed: "GET /never" ran for \\d+\\.\\d s \\(harakiri 2\\)`));
    await tsgi.waitFor(/harakiri: 1 request\(s\) in progress, the oldest GET \/never since/);
    const r = await uwsgiRequest(sock, getVars('/pid'));
    assert.notEqual(r.body.toString(), String(first), 'a new worker serves');
  } finally {
    await stopProcess(tsgi);
  }
});

test("the stats server counts a Node worker's requests (written to the scoreboard in bulk)", async () => {
  const dir = tempDir();
  const sock = join(dir, 's.sock');
  const stats = join(dir, 'stats.sock');
  const tsgi = await startTsgi(['-s', sock, '-p', '2', '--wsgi-file', APP, '--stats', stats], { env });
  try {
    for (let i = 0; i < 10; i++) await uwsgiRequest(sock, getVars('/hello'));
    const read = (): Promise<{ workers: Array<{ pid: number; requests: number }> }> => new Promise((resolve, reject) => {
      let text = '';
      const c = net.connect(stats);
      c.on('data', (d: Buffer) => (text += d));
      c.on('end', () => resolve(JSON.parse(text)));
      c.on('error', reject);
    });
    let total = 0;
    for (let i = 0; i < 100 && total < 10; i++) {
      total = (await read()).workers.reduce((n, w) => n + w.requests, 0);
      if (total < 10) await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(total, 10);
    const pids = new Set(childPids(tsgi.pid));
    assert.ok((await read()).workers.every((w) => pids.has(w.pid)), 'every worker is listed with its pid');
  } finally {
    await stopProcess(tsgi);
  }
});

test("log-format on Node workers: uWSGI's variables, JSON templates always valid JSON, log-x-forwarded-for", async () => {
  const dir = tempDir();
  const port = await freePort();
  const plain = await startTsgi(['--http-socket', `127.0.0.1:${port}`, '--log-format', '%(addr) %(method) %(uri) %(status) %(size) "%(uagent)" [%(ltime)] %(msecs)ms w%(wid)', '--log-x-forwarded-for', '--wsgi-file', APP], { env });
  try {
    await rawHttp(port, 'GET /fmt?a=1 HTTP/1.1\r\nHost: x\r\nUser-Agent: probe/1.0\r\nX-Forwarded-For: 203.0.113.9, 10.0.0.1\r\nConnection: close\r\n\r\n');
    await plain.waitFor(/^203\.0\.113\.9 GET \/fmt\?a=1 200 \d+ "probe\/1\.0" \[\d\d\/\w{3}\/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] \d+ms w1$/m);
  } finally {
    await stopProcess(plain);
  }
  const sock = join(dir, 'json.sock');
  const json = await startTsgi(['-s', sock, '--log-format', '{"addr": "%(addr)", "method": "%(method)", "uri": "%(uri)", "status": %(status), "agent": "%(uagent)", "msecs": %(msecs)}', '--wsgi-file', APP], { env });
  try {
    const nasty = ['/q"uote', '/back\\slash', '/tab\tand\u0001ctl', '/nl\nbreak'];
    for (const uri of nasty) await uwsgiRequest(sock, getVars('/x', { REQUEST_URI: uri, HTTP_USER_AGENT: 'evil"agent\\\u0001' }));
    const lines = (): string[] => json.output().split('\n').filter((l) => l.startsWith('{"addr"'));
    for (let i = 0; i < 100 && lines().length < nasty.length; i++) await new Promise((r) => setTimeout(r, 50));
    assert.equal(lines().length, nasty.length, 'one line per request, even with a newline in the URI');
    const parsed = lines().map((l) => JSON.parse(l) as { uri: string; status: number; agent: string });
    assert.deepEqual(parsed.map((p) => p.uri), nasty);
    assert.ok(parsed.every((p) => p.status === 200 && p.agent === 'evil"agent\\\u0001'));
  } finally {
    await stopProcess(json);
  }
});
