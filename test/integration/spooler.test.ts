/**
 * The spooler (docs/spooler.md): uwsgi.spool() writes a task file, the spooler process (which loaded the same app)
 * runs uwsgi.spooler with it; SPOOL_OK removes the file, SPOOL_RETRY keeps it for the next scan, `at` delays it; the
 * master respawns a spooler that dies and lets a running task finish on a graceful stop. Task files are uWSGI's:
 * the real uWSGI 2.0 writes tasks tsgi runs, and runs tasks tsgi writes (spooler-external on the writing side).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { tsgiBin } from '../helpers/paths.js';
import { activatedEnv, freePort, httpRequest, sharedVenv, startProcess, startTsgi, stopProcess, tempDir, writeFiles, type RunningProcess } from '../helpers/procs.js';

const env = activatedEnv(sharedVenv());

/** /?name=N&mode=M&k=v...: spools the query as a task (bytes), answers the task file's path. The task appends a
 * line to out/N (its dict, sorted); mode=retry asks to be run again once, mode=slow sleeps `secs` first. */
const APP = `import os, time, uwsgi
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'out')

def task(env):
    d = dict(((k.decode() if isinstance(k, bytes) else k), v) for k, v in env.items())
    name = d['name'].decode()
    mode = d.get('mode', b'ok').decode()
    if mode == 'slow':
        time.sleep(float(d['secs']))
    shown = sorted((k, v) for k, v in d.items() if k != 'spooler_task_name')
    with open(os.path.join(OUT, name), 'a') as f:
        f.write('%r spooler=%r\\n' % (shown, uwsgi.i_am_the_spooler()))
    if mode == 'retry':
        with open(os.path.join(OUT, name)) as f:
            runs = len(f.read().splitlines())
        return uwsgi.SPOOL_OK if runs >= 2 else uwsgi.SPOOL_RETRY
    return uwsgi.SPOOL_OK

uwsgi.spooler = task

def application(environ, start_response):
    if environ['PATH_INFO'] == '/jobs':
        start_response('200 OK', [('Content-Type', 'text/plain')])
        return [('%d %r' % (uwsgi.spooler_pid(), uwsgi.spooler_jobs())).encode()]
    q = dict(p.split('=', 1) for p in environ['QUERY_STRING'].split('&') if p)
    task = dict((k.encode(), v.encode()) for k, v in q.items())
    if 'body' in q:
        task[b'body'] = q['body'].encode() * 3
    path = uwsgi.spool(task)
    start_response('200 OK', [('Content-Type', 'text/plain')])
    return [path]
`;

/** The same tasks through uwsgidecorators: @spool with pass_arguments, and a dict task. */
const DECO = `import os, uwsgi
from uwsgidecorators import spool
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'out')

@spool(pass_arguments=True)
def greet(who, punct='!'):
    with open(os.path.join(OUT, 'greet'), 'a') as f:
        f.write('hello %s%s\\n' % (who, punct))

@spool
def plain(args):
    with open(os.path.join(OUT, 'plain'), 'a') as f:
        f.write('%s\\n' % sorted(args.items()))

def application(environ, start_response):
    greet('world', punct='?')
    plain.spool({'x': '1'})
    start_response('200 OK', [('Content-Type', 'text/plain')])
    return [b'ok']
`;

function appDir(): { dir: string; spool: string; out: string } {
  const dir = tempDir();
  writeFiles(dir, { 'app.py': APP, 'deco.py': DECO });
  mkdirSync(join(dir, 'out'));
  return { dir, spool: join(dir, 'spool'), out: join(dir, 'out') };
}

