/**
 * cheaper (uWSGI's adaptive process spawning, spare algorithm): between `cheaper` and `processes` workers run,
 * more when every running worker is busy, fewer when they idle; a worker it stops finishes its request first.
 *
 * No test here depends on timing: the app's /hold requests stay busy until the test creates their release file,
 * so "every worker busy" and "idle" are states the test sets, and every wait polls with a generous timeout.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { tsgiBin } from '../helpers/paths.js';
import { activatedEnv, freePort, httpRequest, sharedVenv, startTsgi, stopProcess, tempDir, workerPids, writeFiles, type RunningProcess } from '../helpers/procs.js';
import { getVars, parseResponse, rawExchange, uwsgiPacket } from '../helpers/uwsgi-client.js';

const env = activatedEnv(sharedVenv());

/** /hold?NAME answers (with the worker's pid) once the file release-NAME exists beside the app; / at once. */
const APP = `import os, time
HERE = os.path.dirname(os.path.abspath(__file__))

def application(environ, start_response):
    if environ['PATH_INFO'] == '/hold':
        release = os.path.join(HERE, 'release-' + environ['QUERY_STRING'])
        deadline = time.time() + 120
        while not os.path.exists(release) and time.time() < deadline:
            time.sleep(0.02)
    start_response('200 OK', [('Content-Type', 'text/plain')])
    return [str(os.getpid()).encode()]
`;

function appDir(): string {
  const dir = tempDir();
  writeFiles(dir, { 'app.py': APP });
  return dir;
}

interface WorkerStats {
  id: number;
  pid: number;
  status: string;
  accepting: number;
}

function readStats(sock: string): Promise<{ workers: WorkerStats[] }> {
  return new Promise((resolve, reject) => {
    const c = net.connect(sock);
    let data = '';
    c.on('data', (d) => (data += d));
    c.on('end', () => {
      try {
        resolve(JSON.parse(data) as { workers: WorkerStats[] });
      } catch (err) {
        reject(err);
      }
    });
    c.on('error', reject);
  });
}

/** Worker ids that run (have a process) and the ones that are cheap, from the stats server. */
async function counts(statsSock: string): Promise<{ running: number; cheap: number; busy: number }> {
  const { workers } = await readStats(statsSock);
  const cheap = workers.filter((w) => w.status === 'cheap');
  return { running: workers.length - cheap.length, cheap: cheap.length, busy: workers.filter((w) => w.status === 'busy').length };
}

