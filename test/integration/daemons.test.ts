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
  const out2 = join(dir, 'cron2.out');
  const tsgi = await startTsgi(['-s', sock, '--wsgi-file', APP, '--cron', `-1 -1 -1 -1 -1 echo ran >> ${out}`,
    '--unique-cron', '-1 -1 -1 -1 -1 exec sleep 300', '--cron2', `echo ran2 >> ${out2}`], { env });
  try {
    await until('the cron job to run', () => existsSync(out) && readFileSync(out, 'utf8').includes('ran'), 70_000, 200);
    await until('the cron2 job (a bare command: every minute) to run', () => existsSync(out2) && readFileSync(out2, 'utf8').includes('ran2'), 70_000, 200);
    assert.match(tsgi.output(), /cron: running "echo ran >> [^"]*" \(pid \d+\)/);
    assert.match(tsgi.output(), /cron: running "exec sleep 300" \(pid \d+\)/);
  } finally {
    // Cron jobs are left to finish when tsgi stops; this one holds the test's pipe, so it goes first.
    const pid = /running "exec sleep 300" \(pid (\d+)\)/.exec(tsgi.output())?.[1];
    if (pid && alive(Number(pid))) process.kill(Number(pid), 'SIGKILL');
    await stopProcess(tsgi);
  }
});

test('attach-daemon2: chdir, stopsignal and touch restart a dumb daemon; the master writes a daemonize pidfile', async () => {
  const dir = tempDir();
  const sock = join(dir, 'd2.sock');
  const trigger = join(dir, 'restart.trigger');
  writeFileSync(trigger, '');
  // The daemon says where it runs and which signal stopped it (it traps QUIT and TERM).
  const script = join(dir, 'd.sh');
  // (The traps come first: a signal that arrived before them would end the shell without a word.)
  writeFileSync(script, `trap 'echo QUIT > stopped.$$; exit 0' QUIT\ntrap 'echo TERM > stopped.$$; exit 0' TERM\npwd > started.$$\nwhile true; do sleep 0.1; done\n`);
  const pidfile = join(dir, 'fg.pid');
  const tsgi = await startTsgi(['-s', sock, '--wsgi-file', APP,
    '--attach-daemon2', `cmd=exec sh ${script},chdir=${dir},stopsignal=3,touch=${trigger}`,
    '--attach-daemon2', `cmd=exec sleep 300,pidfile=${pidfile},daemonize=1`], { env });
  try {
    const first = pidIn(await tsgi.waitFor(/daemon "exec sh [^"]*" started \(pid: \d+\)/));
    await until('the daemon to start in its chdir', () => existsSync(join(dir, `started.${first}`)));
    assert.equal(readFileSync(join(dir, `started.${first}`), 'utf8').trim(), dir, 'chdir= is its working directory');
    const fg = pidIn(await tsgi.waitFor(/daemon "exec sleep 300" started \(pid: \d+\)/));
    await until('the master to write the pidfile', () => existsSync(pidfile) && Number(readFileSync(pidfile, 'utf8')) === fg);
    await new Promise((r) => setTimeout(r, 1100)); // a modification time distinct from the one seen at start
    writeFileSync(trigger, 'now');
    await tsgi.waitFor(/restart\.trigger was touched; restarting it/, 5000);
    await until('the touched daemon to stop with its stopsignal', () => existsSync(join(dir, `stopped.${first}`)));
    assert.equal(readFileSync(join(dir, `stopped.${first}`), 'utf8').trim(), 'QUIT', 'stopsignal=3 is SIGQUIT');
    const second = pidIn(await tsgi.waitFor(/daemon "exec sh [^"]*" respawned \(pid: \d+\)/, 10_000));
    assert.notEqual(second, first);
    await until('the respawned daemon to be ready', () => existsSync(join(dir, `started.${second}`)));
    const r = await stopProcess(tsgi, 'SIGTERM');
    assert.equal(r.code, 0);
    await until('the respawned daemon to be stopped', () => existsSync(join(dir, `stopped.${second}`)));
    assert.equal(readFileSync(join(dir, `stopped.${second}`), 'utf8').trim(), 'QUIT');
    assert.equal(alive(fg), false, 'the foreground daemon is stopped with tsgi');
  } finally {
    await stopProcess(tsgi);
  }
});

test('attach-control-daemon (and attach-daemon2 control=1): when it ends, the instance stops gracefully', async () => {
  for (const args of [['--attach-control-daemon', 'sleep 1'], ['--attach-daemon2', 'cmd=sleep 1,control=1']]) {
    const dir = tempDir();
    const tsgi = await startTsgi(['-s', join(dir, 'c.sock'), '--wsgi-file', APP, ...args], { env });
    try {
      const code = tsgi.child.exitCode ?? await new Promise<number | null>((done) => tsgi.child.on('exit', (c) => done(c)));
      assert.equal(code, 0, args.join(' '));
      assert.match(tsgi.output(), /daemon "sleep 1" is a control daemon: stopping the instance/);
    } finally {
      await stopProcess(tsgi);
    }
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
    'd2.ini': '[uwsgi]\nsocket = :0\nattach-daemon2 = cmd=my_daemon.sh,pidfile=/tmp/my.pid,stopsignal=3,stop=now\n',
    'd2cmd.ini': '[uwsgi]\nsocket = :0\nattach-daemon2 = pidfile=/tmp/my.pid\n',
    'cron2.ini': '[uwsgi]\nsocket = :0\ncron2 = minute=39,hour=23\n',
  });
  for (const [file, line, option, why] of [
    ['d2.ini', 3, 'attach-daemon2', "unknown key 'stop' (attach-daemon2 knows command, cmd, exec"],
    ['d2cmd.ini', 3, 'attach-daemon2', "a 'cmd' key is required"],
    ['cron2.ini', 3, 'cron2', 'no command after the key=value list'],
  ] as const) {
    const c = tsgiCheck(['--ini', join(dir, file)]);
    assert.equal(c.status, 1, file);
    assert.ok(c.stderr.startsWith(`tsgi: ${join(dir, file)}:${line}: option '${option}': bad value '`) && c.stderr.includes(why) && c.stderr.split('\n').length === 2, c.stderr);
  }
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
