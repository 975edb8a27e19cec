/**
 * Mules (docs/mules.md): extra processes that load the app and run a script, or wait for uwsgi.mule_msg()
 * messages. A request's @mulefunc call runs in a mule; mule_msg()/mule_get_msg() carry a message from a worker to
 * a mule script, compared with the real uWSGI 2.0.21 running the same app and options; a killed mule is
 * respawned; mule-harakiri kills a mule stuck on a message; bad options and Node apps are refused with a line.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { tsgiBin } from '../helpers/paths.js';
import { activatedEnv, freePort, httpRequest, processName, sharedVenv, startProcess, startTsgi, stopProcess, tempDir, writeFiles } from '../helpers/procs.js';

const env = activatedEnv(sharedVenv());
const haveUwsgi = spawnSync('uwsgi', ['--plugin', 'python3', '--version']).status === 0;

/** A Flask app whose /job request calls a @mulefunc that appends to out.txt (in the mule that ran it). */
const FLASK = `import os, time, uwsgi
from flask import Flask
from uwsgidecorators import mulefunc
HERE = os.path.dirname(os.path.abspath(__file__))
app = Flask(__name__)

@mulefunc
def job(word, n=0):
    with open(os.path.join(HERE, 'out.txt'), 'a') as f:
        f.write('%s %d mule=%d\\n' % (word, n, uwsgi.mule_id()))

@mulefunc(1)
def stuck():
    time.sleep(30)

@app.route('/job/<word>')
def run_job(word):
    job(word, n=7)
    return 'sent from mule_id=%d' % uwsgi.mule_id()

@app.route('/stuck')
def run_stuck():
    stuck()
    return 'sent'
`;

/** A WSGI app sending raw messages: /m?to=N sends b'ping N' to mule N; answers what mule_msg returned. */
const RAW = `import uwsgi
def application(environ, start_response):
    to = int(environ['QUERY_STRING'].split('=')[1])
    r = uwsgi.mule_msg(b'ping %d' % to, to)
    start_response('200 OK', [('Content-Type', 'text/plain')])
    return [repr(r).encode()]
`;

/** The mule script: writes each message it gets, with its mule id. */
const SCRIPT = `import os, uwsgi
HERE = os.path.dirname(os.path.abspath(__file__))
while True:
    m = uwsgi.mule_get_msg()
    with open(os.path.join(HERE, 'got.txt'), 'a') as f:
        f.write('mule %d got %r\\n' % (uwsgi.mule_id(), m))
`;

/** uwsgidecorators' mule decorators, a MODULE:FUNC mule that returns, farm_msg and mule_get_msg's timeout. */
const DECO = `import os, time, uwsgi
from uwsgidecorators import mule, muleloop, mulemsg, farm
HERE = os.path.dirname(os.path.abspath(__file__))

def w(line):
    with open(os.path.join(HERE, 'd.txt'), 'a') as f:
        f.write(line + '\\n')

@mule(1)
def once():
    w('once mule=%d' % uwsgi.mule_id())
    w('timeout -> %r' % (uwsgi.mule_get_msg(timeout=1),))

calls = [0]

@muleloop(2)
def again():
    calls[0] += 1
    if calls[0] > 3:
        time.sleep(3600)
    w('loop %d mule=%d' % (calls[0], uwsgi.mule_id()))

@mulemsg(3)
def got(message):
    w('mulemsg %r mule=%d' % (message, uwsgi.mule_id()))

@farm('f')
def farmed(message):
    w('farm %r mule=%d in_farm=%r' % (message, uwsgi.mule_id(), uwsgi.in_farm('f')))

def application(environ, start_response):
    r = (uwsgi.mule_msg(b'x', 3), uwsgi.farm_msg('f', b'y'))
    start_response('200 OK', [('Content-Type', 'text/plain')])
    return [repr(r).encode()]
`;

const TASKS = `import os, uwsgi
def main():
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), 'd.txt'), 'a') as f:
        f.write('func mule=%d\\n' % uwsgi.mule_id())
`;

