/**
 * attach-daemon, smart-attach-daemon(2), cron, unique-cron and py-autoreload with real processes; their
 * configuration errors.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot, tsgiBin } from '../helpers/paths.js';
import { activatedEnv, sharedVenv, startTsgi, stopProcess, tempDir, workerPids, writeFiles } from '../helpers/procs.js';
import { until } from '../helpers/emperor.js';
import { getVars, uwsgiRequest } from '../helpers/uwsgi-client.js';

const APP = join(repoRoot, 'test/fixtures/apps/behaviours.py');
const env = activatedEnv(sharedVenv());

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    return stat[stat.lastIndexOf(')') + 2] !== 'Z';
  } catch {
    return false;
  }
}

const pidIn = (line: string): number => Number(/pid:? (\d+)/.exec(line)![1]);

for (const stop of ['SIGTERM', 'SIGINT'] as const) {
  test(`attach-daemon: started with the master, respawned when killed, restarted on reload, gone after ${stop}`, async () => {
    const dir = tempDir();
    const sock = join(dir, 'd.sock');
    const tsgi = await startTsgi(['-s', sock, '--wsgi-file', APP, '--attach-daemon', 'echo daemon says hello; exec sleep 300'], { env });
    try {
      const first = pidIn(await tsgi.waitFor(/daemon "echo daemon says hello; exec sleep 300" started \(pid: \d+\)/));
      await tsgi.waitFor(/daemon says hello/); // its output goes to tsgi's log
      assert.ok(alive(first));
      process.kill(first, 'SIGKILL');
      await tsgi.waitFor(new RegExp(`daemon "[^"]*" \\(pid: ${first}\\) killed by SIGKILL`));
      const second = pidIn(await tsgi.waitFor(/daemon "[^"]*" respawned \(pid: \d+\)/, 10_000));
      assert.notEqual(second, first);
      assert.ok(alive(second));
      tsgi.kill('SIGHUP');
      await tsgi.waitFor(/graceful reload done/);
      await tsgi.waitFor(new RegExp(`daemon "[^"]*" \\(pid: ${second}\\) stopped`));
      const third = pidIn((await tsgi.waitFor(/daemon "[^"]*" started \(pid: \d+\)[\s\S]*daemon "[^"]*" started \(pid: \d+\)/)).split('\n').at(-1)!);
      assert.ok(third !== second && alive(third), 'a reload restarts it');
      const r = await stopProcess(tsgi, stop);
      assert.equal(r.code, 0);
      assert.equal(alive(third), false, 'the daemon is stopped with tsgi');
      assert.match(tsgi.output(), new RegExp(`stopping daemon "[^"]*" \\(pid: ${third}\\)`));
    } finally {
      await stopProcess(tsgi);
    }
  });
}

test('smart-attach-daemon: the pid in the pidfile is watched, respawned when gone, kept across a reload, stopped with tsgi', async () => {
  const dir = tempDir();
  const sock = join(dir, 's.sock');
  const pidfile = join(dir, 'd.pid');
  const cmd = `sleep 300 </dev/null >/dev/null 2>&1 & echo $! > ${pidfile}`;
  const tsgi = await startTsgi(['-s', sock, '--wsgi-file', APP, '--smart-attach-daemon', `${pidfile} ${cmd}`], { env });
  try {
    const first = pidIn(await tsgi.waitFor(/is running as pid \d+/));
    assert.equal(Number(readFileSync(pidfile, 'utf8')), first);
    process.kill(first, 'SIGKILL');
    await tsgi.waitFor(new RegExp(`\\(pid: ${first}\\) is gone`), 10_000);
    const second = Number(/is running as pid (\d+)/.exec(tsgi.output().slice(tsgi.output().indexOf('is gone')))?.[1] ??
      /is running as pid (\d+)/.exec((await tsgi.waitFor(/is gone[\s\S]*is running as pid \d+/, 10_000)).split('\n').at(-1)!)![1]);
    assert.ok(second !== first && alive(second));
    tsgi.kill('SIGHUP');
    await tsgi.waitFor(/graceful reload done/);
    await new Promise((r) => setTimeout(r, 1500));
    assert.ok(alive(second), 'a reload leaves it running');
    assert.equal(tsgi.output().match(/is running as pid/g)!.length, 2, 'and does not start it again');
    assert.equal((await stopProcess(tsgi)).code, 0);
    assert.equal(alive(second), false, 'stopped with tsgi');
  } finally {
    await stopProcess(tsgi);
  }
});

test('smart-attach-daemon2: the master writes the pid of a foreground command to the pidfile', async () => {
  const dir = tempDir();
  const sock = join(dir, 's2.sock');
  const pidfile = join(dir, 'd2.pid');
  const tsgi = await startTsgi(['-s', sock, '--wsgi-file', APP, '--smart-attach-daemon2', `${pidfile} exec sleep 300`], { env });
  try {
    const pid = pidIn(await tsgi.waitFor(/daemon "exec sleep 300" started \(pid: \d+\)/));
    await until('pidfile', () => existsSync(pidfile));
    assert.equal(Number(readFileSync(pidfile, 'utf8')), pid);
    assert.equal((await stopProcess(tsgi, 'SIGINT')).code, 0);
    assert.equal(alive(pid), false);
  } finally {
    await stopProcess(tsgi);
  }
});

test('cron: a job for every minute runs (at the latest at the next minute); unique-cron runs once while it lasts', async () => {
  const dir = tempDir();
  const sock = join(dir, 'c.sock');
  const out = join(dir, 'cron.out');
  const tsgi = await startTsgi(['-s', sock, '--wsgi-file', APP, '--cron', `-1 -1 -1 -1 -1 echo ran >> ${out}`,
    '--unique-cron', '-1 -1 -1 -1 -1 exec sleep 300'], { env });
  try {
    await until('the cron job to run', () => existsSync(out) && readFileSync(out, 'utf8').includes('ran'), 70_000, 200);
    assert.match(tsgi.output(), /cron: running "echo ran >> [^"]*" \(pid \d+\)/);
    assert.match(tsgi.output(), /cron: running "exec sleep 300" \(pid \d+\)/);
  } finally {
    // Cron jobs are left to finish when tsgi stops; this one holds the test's pipe, so it goes first.
    const pid = /running "exec sleep 300" \(pid (\d+)\)/.exec(tsgi.output())?.[1];
    if (pid && alive(Number(pid))) process.kill(Number(pid), 'SIGKILL');
    await stopProcess(tsgi);
  }
});

test('py-autoreload: a changed module reloads the workers, which serve the new code', async () => {
  const dir = tempDir();
  const sock = join(dir, 'a.sock');
  writeFiles(dir, {
    'app.py': 'import helper\ndef application(e, s):\n    s("200 OK", [("Content-Type", "text/plain")])\n    return [helper.VALUE.encode()]\n',
    'helper.py': 'VALUE = "one"\n',
  });
  const tsgi = await startTsgi(['-s', sock, '-p', '2', '--wsgi-file', join(dir, 'app.py'), '--py-autoreload', '1'], { env, cwd: dir });
  try {
    assert.equal((await uwsgiRequest(sock, getVars('/'))).body.toString(), 'one');
    const before = workerPids(tsgi.pid);
    await new Promise((r) => setTimeout(r, 1200));
    writeFileSync(join(dir, 'helper.py'), 'VALUE = "two"\n');
    await tsgi.waitFor(/module\/file \S*helper\.py has been modified[\s\S]*graceful reload done: generation 2/, 15_000);
    await until('the old workers to go', () => workerPids(tsgi.pid).every((p) => !before.includes(p)) && workerPids(tsgi.pid).length === 2);
    assert.equal((await uwsgiRequest(sock, getVars('/'))).body.toString(), 'two');
    assert.equal(tsgi.output().match(/has been modified/g)!.length, 1, 'one worker asks, once');
  } finally {
    await stopProcess(tsgi);
  }
});

function tsgiCheck(args: string[]): { status: number | null; stderr: string } {
  const r = spawnSync(tsgiBin, args, { encoding: 'utf8', env: { PATH: process.env.PATH, HOME: process.env.HOME } });
  return { status: r.status, stderr: r.stderr };
}

test('configuration errors: one line naming file:line and the option', () => {
  const dir = tempDir();
  writeFiles(dir, {
    'cron.ini': '[uwsgi]\nsocket = :0\ncron = sleep 30\n',
    'range.ini': '[uwsgi]\nsocket = :0\nunique-cron = 75 -1 -1 -1 -1 true\n',
    'smart.ini': '[uwsgi]\nsocket = :0\n\nsmart-attach-daemon = /tmp/only-a-pidfile\n',
  });
  let r = tsgiCheck(['--ini', join(dir, 'cron.ini')]);
  assert.equal(r.status, 1);
  assert.equal(r.stderr, `tsgi: ${join(dir, 'cron.ini')}:3: option 'cron': bad value 'sleep 30': expected MINUTE HOUR DAY MONTH WEEKDAY COMMAND (numbers, -1 for any, -N for every N)\n`);
  r = tsgiCheck(['--ini', join(dir, 'cron.ini'), '--get', 'socket']);
  assert.equal(r.status, 1, 'as in uWSGI, a malformed cron line fails even a query');
  r = tsgiCheck(['--ini', join(dir, 'range.ini')]);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /^tsgi: \S+range\.ini:3: option 'unique-cron': bad value '75 -1 -1 -1 -1 true': minute 75 is out of range \(0-59, -1 for any, -N for every N\)\n$/);
  r = tsgiCheck(['--ini', join(dir, 'smart.ini')]);
  assert.equal(r.status, 1);
  assert.equal(r.stderr, `tsgi: ${join(dir, 'smart.ini')}:4: option 'smart-attach-daemon': bad value '/tmp/only-a-pidfile': expected PIDFILE COMMAND\n`);
});

test('py-autoreload with a Node app is refused at start, saying what to use instead', () => {
  const dir = tempDir();
  writeFiles(dir, { 'app.mjs': 'export default { fetch: () => new Response("x") };\n' });
  const r = tsgiCheck(['-s', join(dir, 'n.sock'), '--wsgi-file', join(dir, 'app.mjs'), '--py-autoreload', '2']);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /^tsgi: py-autoreload watches the modules of a Python app; \S+app\.mjs is a Node app \(use touch-reload = FILE/);
});