async function waitUntil(what: string, ok: () => boolean, timeoutMs = 20_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Runs the steps before a test's own stop; if one fails, the instance is stopped at once, so that it cannot
 * outlive the test and hold the test file open. */
async function untilOrStop(p: RunningProcess, steps: () => Promise<void>): Promise<void> {
  try {
    await steps();
  } catch (e) {
    await stopProcess(p, 'SIGINT');
    throw e;
  }
}

const tasksIn = (dir: string): string[] => (existsSync(dir) ? readdirSync(dir).filter((n) => n.startsWith('uwsgi_spoolfile_on_')) : []);
const read = (p: string): string => (existsSync(p) ? readFileSync(p, 'utf8') : '');

function readStats(port: number): Promise<{ spoolers?: Array<{ dir: string; pid: number; respawns: number; tasks: number; running: number }> }> {
  return new Promise((resolve, reject) => {
    const c = net.connect(port, '127.0.0.1');
    let data = '';
    c.on('data', (d) => (data += d));
    c.on('end', () => resolve(JSON.parse(data)));
    c.on('error', reject);
  });
}

describe('spooler', () => {
  test('a task spooled by a request runs in the spooler; SPOOL_OK removes its file, SPOOL_RETRY runs it again; stats list the spooler', async () => {
    const { dir, spool, out } = appDir();
    const port = await freePort();
    const statsPort = await freePort();
    const p = await startTsgi(['--http-socket', `127.0.0.1:${port}`, '--wsgi-file', 'app.py', '--master', '--spooler', spool,
      '--spooler-frequency', '1', '--stats', `127.0.0.1:${statsPort}`], { cwd: dir, env });
    try {
      await p.waitFor(/spawned the tsgi spooler on dir .* with pid \d+/);
      const r = await httpRequest(`http://127.0.0.1:${port}/?name=a&k=v&body=B`);
      assert.match(r.body.toString(), new RegExp(`^${spool}/uwsgi_spoolfile_on_`));
      await waitUntil('task a', () => read(join(out, 'a')) !== '');
      assert.equal(read(join(out, 'a')), "[('body', b'BBB'), ('k', b'v'), ('name', b'a')] spooler=True\n");
      await waitUntil('task file a removed', () => tasksIn(spool).length === 0);
      await httpRequest(`http://127.0.0.1:${port}/?name=r&mode=retry`);
      await waitUntil('task r run twice', () => read(join(out, 'r')).split('\n').length === 3);
      await waitUntil('task file r removed', () => tasksIn(spool).length === 0);
      const stats = await readStats(statsPort);
      assert.equal(stats.spoolers?.length, 1);
      assert.equal(stats.spoolers![0]!.dir, spool);
      assert.ok(stats.spoolers![0]!.pid > 0);
    } finally {
      await stopProcess(p);
    }
  });

  test('at= delays a task; a killed spooler is respawned and the pending task still runs', async () => {
    const { dir, spool, out } = appDir();
    const port = await freePort();
    const p = await startTsgi(['--http-socket', `127.0.0.1:${port}`, '--wsgi-file', 'app.py', '--master', '--spooler', spool,
      '--spooler-frequency', '1'], { cwd: dir, env });
    try {
      const pid = Number((await p.waitFor(/spawned the tsgi spooler on dir .* with pid \d+/)).split(' ').pop());
      const at = Math.floor(Date.now() / 1000) + 3;
      await httpRequest(`http://127.0.0.1:${port}/?name=later&at=${at}`);
      await new Promise((r) => setTimeout(r, 1200));
      assert.equal(read(join(out, 'later')), '', 'ran before its time');
      assert.equal(tasksIn(spool).length, 1);
      process.kill(pid, 'SIGKILL');
      await p.waitFor(new RegExp(`spooler ${spool} \\(pid: ${pid}\\) killed by SIGKILL; respawning`));
      await waitUntil('the delayed task', () => read(join(out, 'later')) !== '');
      assert.ok(Date.now() / 1000 >= at, 'ran before its time');
      assert.match(p.output(), new RegExp(`spawned the tsgi spooler on dir ${spool} with pid (?!${pid})\\d+`));
    } finally {
      await stopProcess(p);
    }
  });

  test('a graceful stop lets the running task finish', async () => {
    const { dir, spool, out } = appDir();
    const port = await freePort();
    const p = await startTsgi(['--http-socket', `127.0.0.1:${port}`, '--wsgi-file', 'app.py', '--master', '--spooler', spool], { cwd: dir, env });
    await untilOrStop(p, async () => {
      await httpRequest(`http://127.0.0.1:${port}/?name=slow&mode=slow&secs=1.5`);
      await p.waitFor(/managing request uwsgi_spoolfile_on_/);
    });
    const r = await stopProcess(p, 'SIGTERM');
    assert.equal(r.code, 0);
    assert.match(read(join(out, 'slow')), /'name', b'slow'/);
    assert.equal(tasksIn(spool).length, 0);
  });

  test('an immediate stop (SIGINT) kills the spooler at once; the running task stays spooled', async () => {
    const { dir, spool, out } = appDir();
    const port = await freePort();
    const p = await startTsgi(['--http-socket', `127.0.0.1:${port}`, '--wsgi-file', 'app.py', '--master', '--spooler', spool], { cwd: dir, env });
    await untilOrStop(p, async () => {
      await httpRequest(`http://127.0.0.1:${port}/?name=slow&mode=slow&secs=20`);
      await p.waitFor(/managing request uwsgi_spoolfile_on_/);
    });
    const started = Date.now();
    await stopProcess(p, 'SIGINT');
    assert.ok(Date.now() - started < 10_000, 'waited for the task');
    assert.equal(read(join(out, 'slow')), '');
    assert.equal(tasksIn(spool).length, 1);
  });

  test('uwsgidecorators: @spool with pass_arguments and a dict task', async () => {
    const { dir, out, spool } = appDir();
    const port = await freePort();
    const p = await startTsgi(['--http-socket', `127.0.0.1:${port}`, '--wsgi-file', 'deco.py', '--master', '--spooler', spool], { cwd: dir, env });
    try {
      await Promise.race([httpRequest(`http://127.0.0.1:${port}/`),
        new Promise((_, reject) => setTimeout(() => reject(new Error(`no answer; output:\n${p.output()}`)), 15_000))]);
      await waitUntil('both tasks', () => read(join(out, 'greet')) !== '' && read(join(out, 'plain')) !== '');
      assert.equal(read(join(out, 'greet')), 'hello world?\n');
      assert.equal(read(join(out, 'plain')), "[('spooler_task_name', '" + tasksNameOf(read(join(out, 'plain'))) + "'), ('ud_spool_func', 'plain'), ('ud_spool_ret', '-2'), ('x', '1')]\n");
    } finally {
      await stopProcess(p);
    }
  });

  test('a reload (SIGHUP) restarts the spooler, and a task spooled before it still runs', async () => {
    const { dir, spool, out } = appDir();
    const port = await freePort();
    const p = await startTsgi(['--http-socket', `127.0.0.1:${port}`, '--wsgi-file', 'app.py', '--master', '--spooler', spool, '--spooler-frequency', '1'], { cwd: dir, env });
    try {
      const first = (await p.waitFor(/spawned the tsgi spooler on dir .* with pid \d+/)).split(' ').pop()!;
      await httpRequest(`http://127.0.0.1:${port}/?name=old&at=${Math.floor(Date.now() / 1000) + 2}`);
      p.kill('SIGHUP');
      await p.waitFor(new RegExp(`spawned the tsgi spooler on dir ${spool} with pid (?!${first}\\b)\\d+`));
      await waitUntil('the task spooled before the reload', () => read(join(out, 'old')) !== '');
      await httpRequest(`http://127.0.0.1:${port}/?name=new`);
      await waitUntil('a task spooled after the reload', () => read(join(out, 'new')) !== '');
      assert.doesNotMatch(p.output(), /respawning/);
    } finally {
      await stopProcess(p);
    }
  });

  test('spooler-quiet: no line per task; spooler_pid() and spooler_jobs() from a worker', async () => {
    const { dir, spool, out } = appDir();
    const port = await freePort();
    const p = await startTsgi(['--http-socket', `127.0.0.1:${port}`, '--wsgi-file', 'app.py', '--master', '--spooler', spool, '--spooler-quiet',
      '--spooler-frequency', '1'], { cwd: dir, env });
    try {
      const pid = (await p.waitFor(/spawned the tsgi spooler on dir .* with pid \d+/)).split(' ').pop()!;
      const path = (await httpRequest(`http://127.0.0.1:${port}/?name=q&at=${Math.floor(Date.now() / 1000) + 2}`)).body.toString();
      assert.equal((await httpRequest(`http://127.0.0.1:${port}/jobs`)).body.toString(), `${pid} [b'${path}']`);
      await waitUntil('the task', () => read(join(out, 'q')) !== '');
      await waitUntil('its file removed', () => tasksIn(spool).length === 0);
      assert.equal((await httpRequest(`http://127.0.0.1:${port}/jobs`)).body.toString(), `${pid} []`);
      assert.doesNotMatch(p.output(), /written \d+ bytes|managing request|done with task/);
    } finally {
      await stopProcess(p);
    }
  });

  test('a bad spooler option is one line and exit status 1', () => {
    const dir = tempDir();
    writeFiles(dir, { 'app.js': 'export function application() {}\n' });
    for (const [args, re] of [
      [['--spooler', join(dir, 's'), '--spooler-frequency', '0'], /spooler-frequency/],
      [['--spooler-processes', '2'], /spooler-processes.*no effect without a spooler directory/],
      [['--spooler', join(dir, 'no/such/parent')], /spooler.*cannot use it as a spooler directory \(ENOENT\)/],
      [['--wsgi-file', 'app.js', '--spooler', join(dir, 's')], /spooler.*implemented for Python apps only/],
    ] as const) {
      const r = spawnSync(tsgiBin, ['--http-socket', '127.0.0.1:0', '--wsgi-file', 'app.py', ...args], { cwd: dir, env, encoding: 'utf8', timeout: 30_000 });
      assert.equal(r.status, 1, r.stderr);
      assert.match(r.stderr, re);
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    }
  });
});

function tasksNameOf(line: string): string {
  return /'spooler_task_name', '([^']*)'/.exec(line)?.[1] ?? '?';
}

