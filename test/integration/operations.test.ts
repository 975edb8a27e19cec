/**
 * Operating a running server: threads, harakiri, recycling (max-requests, reload-on-rss, lifetime), reloads
 * triggered by files and the master FIFO, the stats server, log rotation.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, renameSync, utimesSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { repoRoot } from '../helpers/paths.js';
import { activatedEnv, workerPids, freePort, httpRequest, sharedVenv, startTsgi, stopProcess, tempDir } from '../helpers/procs.js';
import { parseResponses, rawHttp } from '../helpers/http-raw.js';
import { getVars, uwsgiRequest } from '../helpers/uwsgi-client.js';

const APP = join(repoRoot, 'test/fixtures/apps/behaviours.py');
const env = activatedEnv(sharedVenv());

function touch(path: string): void {
  if (!existsSync(path)) writeFileSync(path, '');
  const t = new Date(Date.now() + 5000); // clearly newer than before, whatever the file system's resolution
  utimesSync(path, t, t);
}

async function get(port: number, path: string): Promise<{ status: number; body: string }> {
  const { bytes } = await rawHttp(port, `GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
  const r = parseResponses(bytes)[0];
  return { status: r?.status ?? 0, body: r?.body.toString() ?? '' };
}

test('threads: one worker serves N requests at once, over uwsgi and over HTTP', async () => {
  const dir = tempDir();
  const sock = join(dir, 't.sock');
  const port = await freePort();
  const tsgi = await startTsgi(['-s', sock, '--http-socket', `127.0.0.1:${port}`, '-p', '1', '--threads', '4', '--wsgi-file', APP], { env });
  try {
    const viaUwsgi = await Promise.all(Array.from({ length: 4 }, () => uwsgiRequest(sock, getVars('/barrier', { QUERY_STRING: '4' }))));
    assert.deepEqual(viaUwsgi.map((r) => r.body.toString()), Array(4).fill('passed multithread'));
    const viaHttp = await Promise.all(Array.from({ length: 4 }, () => get(port, '/barrier?4')));
    assert.deepEqual(viaHttp.map((r) => r.body), Array(4).fill('passed multithread'), 'the router keeps one link per thread');
    assert.equal(workerPids(tsgi.pid).length, 1, 'one worker does it all');
  } finally {
    assert.equal((await stopProcess(tsgi)).code, 0, tsgi.output());
  }
});

test('max-requests: workers recycle themselves and no request fails', async () => {
  const dir = tempDir();
  const sock = join(dir, 'm.sock');
  const tsgi = await startTsgi(['-s', sock, '-p', '2', '--max-requests', '5', '--wsgi-file', APP], { env });
  try {
    const pids = new Set<string>();
    for (let i = 0; i < 30; i++) {
      const r = await uwsgiRequest(sock, getVars('/pid'));
      assert.equal(r.status, 200);
      pids.add(r.body.toString());
    }
    assert.ok(pids.size >= 4, `30 requests at 5 per worker lifetime were served by ${pids.size} processes`);
    assert.match(tsgi.output(), /recycling after 5 requests \(max-requests\)/);
    assert.match(tsgi.output(), /recycled itself \(max-requests\); respawning/);
  } finally {
    await stopProcess(tsgi);
  }
});

test('reload-on-rss 100 with an app leaking 1 MB a request: the worker is recycled, no request fails', async () => {
  const port = await freePort();
  const tsgi = await startTsgi(['--http-socket', `127.0.0.1:${port}`, '-p', '1', '--reload-on-rss', '100', '--wsgi-file', APP], { env });
  try {
    const pids = new Set<string>();
    for (let i = 0; i < 400 && pids.size < 2; i++) {
      const r = await get(port, '/leak');
      assert.equal(r.status, 200, `request ${i}`);
      pids.add(r.body.split(' ')[0]!);
    }
    assert.equal(pids.size, 2, 'the leaking worker was replaced');
    assert.match(tsgi.output(), /recycling worker 1 \(pid: \d+\): reload-on-rss: \d+ MB > 100 MB; its replacement starts first/);
  } finally {
    await stopProcess(tsgi);
  }
});

test('max-worker-lifetime: an old worker is replaced, the replacement first', async () => {
  const dir = tempDir();
  const sock = join(dir, 'l.sock');
  const tsgi = await startTsgi(['-s', sock, '-p', '1', '--max-worker-lifetime', '1', '--wsgi-file', APP], { env });
  try {
    await tsgi.waitFor(/recycling worker 1 \(pid: \d+\): max-worker-lifetime: \d+ s; its replacement starts first/);
    await tsgi.waitFor(/retired/);
    assert.equal((await uwsgiRequest(sock, getVars('/x'))).status, 200);
  } finally {
    await stopProcess(tsgi);
  }
});

test('touch-reload and touch-chain-reload', async () => {
  const dir = tempDir();
  const sock = join(dir, 'r.sock');
  const reload = join(dir, 'reload.touch');
  const chain = join(dir, 'chain.touch');
  writeFileSync(reload, '');
  writeFileSync(chain, '');
  const tsgi = await startTsgi(['-s', sock, '-p', '2', '--touch-reload', reload, '--touch-chain-reload', chain, '--wsgi-file', APP], { env });
  try {
    const before = workerPids(tsgi.pid).sort();
    touch(reload);
    await tsgi.waitFor(/touch-reload: .*reload\.touch changed[\s\S]*graceful reload done/);
    touch(chain);
    await tsgi.waitFor(/touch-chain-reload: .*chain\.touch changed[\s\S]*graceful reload done: generation 3/);
    // One at a time: the new worker 1 serves before the old worker 1 stops, then worker 2 is replaced.
    const log = tsgi.output().slice(tsgi.output().indexOf('chain reload: replacing'));
    const order = [...log.matchAll(/spawned worker (\d) \(pid: \d+, generation 3\)|worker (\d) \(pid: \d+, generation 2\) retired/g)].map((m) => (m[1] ? `new ${m[1]}` : `old ${m[2]} gone`));
    assert.deepEqual(order, ['new 1', 'old 1 gone', 'new 2', 'old 2 gone']);
    assert.equal((await uwsgiRequest(sock, getVars('/x'))).status, 200);
    const after = workerPids(tsgi.pid).sort();
    assert.ok(after.every((p) => !before.includes(p)));
  } finally {
    await stopProcess(tsgi);
  }
});

test('master-fifo: r reloads, c chain-reloads, s logs the stats, q stops gracefully', async () => {
  const dir = tempDir();
  const sock = join(dir, 'f.sock');
  const fifo = join(dir, 'master.fifo');
  const tsgi = await startTsgi(['-s', sock, '-p', '2', '--master-fifo', fifo, '--wsgi-file', APP], { env });
  writeFileSync(fifo, 'r');
  await tsgi.waitFor(/graceful reload done: generation 2/);
  writeFileSync(fifo, 'c');
  await tsgi.waitFor(/chain reload: replacing 2 worker\(s\)[\s\S]*graceful reload done: generation 3/);
  writeFileSync(fifo, 's');
  await tsgi.waitFor(/stats:\n\{"version":/);
  writeFileSync(fifo, 'q');
  assert.deepEqual(await tsgi.exited, { code: 0, signal: null });
  assert.equal(existsSync(fifo), false, 'the FIFO is removed');
});

const WORKER_KEYS: Record<string, string> = {
  id: 'number', pid: 'number', requests: 'number', exceptions: 'number', status: 'string', rss: 'number', vsz: 'number',
  running_time: 'number', last_spawn: 'number', respawn_count: 'number', tx: 'number', avg_rt: 'number', apps: 'object', cores: 'object',
};
const TOP_KEYS: Record<string, string> = {
  version: 'string', listen_queue: 'number', load: 'number', pid: 'number', uid: 'number', gid: 'number', cwd: 'string', sockets: 'object', workers: 'object',
};

function validateStats(doc: Record<string, unknown>, workers: number): void {
  for (const [k, t] of Object.entries(TOP_KEYS)) assert.equal(typeof doc[k], t, `top-level ${k} is a ${t}`);
  const ws = doc.workers as Array<Record<string, unknown>>;
  assert.equal(ws.length, workers);
  for (const w of ws) {
    for (const [k, t] of Object.entries(WORKER_KEYS)) assert.equal(typeof w[k], t, `worker ${k} is a ${t}`);
    assert.ok(['idle', 'busy', 'cheap', 'pause'].includes(w.status as string), `status ${w.status}`);
    assert.ok(Array.isArray(w.apps) && Array.isArray(w.cores));
    assert.ok((w.rss as number) > 0, 'rss is measured');
  }
  for (const s of doc.sockets as Array<Record<string, unknown>>) {
    assert.equal(typeof s.name, 'string');
    assert.equal(typeof s.proto, 'string');
    assert.equal(typeof s.queue, 'number');
  }
}

function readAll(addr: string | number, request?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = typeof addr === 'number' ? net.connect(addr, '127.0.0.1') : net.connect(addr);
    let data = '';
    c.on('connect', () => request && c.write(request));
    c.on('data', (d) => (data += d));
    c.on('end', () => resolve(data));
    c.on('error', reject);
  });
}

test("stats: uWSGI 2.0's JSON schema on a Unix socket; with stats-http, / is the JSON and /metrics Prometheus text", async () => {
  const dir = tempDir();
  const sock = join(dir, 's.sock');
  const statsSock = join(dir, 'stats.sock');
  const tsgi = await startTsgi(['-s', sock, '-p', '3', '--threads', '2', '--stats', statsSock, '--wsgi-file', APP], { env });
  try {
    for (let i = 0; i < 5; i++) await uwsgiRequest(sock, getVars('/counted'));
    const doc = JSON.parse(await readAll(statsSock)) as Record<string, unknown>;
    validateStats(doc, 3);
    const ws = doc.workers as Array<{ requests: number; cores: unknown[] }>;
    assert.equal(ws.reduce((n, w) => n + w.requests, 0), 5, 'the requests are counted');
    assert.equal(ws[0]!.cores.length, 2, 'one core per thread');
  } finally {
    await stopProcess(tsgi);
  }
  const port = await freePort();
  const httpStats = await startTsgi(['-s', sock, '-p', '2', '--stats', `127.0.0.1:${port}`, '--stats-http', '--wsgi-file', APP], { env });
  try {
    const json = await readAll(port, 'GET / HTTP/1.0\r\n\r\n');
    assert.match(json, /^HTTP\/1\.0 200 OK\r\nContent-Type: application\/json/);
    validateStats(JSON.parse(json.slice(json.indexOf('\r\n\r\n') + 4)) as Record<string, unknown>, 2);
    const metrics = await readAll(port, 'GET /metrics HTTP/1.0\r\n\r\n');
    assert.match(metrics, /Content-Type: text\/plain; version=0\.0\.4/);
    assert.match(metrics, /^# TYPE tsgi_worker_requests_total counter$/m);
    assert.match(metrics, /^tsgi_worker_requests_total\{worker="1",pid="\d+"\} \d+$/m);
  } finally {
    await stopProcess(httpStats);
  }
});

test('log rotation: touch-logreopen and the FIFO reopen the logto file in the master, workers and router; log-maxsize rotates', async () => {
  const dir = tempDir();
  const log = join(dir, 'app.log');
  const port = await freePort();
  const flag = join(dir, 'reopen.touch');
  writeFileSync(flag, '');
  const tsgi = await startTsgi(['--http-socket', `127.0.0.1:${port}`, '-p', '1', '--logto', log, '--touch-logreopen', flag, '--wsgi-file', APP], { env, ready: false });
  for (let i = 0; i < 300 && !/ready:/.test(existsSync(log) ? readFileSync(log, 'utf8') : ''); i++) await new Promise((r) => setTimeout(r, 100));
  try {
    await get(port, '/before-rotation');
    renameSync(log, `${log}.1`); // what logrotate does
    touch(flag);
    for (let i = 0; i < 100 && !existsSync(log); i++) await new Promise((r) => setTimeout(r, 100));
    await get(port, '/after-rotation');
    await get(port, '/raise'); // an error line from the worker
    for (let i = 0; i < 100 && !/RuntimeError/.test(existsSync(log) ? readFileSync(log, 'utf8') : ''); i++) await new Promise((r) => setTimeout(r, 100));
    const fresh = readFileSync(log, 'utf8');
    const old = readFileSync(`${log}.1`, 'utf8');
    assert.match(old, /GET \/before-rotation/);
    assert.match(fresh, /log reopened \(touch-logreopen/);
    assert.match(fresh, /GET \/after-rotation/);
    assert.match(fresh, /RuntimeError: boom from the app/);
    assert.doesNotMatch(old, /after-rotation/);
  } finally {
    await stopProcess(tsgi);
  }

  const small = join(dir, 'small.log');
  const rotating = await startTsgi(['--http-socket', `127.0.0.1:${port}`, '-p', '1', '--logto', small, '--log-maxsize', '3000', '--wsgi-file', APP], { env, ready: false });
  for (let i = 0; i < 300 && !/ready:/.test(existsSync(small) ? readFileSync(small, 'utf8') : ''); i++) await new Promise((r) => setTimeout(r, 100));
  try {
    for (let i = 0; i < 30; i++) await get(port, `/fill-${i}`);
    for (let i = 0; i < 100 && !readdirSync(dir).some((f) => /^small\.log\.\d+$/.test(f)); i++) await new Promise((r) => setTimeout(r, 100));
    assert.ok(readdirSync(dir).some((f) => /^small\.log\.\d+$/.test(f)), 'a rotated file small.log.TIMESTAMP exists');
  } finally {
    await stopProcess(rotating);
  }
});

test('SIGUSR1 writes the stats to the log', async () => {
  const dir = tempDir();
  const tsgi = await startTsgi(['-s', join(dir, 'u.sock'), '--wsgi-file', APP], { env });
  try {
    tsgi.kill('SIGUSR1');
    await tsgi.waitFor(/stats:\n\{"version":"[^"]+","listen_queue":\d+/);
  } finally {
    await stopProcess(tsgi);
  }
});

test('tsgi top shows the workers live in a real terminal (tmux)', { skip: existsSync('/usr/bin/tmux') ? false : 'tmux is not installed (scripts/test-all installs it)' }, async () => {
  const { spawnSync } = await import('node:child_process');
  const { tsgiBin } = await import('../helpers/paths.js');
  const dir = tempDir();
  const sock = join(dir, 'top.sock');
  const statsSock = join(dir, 'stats.sock');
  const tsgi = await startTsgi(['-s', sock, '-p', '2', '--stats', statsSock, '--wsgi-file', APP], { env });
  const session = `tsgi-top-${process.pid}`;
  try {
    for (let i = 0; i < 7; i++) await uwsgiRequest(sock, getVars('/seen'));
    const r = spawnSync('tmux', ['new-session', '-d', '-s', session, '-x', '120', '-y', '30', `${process.execPath} ${tsgiBin} top ${statsSock}`], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const pids = workerPids(tsgi.pid);
    let screen = '';
    for (let i = 0; i < 100; i++) {
      screen = spawnSync('tmux', ['capture-pane', '-p', '-t', session], { encoding: 'utf8' }).stdout;
      if (pids.every((p) => screen.includes(String(p))) && /req\/s/.test(screen)) break;
      await new Promise((res) => setTimeout(res, 100));
    }
    assert.match(screen, /tsgi top - .*stats\.sock/);
    assert.match(screen, /WID\s+PID\s+STATUS\s+REQ\s+RPS/);
    for (const p of pids) assert.ok(screen.includes(String(p)), `worker pid ${p} on screen:\n${screen}`);
    const total = [...screen.matchAll(/^\s+\d\s+\d+\s+\w+\s+(\d+)/gm)].reduce((n, m) => n + Number(m[1]), 0);
    assert.equal(total, 7, `the request counts add up to 7:\n${screen}`);
    spawnSync('tmux', ['send-keys', '-t', session, 'q']);
  } finally {
    spawnSync('tmux', ['kill-session', '-t', session]);
    await stopProcess(tsgi);
  }
});

test("log-format with uWSGI's variables; a JSON template gives lines that are always valid JSON; log-x-forwarded-for", async () => {
  const dir = tempDir();
  const port = await freePort();
  const plain = await startTsgi(['--http-socket', `127.0.0.1:${port}`, '--log-format', '%(addr) %(method) %(uri) %(status) %(size) "%(uagent)" [%(ltime)] %(msecs)ms', '--log-x-forwarded-for', '--wsgi-file', APP], { env });
  try {
    await rawHttp(port, 'GET /fmt?a=1 HTTP/1.1\r\nHost: x\r\nUser-Agent: probe/1.0\r\nX-Forwarded-For: 203.0.113.9, 10.0.0.1\r\nConnection: close\r\n\r\n');
    await plain.waitFor(/^203\.0\.113\.9 GET \/fmt\?a=1 200 \d+ "probe\/1\.0" \[\d\d\/\w{3}\/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] \d+ms$/m);
  } finally {
    await stopProcess(plain);
  }
  // Over uwsgi, as from nginx: vars can carry any byte, which is where JSON logs used to break.
  const sock = join(dir, 'json.sock');
  const json = await startTsgi(['-s', sock, '--log-format', '{"addr": "%(addr)", "method": "%(method)", "uri": "%(uri)", "status": %(status), "agent": "%(uagent)", "msecs": %(msecs)}', '--wsgi-file', APP], { env });
  try {
    const nasty = ['/q"uote', '/back\\slash', '/tab\tand\u0001ctl', '/caf\u00e9', '/nl\nbreak'];
    for (const uri of nasty) await uwsgiRequest(sock, getVars('/x', { REQUEST_URI: uri, HTTP_USER_AGENT: 'evil"agent\\\u0001' }));
    await json.waitFor(new RegExp(`(^\\{"addr"[^\\n]*\\n[\\s\\S]*){${nasty.length}}`, 'm'));
    const lines = json.output().split('\n').filter((l) => l.startsWith('{"addr"'));
    assert.equal(lines.length, nasty.length, 'one line per request, even with a newline in the URI');
    const parsed = lines.map((l) => JSON.parse(l) as { uri: string; status: number; agent: string });
    assert.deepEqual(parsed.map((p) => p.uri), nasty);
    assert.ok(parsed.every((p) => p.status === 200 && p.agent === 'evil"agent\\\u0001'));
  } finally {
    await stopProcess(json);
  }
});

test("log-format: a name that is no request variable is a logvar, as in uWSGI ('-' unless the app sets it); the start says so", async () => {
  const port = await freePort();
  const tsgi = await startTsgi(['--http-socket', `127.0.0.1:${port}`, '--log-format', 'LINE %(uri) [%(nosuch)]', '--wsgi-file', APP], { env: activatedEnv(sharedVenv()) });
  try {
    assert.match(tsgi.output(), /note: log-format: %\(nosuch\) is not a request variable: printed as the logvar the app sets with uwsgi\.set_logvar\(\)/);
    await httpRequest(`http://127.0.0.1:${port}/x`);
    await tsgi.waitFor(/^LINE \/x \[-\]$/m);
  } finally {
    await stopProcess(tsgi);
  }
});