async function waitUntil(what: string, ok: () => boolean, timeoutMs = 20_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Waits until every mule (or the first `check`) is ready: a mule takes its title once its message socket is bound. */
async function mulesReady(statsPort: number, count: number, check = count): Promise<MuleStats> {
  const end = Date.now() + 30_000;
  for (;;) {
    const mules = (await readStats(statsPort)).mules ?? [];
    if (mules.length === count && mules.every((m) => m.id > check || (m.pid && processName(m.pid) === `tsgi mule ${m.id}`))) return mules;
    if (Date.now() > end) throw new Error(`mules not ready: ${JSON.stringify(mules)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const read = (p: string): string => (existsSync(p) ? readFileSync(p, 'utf8') : '');

type MuleStats = Array<{ id: number; pid: number; respawns: number; messages: number }>;
function readStats(port: number): Promise<{ mules?: MuleStats }> {
  return new Promise((resolve, reject) => {
    const c = net.connect(port, '127.0.0.1');
    let data = '';
    c.on('data', (d) => (data += d));
    c.on('end', () => resolve(JSON.parse(data)));
    c.on('error', reject);
  });
}

function tsgiCheck(args: string[]): { status: number | null; stderr: string } {
  const r = spawnSync(tsgiBin, args, { encoding: 'utf8', env: { PATH: process.env.PATH, HOME: process.env.HOME }, timeout: 20_000 });
  return { status: r.status, stderr: r.stderr };
}

describe('mules', () => {
  test('@mulefunc from a Flask request runs in a mule; mules are titled, listed in the stats, respawned when killed', async () => {
    const dir = tempDir();
    writeFiles(dir, { 'app.py': FLASK });
    const port = await freePort();
    const statsPort = await freePort();
    let pids: number[] = [];
    const p = await startTsgi(['--http-socket', `127.0.0.1:${port}`, '--module', 'app:app', '--master', '--mules', '2',
      '--stats', `127.0.0.1:${statsPort}`], { cwd: dir, env });
    try {
      await p.waitFor(/spawned tsgi mule 2 \(pid: \d+\)/);
      await mulesReady(statsPort, 2);
      const r = await httpRequest(`http://127.0.0.1:${port}/job/a`);
      assert.equal(r.body.toString(), 'sent from mule_id=0');
      await httpRequest(`http://127.0.0.1:${port}/job/b`);
      await waitUntil('both jobs', () => read(join(dir, 'out.txt')).split('\n').length === 3);
      const lines = read(join(dir, 'out.txt')).trim().split('\n').sort();
      assert.match(lines[0]!, /^a 7 mule=[12]$/);
      assert.match(lines[1]!, /^b 7 mule=[12]$/);
      let stats = await readStats(statsPort);
      assert.equal(stats.mules!.length, 2);
      assert.deepEqual(stats.mules!.map((m) => m.id), [1, 2]);
      assert.equal(stats.mules!.reduce((n, m) => n + m.messages, 0), 2);
      const first = stats.mules![0]!.pid;
      assert.equal(processName(first), 'tsgi mule 1');
      process.kill(first, 'SIGKILL');
      await p.waitFor(new RegExp(`mule 1 \\(pid: ${first}\\) killed by SIGKILL; respawning`));
      await p.waitFor(/spawned tsgi mule 1 \(pid: \d+\)/);
      stats = { mules: await mulesReady(statsPort, 2) };
      assert.notEqual(stats.mules![0]!.pid, first);
      assert.equal(stats.mules![0]!.respawns, 1);
      // The respawned mule takes messages again (any mule: each gets one of four).
      for (const w of ['c', 'd', 'e', 'f']) await httpRequest(`http://127.0.0.1:${port}/job/${w}`);
      await waitUntil('four more jobs', () => read(join(dir, 'out.txt')).split('\n').length === 7);
      assert.match(read(join(dir, 'out.txt')), /mule=1\n[\s\S]*mule=2\n|mule=2\n[\s\S]*mule=1\n/);
      pids = (await readStats(statsPort)).mules!.map((m) => m.pid);
    } finally {
      await stopProcess(p);
    }
    // The mules stop with tsgi.
    for (const pid of pids) assert.throws(() => process.kill(pid, 0), /ESRCH/);
  });

  test('@mule, @muleloop, @mulemsg, @farm, a MODULE:FUNC mule (respawned when it returns), mule_get_msg timeout; a reload restarts the mules', async () => {
    const dir = tempDir();
    writeFiles(dir, { 'app.py': DECO, 'tasks.py': TASKS });
    const port = await freePort();
    const statsPort = await freePort();
    const p = await startTsgi(['--http-socket', `127.0.0.1:${port}`, '--wsgi-file', 'app.py', '--master', '--mules', '4', '--mule=tasks:main',
      '--farm', 'f:4', '--stats', `127.0.0.1:${statsPort}`], { cwd: dir, env });
    const lines = (): string[] => read(join(dir, 'd.txt')).split('\n').filter(Boolean);
    try {
      // Mule 5 returns at once and is restarted a second later: only the others are waited for.
      const before = await mulesReady(statsPort, 5, 4);
      assert.equal((await httpRequest(`http://127.0.0.1:${port}/`)).body.toString(), '(True, True)');
      await p.waitFor(/mule 5 \(pid: \d+\) exited with status 0; respawning/);
      const others = (): string[] => lines().filter((l) => l !== 'func mule=5').sort();
      await waitUntil('every mule', () => others().length >= 7 && lines().length - others().length >= 2);
      assert.deepEqual(others(), [
        "farm b'y' mule=4 in_farm=True", 'loop 1 mule=2', 'loop 2 mule=2', 'loop 3 mule=2', "mulemsg b'x' mule=3", 'once mule=1', 'timeout -> None',
      ]);
      p.kill('SIGHUP');
      await waitUntil('mule 1 after the reload', () => lines().filter((l) => l === 'once mule=1').length === 2);
      const after = await mulesReady(statsPort, 5, 4);
      for (let i = 0; i < 4; i++) assert.notEqual(after[i]!.pid, before[i]!.pid);
    } finally {
      await stopProcess(p);
    }
  });

  test('mule-harakiri kills a mule stuck on a message; the master respawns it', async () => {
    const dir = tempDir();
    writeFiles(dir, { 'app.py': FLASK });
    const port = await freePort();
    const statsPort = await freePort();
    const p = await startTsgi(['--http-socket', `127.0.0.1:${port}`, '--module', 'app:app', '--master', '--mule', '--mule-harakiri', '1',
      '--stats', `127.0.0.1:${statsPort}`], { cwd: dir, env });
    try {
      await mulesReady(statsPort, 1);
      await httpRequest(`http://127.0.0.1:${port}/stuck`);
      await p.waitFor(/mule 1 \(pid: \d+\) killed by mule-harakiri \(1 s\); respawning/);
    } finally {
      await stopProcess(p);
    }
  });

  test('bad mule options: one line naming the option, exit 1', () => {
    const dir = tempDir();
    writeFiles(dir, { 'app.py': RAW, 'bad.ini': '[uwsgi]\nwsgi-file = app.py\nmules = 2\nfarm = f:1,3\n' });
    let r = tsgiCheck(['--ini', join(dir, 'bad.ini')]);
    assert.equal(r.status, 1);
    assert.equal(r.stderr, `tsgi: ${join(dir, 'bad.ini')}:4: option 'farm': 'f:1,3': mule 3 does not exist (there are 2)\n`);
    r = tsgiCheck(['-s', join(dir, 's.sock'), '--wsgi-file', join(dir, 'app.py'), '--mules', 'two']);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /^tsgi: .*option 'mules': .*'two' is not a number of mules \(1\.\.256\)\n$/);
    r = tsgiCheck(['-s', join(dir, 's.sock'), '--wsgi-file', join(dir, 'app.py'), '--mule=/bin/true']);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /^tsgi: .*option 'mule': .*'\/bin\/true': a mule runs a Python file .*\n$/);
    r = tsgiCheck(['-s', join(dir, 's.sock'), '--wsgi-file', join(dir, 'app.py'), '--mule-harakiri', '3']);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /^tsgi: .*option 'mule-harakiri': .*has no effect without a mule \(mule, mules = N\)\n$/);
  });

  test('a mule with a Node app is refused at start', () => {
    const dir = tempDir();
    writeFiles(dir, { 'app.mjs': 'export default { fetch: () => new Response("x") };\n' });
    const r = tsgiCheck(['-s', join(dir, 'n.sock'), '--wsgi-file', join(dir, 'app.mjs'), '--mules', '1']);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /^tsgi: mule: mules \(docs\/mules\.md\) are implemented for Python apps only; \S+app\.mjs is a Node app\n$/);
  });
});