const haveUwsgi = spawnSync('uwsgi', ['--plugin', 'python3', '--version']).status === 0;

describe('spool files shared with the real uWSGI', { skip: haveUwsgi ? false : 'uwsgi with its python3 plugin is not installed' }, () => {
  const cleanEnv = (): NodeJS.ProcessEnv => {
    const e = { ...process.env };
    for (const k of Object.keys(e)) if (k.startsWith('UWSGI_') || k.startsWith('TSGI_')) delete e[k];
    return e;
  };

  test('uWSGI writes, tsgi runs; tsgi writes, uWSGI runs: the task gets the same dict', async () => {
    const { dir, spool, out } = appDir();
    mkdirSync(spool);
    // uWSGI spools (spooler-external: no spooler of its own), then tsgi runs the task.
    const uPort = await freePort();
    const u = startProcess('uwsgi', ['--plugin', 'python3', '--master', '--http-socket', `127.0.0.1:${uPort}`, '--wsgi-file', 'app.py',
      '--spooler-external', spool], { cwd: dir, env: cleanEnv() });
    await u.waitFor(/spawned uWSGI worker 1/);
    await httpRequest(`http://127.0.0.1:${uPort}/?name=fromuwsgi&k=v&body=B`);
    await stopProcess(u, 'SIGINT');
    assert.equal(tasksIn(spool).length, 1);
    const tPort = await freePort();
    const t = await startTsgi(['--http-socket', `127.0.0.1:${tPort}`, '--wsgi-file', 'app.py', '--master', '--spooler', spool], { cwd: dir, env });
    await waitUntil('tsgi runs the task uWSGI wrote', () => read(join(out, 'fromuwsgi')) !== '');
    await stopProcess(t);
    // tsgi spools, then uWSGI runs the task.
    const t2 = await startTsgi(['--http-socket', `127.0.0.1:${tPort}`, '--wsgi-file', 'app.py', '--master', '--spooler-external', spool], { cwd: dir, env });
    await httpRequest(`http://127.0.0.1:${tPort}/?name=fromtsgi&k=v&body=B`);
    await stopProcess(t2);
    assert.equal(tasksIn(spool).length, 1);
    const u2 = startProcess('uwsgi', ['--plugin', 'python3', '--master', '--http-socket', `127.0.0.1:${uPort}`, '--wsgi-file', 'app.py',
      '--spooler', spool, '--spooler-frequency', '1'], { cwd: dir, env: cleanEnv() });
    try {
      await waitUntil('uWSGI runs the task tsgi wrote', () => read(join(out, 'fromtsgi')) !== '');
    } finally {
      await stopProcess(u2, 'SIGINT');
    }
    const norm = (s: string, name: string): string => s.replace(`b'${name}'`, "b'N'");
    assert.equal(norm(read(join(out, 'fromtsgi')), 'fromtsgi'), norm(read(join(out, 'fromuwsgi')), 'fromuwsgi'));
    assert.equal(read(join(out, 'fromtsgi')), "[('body', b'BBB'), ('k', b'v'), ('name', b'fromtsgi')] spooler=True\n");
    assert.equal(tasksIn(spool).length, 0);
  });
});