/** Polls until `ok` holds (generous timeout: the machine may be busy), else fails with the server's log. */
async function until(what: string, ok: () => Promise<boolean> | boolean, tsgi: RunningProcess, timeoutMs = 90_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await ok())) {
    if (Date.now() > deadline) assert.fail(`timed out waiting until ${what}; log:\n${tsgi.output()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * How many workers the log says were cheaped. The line reaches the test through a pipe, a moment after the
 * process is gone from `ps`: wait for it rather than count right away.
 */
const cheapedLines = (tsgi: RunningProcess): number => (tsgi.output().match(/worker \d \(pid: \d+\) cheaped \(exited with status 0\)/g) ?? []).length;

const overHttp = (port: number) => async (path: string): Promise<{ status: number; body: string }> => {
  const r = await httpRequest(`http://127.0.0.1:${port}${path}`);
  return { status: r.status, body: r.body.toString() };
};

const overUwsgi = (sock: string) => async (path: string): Promise<{ status: number; body: string }> => {
  const r = parseResponse(await rawExchange(sock, uwsgiPacket(getVars(path)), { timeoutMs: 150_000 }));
  return { status: r.status, body: r.body.toString() };
};

/**
 * processes = 4, cheaper = 1: one worker at start; requests that keep every worker busy make the master start
 * the others one at a time up to 4; once they are answered, it stops them again down to 1. No request fails.
 */
async function growAndShrink(tsgi: RunningProcess, dir: string, statsSock: string, request: (path: string) => Promise<{ status: number; body: string }>): Promise<void> {
  assert.deepEqual(await counts(statsSock), { running: 1, cheap: 3, busy: 0 }, 'one worker runs, three are cheap');
  assert.equal(workerPids(tsgi.pid).length, 1, 'one worker process');
  // Six requests that stay busy: more than the four workers can hold, so all of them are busy all along.
  const held = Array.from({ length: 6 }, () => request('/hold?load'));
  await until('4 workers run, all busy', async () => {
    const c = await counts(statsSock);
    return c.running === 4 && c.busy === 4;
  }, tsgi);
  assert.equal(workerPids(tsgi.pid).length, 4, 'four worker processes');
  assert.match(tsgi.output(), /cheaper: all 1 worker\(s\) busy for 2 s; starting worker 2 \(2 of 4\)/);
  assert.match(tsgi.output(), /cheaper: all 3 worker\(s\) busy for 2 s; starting worker 4 \(4 of 4\)/);
  writeFileSync(join(dir, 'release-load'), '');
  const answers = await Promise.all(held);
  assert.deepEqual(answers.map((a) => a.status), Array(6).fill(200), 'every held request is answered');
  await until('back to 1 worker', async () => (await counts(statsSock)).running === 1 && workerPids(tsgi.pid).length === 1, tsgi);
  await until('three cheaped lines', () => cheapedLines(tsgi) >= 3, tsgi);
  assert.equal(cheapedLines(tsgi), 3, 'three workers cheaped');
  assert.deepEqual(await counts(statsSock), { running: 1, cheap: 3, busy: 0 });
  // The one worker left serves, over links the router has brought back to one.
  for (let i = 0; i < 5; i++) assert.equal((await request('/')).status, 200);
}

test('over HTTP (the router): processes = 4, cheaper = 1 starts 1 worker, grows to 4 under load and back to 1', async () => {
  const dir = appDir();
  const port = await freePort();
  const statsSock = join(dir, 'stats.sock');
  const tsgi = await startTsgi(['--http-socket', `127.0.0.1:${port}`, '--processes', '4', '--cheaper', '1', '--cheaper-overload', '1',
    '--stats', statsSock, '--wsgi-file', join(dir, 'app.py')], { env });
  try {
    assert.match(tsgi.output(), /cheaper \(spare\): 1 of 4 worker\(s\) start; at least 1 run, 1 more when all are busy for over 1 s/);
    assert.match(tsgi.output(), /ready: 1 worker\(s\) serving \(cheaper: 1 to 4\), router listening/);
    await growAndShrink(tsgi, dir, statsSock, overHttp(port));
    assert.doesNotMatch(tsgi.output(), /closed unexpectedly/, 'no link was lost');
  } finally {
    assert.equal((await stopProcess(tsgi)).code, 0, tsgi.output());
  }
});

test('over a uwsgi socket, lazy-apps: processes = 4, cheaper = 1 starts 1 worker, grows to 4 under load and back to 1', async () => {
  const dir = appDir();
  const sock = join(dir, 'app.sock');
  const statsSock = join(dir, 'stats.sock');
  // lazy-apps: each worker is spawned and loads the app (no app loader forking them).
  const tsgi = await startTsgi(['--socket', sock, '--processes', '4', '--cheaper', '1', '--cheaper-overload', '1', '--lazy-apps',
    '--stats', statsSock, '--wsgi-file', join(dir, 'app.py')], { env });
  try {
    await growAndShrink(tsgi, dir, statsSock, overUwsgi(sock));
  } finally {
    assert.equal((await stopProcess(tsgi)).code, 0, tsgi.output());
  }
});

/**
 * One worker holds a request; cheaper-step = 2 then starts two more, which idle: spare stops the oldest worker,
 * the busy one. It finishes its response (200, from its own pid) before it exits, and is not respawned.
 */
async function busyWorkerCheaped(tsgi: RunningProcess, dir: string, request: (path: string) => Promise<{ status: number; body: string }>): Promise<void> {
  const pid = workerPids(tsgi.pid)[0]!;
  const held = request('/hold?one');
  await tsgi.waitFor(new RegExp(`cheaper: all 1 worker\\(s\\) busy for 2 s; starting workers 2, 3 \\(3 of 3\\)`), 90_000);
  await tsgi.waitFor(new RegExp(`cheaper: 2 of 3 worker\\(s\\) idle; stopping worker 1 \\(pid: ${pid}\\), the oldest, once it has finished its request \\(2 of 3 left\\)`), 90_000);
  assert.equal(workerPids(tsgi.pid).includes(pid), true, 'it is still finishing its request');
  writeFileSync(join(dir, 'release-one'), '');
  assert.deepEqual(await held, { status: 200, body: String(pid) }, 'the stopped worker answered its request');
  await tsgi.waitFor(new RegExp(`worker 1 \\(pid: ${pid}\\) cheaped \\(exited with status 0\\)`), 90_000);
  assert.doesNotMatch(tsgi.output(), new RegExp(`worker 1 \\(pid: ${pid}\\).*respawning`));
  for (let i = 0; i < 5; i++) assert.equal((await request('/')).status, 200);
}

test('a worker stopped by cheaper while it serves finishes its response first (HTTP router and uwsgi socket)', async () => {
  for (const kind of ['http', 'uwsgi'] as const) {
    const dir = appDir();
    const port = await freePort();
    const sock = join(dir, 'app.sock');
    const tsgi = await startTsgi([kind === 'http' ? '--http-socket' : '--socket', kind === 'http' ? `127.0.0.1:${port}` : sock,
      '--processes', '3', '--cheaper', '1', '--cheaper-step', '2', '--cheaper-overload', '1', '--wsgi-file', join(dir, 'app.py')], { env });
    try {
      await busyWorkerCheaped(tsgi, dir, kind === 'http' ? overHttp(port) : overUwsgi(sock));
      assert.doesNotMatch(tsgi.output(), /HTTP\/1\.1 50\d/, `${kind}: no 5xx`);
    } finally {
      assert.equal((await stopProcess(tsgi)).code, 0, tsgi.output());
    }
  }
});

test('cheaper-initial = 2 starts 2 of 3 workers; idle, they go down to cheaper; reloads start cheaper-initial', async () => {
  const dir = appDir();
  const sock = join(dir, 'app.sock');
  const statsSock = join(dir, 'stats.sock');
  const fifo = join(dir, 'master.fifo');
  const tsgi = await startTsgi(['--socket', sock, '--processes', '3', '--cheaper', '1', '--cheaper-initial', '2', '--cheaper-overload', '1',
    '--stats', statsSock, '--master-fifo', fifo, '--wsgi-file', join(dir, 'app.py')], { env });
  try {
    assert.match(tsgi.output(), /cheaper \(spare\): 2 of 3 worker\(s\) start/);
    assert.match(tsgi.output(), /spawned worker 1 [\s\S]*spawned worker 2 [\s\S]*ready: 2 worker\(s\) serving \(cheaper: 1 to 3\)/);
    assert.doesNotMatch(tsgi.output(), /spawned worker 3/);
    await until('1 worker runs', async () => (await counts(statsSock)).running === 1, tsgi);
    await tsgi.waitFor(/worker \d \(pid: \d+\) cheaped/);
    // A graceful reload starts cheaper-initial workers again (or as many as run, when that is more).
    writeFileSync(fifo, 'r');
    await tsgi.waitFor(/graceful reload: starting 2 new worker\(s\) \(generation 2\)[\s\S]*graceful reload done: generation 2 serving/);
    await until('1 worker runs after the reload', async () => (await counts(statsSock)).running === 1 && workerPids(tsgi.pid).length === 1, tsgi);
    // A chain reload replaces the workers that run.
    writeFileSync(fifo, 'c');
    await tsgi.waitFor(/chain reload: replacing 2 worker\(s\) one at a time \(generation 3\)[\s\S]*graceful reload done: generation 3 serving/);
    assert.equal((await overUwsgi(sock)('/')).status, 200);
    // The master FIFO's + starts one more worker (spare then stops it again once it idles).
    writeFileSync(fifo, '+');
    await tsgi.waitFor(/cheaper: master FIFO: 1 more asked; starting worker \d/);
  } finally {
    assert.equal((await stopProcess(tsgi)).code, 0, tsgi.output());
  }
});

test('cheaper-algo = manual: only the master FIFO\'s + and - change the count, never below cheaper', async () => {
  const dir = appDir();
  const sock = join(dir, 'app.sock');
  const statsSock = join(dir, 'stats.sock');
  const fifo = join(dir, 'master.fifo');
  const tsgi = await startTsgi(['--socket', sock, '--processes', '3', '--cheaper', '1', '--cheaper-algo', 'manual', '--cheaper-overload', '1',
    '--stats', statsSock, '--master-fifo', fifo, '--wsgi-file', join(dir, 'app.py')], { env });
  try {
    assert.match(tsgi.output(), /cheaper \(manual\): 1 of 3 worker\(s\) start; at least 1 run\n/);
    writeFileSync(fifo, '+');
    await tsgi.waitFor(/cheaper: master FIFO: 1 more asked; starting worker 2 \(2 of 3\)/);
    await until('2 workers run', async () => (await counts(statsSock)).running === 2 && workerPids(tsgi.pid).length === 2, tsgi);
    // Idle workers stay: spare would have stopped one within two checks.
    await new Promise((r) => setTimeout(r, 3500));
    assert.equal((await counts(statsSock)).running, 2, tsgi.output());
    writeFileSync(fifo, '-');
    await tsgi.waitFor(/cheaper: master FIFO: one less asked; stopping worker 1 \(pid: \d+\), the oldest \(1 of 3 left\)[\s\S]*worker 1 \(pid: \d+\) cheaped/);
    writeFileSync(fifo, '-');
    await tsgi.waitFor(/cheaper: master FIFO: one less asked, but only cheaper \(1\) worker\(s\) run/);
    assert.equal((await overUwsgi(sock)('/')).status, 200);
  } finally {
    assert.equal((await stopProcess(tsgi)).code, 0, tsgi.output());
  }
});

/** The same /hold for a Node worker (Fetch contract): its requests wait on one event loop, the worker is busy. */
const NODE_APP = `import { existsSync } from 'node:fs';
const here = new URL('.', import.meta.url).pathname;
export default {
  async fetch(req) {
    const url = new URL(req.url);
    if (url.pathname === '/hold') {
      const release = here + 'release-' + url.search.slice(1);
      const deadline = Date.now() + 120000;
      while (!existsSync(release) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    }
    return new Response(String(process.pid));
  },
};
`;

test('Node workers (a JS app) follow the same rules: 1 of 3 at start, 3 when all are busy, back to 1', async () => {
  const dir = tempDir();
  writeFiles(dir, { 'app.mjs': NODE_APP });
  const port = await freePort();
  const statsSock = join(dir, 'stats.sock');
  const tsgi = await startTsgi(['--http-socket', `127.0.0.1:${port}`, '--processes', '3', '--cheaper', '1', '--cheaper-overload', '1',
    '--stats', statsSock, '--wsgi-file', join(dir, 'app.mjs')], { env: { PATH: process.env.PATH, HOME: process.env.HOME } });
  try {
    assert.deepEqual(await counts(statsSock), { running: 1, cheap: 2, busy: 0 });
    // A Node worker takes every connection it is given: held requests keep coming until each worker holds some
    // (the kernel hands each new connection to one of the workers).
    const held: Array<Promise<{ status: number; body: string }>> = [];
    await until('3 workers run, all busy', async () => {
      if (held.length < 500) held.push(overHttp(port)('/hold?load'));
      const c = await counts(statsSock);
      return c.running === 3 && c.busy === 3;
    }, tsgi);
    writeFileSync(join(dir, 'release-load'), '');
    const answers = await Promise.all(held);
    assert.deepEqual(answers.filter((a) => a.status !== 200), [], 'every held request is answered');
    await until('back to 1 worker', async () => (await counts(statsSock)).running === 1 && workerPids(tsgi.pid).length === 1, tsgi);
    await until('two cheaped lines', () => cheapedLines(tsgi) >= 2, tsgi);
    assert.equal(cheapedLines(tsgi), 2, tsgi.output());
    assert.equal((await overHttp(port)('/')).status, 200);
  } finally {
    assert.equal((await stopProcess(tsgi)).code, 0, tsgi.output());
  }
});

function tsgiConfig(ini: string): { status: number | null; stderr: string } {
  const dir = tempDir();
  writeFiles(dir, { 'app.ini': ini });
  const r = spawnSync(tsgiBin, ['--ini', join(dir, 'app.ini')], { encoding: 'utf8', env: { PATH: process.env.PATH, HOME: process.env.HOME } });
  return { status: r.status, stderr: r.stderr.replaceAll(join(dir, 'app.ini'), 'app.ini') };
}

test('cheaper must be lower than processes, and an algorithm tsgi lacks is refused: one line naming file:line and option', () => {
  const same = tsgiConfig('[uwsgi]\nsocket = :3031\nprocesses = 4\ncheaper = 4\nmodule = wsgi\n');
  assert.equal(same.status, 1);
  assert.equal(same.stderr, "tsgi: app.ini:4: option 'cheaper': 4 must be lower than processes (4): cheaper is the fewest workers that run, processes the most\n");
  const default1 = tsgiConfig('[uwsgi]\nsocket = :3031\ncheaper = 2\nmodule = wsgi\n');
  assert.equal(default1.stderr, "tsgi: app.ini:3: option 'cheaper': 2 must be lower than processes (1): cheaper is the fewest workers that run, processes the most\n");
  const busyness = tsgiConfig('[uwsgi]\nsocket = :3031\nprocesses = 4\ncheaper = 1\ncheaper-algo = busyness\nmodule = wsgi\n');
  assert.equal(busyness.status, 1);
  assert.equal(busyness.stderr, "tsgi: app.ini:5: option 'cheaper-algo': the 'busyness' cheaper algorithm is not implemented in tsgi (tsgi has spare and manual)\n");
  const typo = tsgiConfig('[uwsgi]\nsocket = :3031\nprocesses = 4\ncheaper = 1\ncheaper-algo = spar\nmodule = wsgi\n');
  assert.equal(typo.stderr, "tsgi: app.ini:5: option 'cheaper-algo': unknown cheaper algorithm 'spar' (tsgi has spare and manual)\n");
});