describe('mule_msg and mule_get_msg, compared with the real uWSGI', { skip: haveUwsgi ? false : 'uwsgi with its python3 plugin is not installed' }, () => {
  test('a worker sends to a mule script by id; a mule that does not exist answers False', async () => {
    const cleanEnv = { ...process.env };
    for (const k of Object.keys(cleanEnv)) if (k.startsWith('UWSGI_') || k.startsWith('TSGI_')) delete cleanEnv[k];
    const results: Record<string, { answers: string[]; got: string }> = {};
    for (const server of ['uwsgi', 'tsgi'] as const) {
      const dir = tempDir();
      writeFiles(dir, { 'app.py': RAW, 'm.py': SCRIPT });
      const port = await freePort();
      const statsPort = await freePort();
      const args = ['--master', '--http-socket', `127.0.0.1:${port}`, '--wsgi-file', 'app.py', '--mule', '--mule=m.py', '--mule=m.py'];
      const p = server === 'uwsgi'
        ? startProcess('uwsgi', ['--plugin', 'python3', '--die-on-term', ...args], { cwd: dir, env: cleanEnv })
        : await startTsgi([...args, '--stats', `127.0.0.1:${statsPort}`], { cwd: dir, env });
      try {
        // uWSGI forks its mules from the master, whose message sockets exist before them; a tsgi mule binds its own.
        if (server === 'uwsgi') await p.waitFor(/spawned uWSGI mule 3/);
        else await mulesReady(statsPort, 3);
        // Mule 1 is generic (no hook set: it drops the message); 2 and 3 run the script.
        const answers: string[] = [];
        for (const to of [2, 3, 3, 9]) answers.push((await httpRequest(`http://127.0.0.1:${port}/?to=${to}`)).body.toString());
        await waitUntil(`${server}: three messages`, () => read(join(dir, 'got.txt')).split('\n').length === 4);
        results[server] = { answers, got: read(join(dir, 'got.txt')).split('\n').sort().join('\n') };
      } finally {
        await stopProcess(p);
      }
    }
    assert.deepEqual(results.tsgi, results.uwsgi);
    assert.deepEqual(results.tsgi!.answers, ['True', 'True', 'True', 'False']);
  });
});