/** spooler-import's module: the task logs "NAME PID CWD"; the task named sleep takes 4 s. */
const TASKS = `import os, time, uwsgi
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'out')

def task(env):
    name = env[b'name'].decode()
    with open(os.path.join(OUT, 'log'), 'a') as f:
        f.write('%s %d %s\\n' % (name, os.getpid(), os.getcwd()))
    if name == 'sleep':
        time.sleep(4)
    return uwsgi.SPOOL_OK

uwsgi.spooler = task
`;

describe('spooler options, compared with the real uWSGI', { skip: haveUwsgi ? false : 'uwsgi with its python3 plugin is not installed' }, () => {
  test('spooler-ordered (priority subdirectories first), spooler-max-tasks, spooler-harakiri, spooler-chdir, spooler-import', async () => {
    const { dir, spool } = appDir();
    writeFiles(dir, { 'tasks.py': TASKS });
    const cleanEnv = { ...process.env };
    for (const k of Object.keys(cleanEnv)) if (k.startsWith('UWSGI_') || k.startsWith('TSGI_')) delete cleanEnv[k];
    // The same seven tasks for both servers, written by uWSGI (no spooler of its own runs them).
    mkdirSync(spool);
    const port = await freePort();
    const w = startProcess('uwsgi', ['--plugin', 'python3', '--master', '--http-socket', `127.0.0.1:${port}`, '--wsgi-file', 'app.py',
      '--spooler-external', spool], { cwd: dir, env: cleanEnv });
    await w.waitFor(/spawned uWSGI worker 1/);
    for (const q of ['name=t1', 'name=p5&priority=5', 'name=p1&priority=1', 'name=t2', 'name=p10&priority=10', 'name=sleep', 'name=t3']) {
      await httpRequest(`http://127.0.0.1:${port}/?${q}`);
    }
    await stopProcess(w, 'SIGINT');
    const opts = ['--spooler-import', 'tasks', '--spooler-ordered', '--spooler-max-tasks', '2', '--spooler-harakiri', '2',
      '--spooler-chdir', '/tmp', '--spooler-frequency', '1'];
    const runs: Record<string, { log: string[]; left: string[]; output: string }> = {};
    for (const server of ['uwsgi', 'tsgi'] as const) {
      const run = join(dir, server);
      mkdirSync(join(run, 'out'), { recursive: true });
      writeFiles(run, { 'app.py': APP, 'tasks.py': TASKS });
      spawnSync('cp', ['-r', spool, join(run, 'spool')]);
      const args = ['--master', '--http-socket', `127.0.0.1:${port}`, '--wsgi-file', 'app.py', '--spooler', join(run, 'spool'), ...opts];
      const p = server === 'uwsgi'
        ? startProcess('uwsgi', ['--plugin', 'python3', ...args], { cwd: run, env: cleanEnv })
        : startProcess(tsgiBin, args, { cwd: run, env });
      try {
        // Six tasks, then the one that sleeps twice: killed by harakiri, run again by the next spooler.
        await waitUntil(`${server}: the sleeping task run twice`, () => read(join(run, 'out/log')).split('\n').filter((l) => l.startsWith('sleep ')).length >= 2, 40_000);
      } finally {
        await stopProcess(p, 'SIGINT');
      }
      // Pids become the order in which each spooler process appeared.
      const pids: string[] = [];
      const log = read(join(run, 'out/log')).trim().split('\n').slice(0, 7).map((l) => {
        const [name, pid, cwd] = l.split(' ');
        if (!pids.includes(pid!)) pids.push(pid!);
        return `${name} spooler#${pids.indexOf(pid!)} ${cwd}`;
      });
      runs[server] = { log, left: readdirSync(join(run, 'spool')).sort(), output: p.output() };
    }
    assert.deepEqual(runs.tsgi!.log, runs.uwsgi!.log);
    assert.deepEqual(runs.tsgi!.log, ['p1 spooler#0 /tmp', 'p5 spooler#0 /tmp', 'p10 spooler#1 /tmp', 't1 spooler#1 /tmp', 't2 spooler#2 /tmp',
      'sleep spooler#2 /tmp', 'sleep spooler#3 /tmp']);
    assert.deepEqual(runs.tsgi!.left, runs.uwsgi!.left);
    assert.match(runs.tsgi!.output, /maximum number of tasks reached \(2\) recycling/);
    assert.match(runs.tsgi!.output, /killed by spooler-harakiri \(2 s\); respawning/);
  });
});