/** Signals through the uwsgi module only (uWSGI's Debian package has no uwsgidecorators): what each process
 * handles goes to sig.txt. 17 -> every worker, 18 -> mule 1, 19 -> any worker, 30: a 1 s timer for the mules. */
const SIGNALS = `import os, uwsgi
HERE = os.path.dirname(os.path.abspath(__file__))
def out(s):
    with open(os.path.join(HERE, 'sig.txt'), 'a') as f:
        f.write(s + '\\n')
def h(num):
    out('sig %d worker=%d mule=%d' % (num, uwsgi.worker_id(), uwsgi.mule_id()))
def anyone(num):
    out('sig %d in a %s' % (num, 'worker' if uwsgi.worker_id() else 'mule'))
def tick(num):
    out('tick %d mule=%d' % (num, uwsgi.mule_id()))
uwsgi.register_signal(17, 'workers', h)
uwsgi.register_signal(18, 'mule1', h)
uwsgi.register_signal(19, '', anyone)
uwsgi.register_signal(30, 'mule', tick)
uwsgi.add_timer(30, 1)
try:
    uwsgi.register_signal(17, 'mule1', h)
except Exception as e:
    out('again: %r' % e)
def application(environ, start_response):
    uwsgi.signal(int(environ['PATH_INFO'][1:]))
    start_response('200 OK', [('Content-Type', 'text/plain')])
    return [b'raised']
`;

/** The decorators: a timer for worker 1, a file monitor for every worker, a cron entry for mule 1, a signal for any
 * worker; and the spooler target, which tsgi refuses. */
const SIGDECO = `import os, uwsgi
from uwsgidecorators import timer, filemon, cron, signal
HERE = os.path.dirname(os.path.abspath(__file__))
def out(s):
    with open(os.path.join(HERE, 'sig.txt'), 'a') as f:
        f.write(s + '\\n')

@timer(1, target='worker1')
def tick(num):
    out('tick worker=%d' % uwsgi.worker_id())

@filemon(os.path.join(HERE, 'watched'), target='workers')
def changed(num):
    out('changed worker=%d' % uwsgi.worker_id())

@cron(-1, -1, -1, -1, -1, target='mule1')
def every_minute(num):
    out('cron mule=%d' % uwsgi.mule_id())

@signal(40)
def raised(num):
    out('signal %d in a worker=%r' % (num, uwsgi.worker_id() > 0))

with open(os.path.join(HERE, 'target.txt')) as f:
    TARGET = f.read().strip()

@signal(41, target=TARGET)
def moved(num):
    out('signal %d worker=%d mule=%d' % (num, uwsgi.worker_id(), uwsgi.mule_id()))

if uwsgi.worker_id() == 0 and uwsgi.mule_id() == 0:   # once, in the app loader
    try:
        uwsgi.register_signal(50, 'spooler', raised)
    except ValueError as e:
        out('spooler: %s' % e)

def application(environ, start_response):
    uwsgi.signal(int(environ['PATH_INFO'][1:] or 40))
    start_response('200 OK', [('Content-Type', 'text/plain')])
    return [b'raised']
`;

/** One worker raises a signal for any worker (itself) in the middle of a request. */
const BUSY = `import os, time, uwsgi
HERE = os.path.dirname(os.path.abspath(__file__))
def out(s):
    with open(os.path.join(HERE, 'busy.txt'), 'a') as f:
        f.write(s + '\\n')
uwsgi.register_signal(19, '', lambda num: out('handler %d' % num))
def application(environ, start_response):
    uwsgi.signal(19)
    time.sleep(1)
    out('request end')
    start_response('200 OK', [('Content-Type', 'text/plain')])
    return [b'ok']
`;