describe('several spoolers, compared with the real uWSGI', { skip: haveUwsgi ? false : 'uwsgi with its python3 plugin is not installed' }, () => {
  test('spooler twice with spooler-processes 2: four processes in the stats; the spooler key picks the directory; running while a task runs', async () => {
    const { dir, out } = appDir();
    const cleanEnv = { ...process.env };
    for (const k of Object.keys(cleanEnv)) if (k.startsWith('UWSGI_') || k.startsWith('TSGI_')) delete cleanEnv[k];
    const shapes: Record<string, unknown> = {};
    for (const server of ['uwsgi', 'tsgi'] as const) {
      const a = join(dir, `${server}-a`);
      const b = join(dir, `${server}-b`);
      const port = await freePort();
      const statsPort = await freePort();
      // spooler-processes after the first spooler: it counts for both, in uWSGI too.
      const args = ['--master', '--http-socket', `127.0.0.1:${port}`, '--wsgi-file', 'app.py', '--spooler', a, '--spooler-processes', '2',
        '--spooler', b, '--stats', `127.0.0.1:${statsPort}`];
      const p = server === 'uwsgi'
        ? startProcess('uwsgi', ['--plugin', 'python3', ...args], { cwd: dir, env: cleanEnv })
        : startProcess(tsgiBin, args, { cwd: dir, env });
      try {
        await p.waitFor(server === 'uwsgi' ? /spawned uWSGI worker 1/ : /ready: \d+ worker/);
        const path = (await httpRequest(`http://127.0.0.1:${port}/?name=${server}-slow&mode=slow&secs=3&spooler=${b}`)).body.toString();
        assert.ok(path.startsWith(`${b}/uwsgi_spoolfile_on_`), path);
        await p.waitFor(/managing request uwsgi_spoolfile_on_/);
        const stats = await readStats(statsPort);
        shapes[server] = stats.spoolers!.map((x) => ({ dir: x.dir.slice(x.dir.lastIndexOf('/') + 1).replace(server, 'X'), running: x.running, live: x.pid > 0, respawns: x.respawns }));
        await waitUntil(`${server}: the task in ${b}`, () => read(join(out, `${server}-slow`)) !== '');
      } finally {
        await stopProcess(p, 'SIGINT');
      }
    }
    // Which of b's two processes took the task is chance: compare the running flags as a count per directory.
    const summary = (v: unknown): unknown => (v as Array<{ dir: string; running: number; live: boolean; respawns: number }>)
      .reduce<Record<string, { processes: number; running: number }>>((acc, x) => {
        acc[x.dir] ??= { processes: 0, running: 0 };
        acc[x.dir]!.processes += x.live && x.respawns === 0 ? 1 : 0;
        acc[x.dir]!.running += x.running;
        return acc;
      }, {});
    assert.deepEqual(summary(shapes.tsgi), summary(shapes.uwsgi));
    assert.deepEqual(summary(shapes.tsgi), { 'X-a': { processes: 2, running: 0 }, 'X-b': { processes: 2, running: 1 } });
  });
});