describe('signals', () => {
  test('a busy worker handles its signal after the request, as uWSGI does', { skip: haveUwsgi ? false : 'uwsgi with its python3 plugin is not installed' }, async () => {
    const cleanEnv = { ...process.env };
    for (const k of Object.keys(cleanEnv)) if (k.startsWith('UWSGI_') || k.startsWith('TSGI_')) delete cleanEnv[k];
    const results: Record<string, string> = {};
    for (const server of ['uwsgi', 'tsgi'] as const) {
      const dir = tempDir();
      writeFiles(dir, { 'app.py': BUSY });
      const port = await freePort();
      const args = ['--master', '--http-socket', `127.0.0.1:${port}`, '--wsgi-file', 'app.py'];
      const p = server === 'uwsgi'
        ? startProcess('uwsgi', ['--plugin', 'python3', '--die-on-term', ...args], { cwd: dir, env: cleanEnv })
        : await startTsgi(args, { cwd: dir, env });
      try {
        if (server === 'uwsgi') await p.waitFor(/spawned uWSGI worker 1/);
        await httpRequest(`http://127.0.0.1:${port}/`);
        await waitUntil(`${server}: the handler`, () => read(join(dir, 'busy.txt')).includes('handler'));
        results[server] = read(join(dir, 'busy.txt'));
      } finally {
        await stopProcess(p);
      }
    }
    assert.equal(results.tsgi, results.uwsgi);
    assert.equal(results.tsgi, 'request end\nhandler 19\n');
  });

  test('register_signal targets, uwsgi.signal from a request, add_timer, a second registration: the same as the real uWSGI',
    { skip: haveUwsgi ? false : 'uwsgi with its python3 plugin is not installed' }, async () => {
      const cleanEnv = { ...process.env };
      for (const k of Object.keys(cleanEnv)) if (k.startsWith('UWSGI_') || k.startsWith('TSGI_')) delete cleanEnv[k];
      const results: Record<string, string[]> = {};
      for (const server of ['uwsgi', 'tsgi'] as const) {
        const dir = tempDir();
        writeFiles(dir, { 'app.py': SIGNALS });
        const port = await freePort();
        const statsPort = await freePort();
        const args = ['--master', '--http-socket', `127.0.0.1:${port}`, '--wsgi-file', 'app.py', '--processes', '2', '--mules', '1'];
        const p = server === 'uwsgi'
          ? startProcess('uwsgi', ['--plugin', 'python3', '--die-on-term', ...args], { cwd: dir, env: cleanEnv })
          : await startTsgi([...args, '--stats', `127.0.0.1:${statsPort}`], { cwd: dir, env });
        try {
          if (server === 'uwsgi') await p.waitFor(/spawned uWSGI mule 1/);
          else await mulesReady(statsPort, 1);
          const sig = join(dir, 'sig.txt');
          await waitUntil(`${server}: the timer`, () => read(sig).split('\n').filter((l) => l === 'tick 30 mule=1').length >= 2);
          for (const n of [17, 18, 19]) assert.equal((await httpRequest(`http://127.0.0.1:${port}/${n}`)).body.toString(), 'raised');
          await waitUntil(`${server}: the signals`, () => read(sig).split('\n').filter((l) => l.startsWith('sig')).length === 4);
          results[server] = [...new Set(read(sig).split('\n').filter(Boolean))].sort();
        } finally {
          await stopProcess(p);
        }
      }
      assert.deepEqual(results.tsgi, results.uwsgi);
      assert.deepEqual(results.tsgi, [
        "again: ValueError('unable to register signal')", 'sig 17 worker=1 mule=0', 'sig 17 worker=2 mule=0', 'sig 18 worker=0 mule=1',
        'sig 19 in a worker', 'tick 30 mule=1',
      ]);
    });

  test('@timer to worker 1, @filemon on a touched file, @cron every minute, @signal raised by a request; a reload forgets the registrations', async () => {
    const dir = tempDir();
    writeFiles(dir, { 'app.py': SIGDECO, 'watched': 'x', 'target.txt': 'worker2' });
    const port = await freePort();
    const statsPort = await freePort();
    const p = await startTsgi(['--master', '--http-socket', `127.0.0.1:${port}`, '--wsgi-file', 'app.py', '--processes', '2', '--mules', '1',
      '--stats', `127.0.0.1:${statsPort}`], { cwd: dir, env });
    const sig = join(dir, 'sig.txt');
    const lines = (): string[] => read(sig).split('\n').filter(Boolean);
    try {
      await mulesReady(statsPort, 1);
      // -1 everywhere matches every minute: the entry fires in the minute it is added (the mule gets it once it is up).
      await waitUntil('the cron entry', () => lines().includes('cron mule=1'));
      await waitUntil('two ticks', () => lines().filter((l) => l === 'tick worker=1').length >= 2);
      assert.ok(!lines().some((l) => l.startsWith('tick') && l !== 'tick worker=1'));
      await httpRequest(`http://127.0.0.1:${port}/`);
      await waitUntil('signal 40', () => lines().includes('signal 40 in a worker=True'));
      writeFiles(dir, { watched: 'changed' });
      await waitUntil('the file monitor in both workers', () => lines().includes('changed worker=1') && lines().includes('changed worker=2'));
      assert.ok(lines().includes("spooler: uwsgi.register_signal: tsgi does not deliver signals to target 'spooler' (docs/signals.md)"));
      await httpRequest(`http://127.0.0.1:${port}/41`);
      await waitUntil('signal 41 in worker 2', () => lines().includes('signal 41 worker=2 mule=0'));
      // A reload forgets the registrations: the reloaded app's target for 41 is used.
      const mulePid = (await mulesReady(statsPort, 1))[0]!.pid;
      writeFiles(dir, { 'target.txt': 'mule1' });
      p.kill('SIGHUP');
      for (let i = 0; i < 600 && (await mulesReady(statsPort, 1))[0]!.pid === mulePid; i++) await new Promise((r) => setTimeout(r, 50));
      // Raised again until the reloaded processes have registered (before that the master has no target for 41).
      for (let i = 0; i < 100 && !lines().includes('signal 41 worker=0 mule=1'); i++) {
        await httpRequest(`http://127.0.0.1:${port}/41`);
        await new Promise((r) => setTimeout(r, 200));
      }
      await waitUntil('signal 41 in mule 1', () => lines().includes('signal 41 worker=0 mule=1'));
    } finally {
      await stopProcess(p);
    }
  });
});
