/**
 * What the emperor gives its vassals: options for all of them (vassal-set, vassals-inherit, TSGI_VASSAL_* and
 * UWSGI_VASSAL_* variables) with %n/%d naming each vassal's own file; a glob instead of a folder; and
 * emperor-tyrant, each vassal running as its file's owner.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, chownSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from '../helpers/paths.js';
import { activatedEnv, childPids, workerPids, sharedVenv, stopProcess, tempDir } from '../helpers/procs.js';
import { resolveGroup, resolveUser } from '../../src/master/users.js';
import { ask, readStats, startEmperor, until, vassal } from '../helpers/emperor.js';

const APP = join(repoRoot, 'test/fixtures/apps/emperor_app.py');
const venv = sharedVenv();

function envOf(body: string): Record<string, string> {
  return Object.fromEntries(body.trim().split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
}

test("vassal-set, vassals-inherit and TSGI_VASSAL_*/UWSGI_VASSAL_* reach every vassal, with %n and %d naming its own file; the emperor's own settings (TSGI_INI, TSGI_EMPEROR_*) and NOTIFY_SOCKET stay with the emperor", async () => {
  const dir = tempDir('tsgi-emperor-opts-');
  mkdirSync(join(dir, 'vassals'));
  mkdirSync(join(dir, 'run'));
  writeFileSync(join(dir, 'emperor.ini'), `[uwsgi]
emperor = %dvassals
emperor-stats = %dstats.sock
vassal-set = socket=%drun/%n.sock
vassal-set = env=FROM_SET=%n@%d
vassals-inherit = %dcommon.ini
`);
  // %d in vassal-set is the vassal's folder (dir/vassals/), so its sockets land in dir/vassals/run/.
  mkdirSync(join(dir, 'vassals/run'));
  writeFileSync(join(dir, 'common.ini'), `[uwsgi]\nwsgi-file = ${APP}\nenv = FROM_INHERIT=%N/%n\n`);
  writeFileSync(join(dir, 'vassals/x.ini'), '[uwsgi]\nenv = OWN=%n-own\n');
  writeFileSync(join(dir, 'vassals/y.ini'), '[uwsgi]\nprocesses = 1\n');
  // The emperor is configured through the environment here (TSGI_INI): that must not make its vassals emperors.
  const env = {
    ...activatedEnv(venv),
    TSGI_INI: join(dir, 'emperor.ini'),
    TSGI_EMPEROR_FREQ: '1',
    TSGI_VASSAL_ENV: 'GREETING=hello-%n',
    UWSGI_VASSAL_PROCESSES: '2',
    NOTIFY_SOCKET: join(dir, 'systemd-notify.sock'),
  };
  const emperor = await startEmperor([], { env, cwd: dir });
  try {
    assert.match(emperor.output(), /emperor: ready: 2 vassal\(s\) serving/);
    const xs = join(dir, 'vassals/run/x.sock');
    const ys = join(dir, 'vassals/run/y.sock');
    const keys = 'FROM_SET,FROM_INHERIT,GREETING,OWN,TSGI_VASSAL,TSGI_INI,TSGI_EMPEROR_FREQ,NOTIFY_SOCKET,TSGI_VASSAL_ENV,TSGI_ENV,UWSGI_PROCESSES';
    const x = envOf((await ask(xs, '/env', keys)).body.toString());
    assert.deepEqual(x, {
      FROM_SET: `x@${join(dir, 'vassals')}/`,
      FROM_INHERIT: 'x/common',
      GREETING: 'hello-x',
      OWN: 'x-own',
      TSGI_VASSAL: 'x.ini',
      TSGI_INI: '',
      TSGI_EMPEROR_FREQ: '',
      NOTIFY_SOCKET: '',
      TSGI_VASSAL_ENV: '',
      TSGI_ENV: 'GREETING=hello-x',
      UWSGI_PROCESSES: '2',
    });
    const y = envOf((await ask(ys, '/env', 'FROM_SET,FROM_INHERIT,GREETING,TSGI_VASSAL')).body.toString());
    assert.deepEqual(y, { FROM_SET: `y@${join(dir, 'vassals')}/`, FROM_INHERIT: 'y/common', GREETING: 'hello-y', TSGI_VASSAL: 'y.ini' });

    // Precedence, as uWSGI: environment < vassal-set < the vassal's own file < vassals-inherit.
    const stats = await readStats(join(dir, 'stats.sock'));
    assert.equal(workerPids(vassal(stats, 'x.ini')!.pid!).length, 2, 'x: processes = 2 from UWSGI_VASSAL_PROCESSES');
    assert.equal(workerPids(vassal(stats, 'y.ini')!.pid!).length, 1, "y: its own file's processes = 1 wins");
    assert.deepEqual(vassal(stats, 'x.ini')!.sockets, [xs]);
  } finally {
    assert.equal((await stopProcess(emperor)).code, 0, emperor.output());
  }
});

test("vassal files linked to one shared template (uWSGI's docs pattern): each is its own vassal, %n its own name", async () => {
  const dir = tempDir('tsgi-emperor-skel-');
  mkdirSync(join(dir, 'vassals'));
  mkdirSync(join(dir, 'run'));
  // app.skel is no vassal file (its extension); the links are.
  writeFileSync(join(dir, 'vassals/app.skel'), `[uwsgi]\nsocket = ${dir}/run/%n.sock\nwsgi-file = ${APP}\n`);
  for (const name of ['app1', 'app2']) symlinkSync(join(dir, 'vassals/app.skel'), join(dir, `vassals/${name}.ini`));
  const emperor = await startEmperor(['--emperor', join(dir, 'vassals')], { env: activatedEnv(venv) });
  try {
    assert.match(emperor.output(), /emperor: ready: 2 vassal\(s\) serving/);
    for (const name of ['app1', 'app2']) {
      const r = await ask(join(dir, `run/${name}.sock`));
      assert.match(r.body.toString(), new RegExp(`^${name}\\.ini \\d+ /$`));
    }
  } finally {
    assert.equal((await stopProcess(emperor)).code, 0, emperor.output());
  }
});

test('a glob of vassal files: only matching files are vassals, and new matches start', async () => {
  const dir = tempDir('tsgi-emperor-glob-');
  mkdirSync(join(dir, 'sub'));
  const vassalFile = (name: string) => `[uwsgi]\nsocket = ${dir}/${name}.sock\nwsgi-file = ${APP}\n`;
  writeFileSync(join(dir, 'site-a.ini'), vassalFile('a'));
  writeFileSync(join(dir, 'other.ini'), vassalFile('other'));
  writeFileSync(join(dir, 'sub/site-b.ini'), vassalFile('b'));
  const stats = join(dir, 'stats.sock');
  const pattern = `${dir}/site-*.ini`;
  const emperor = await startEmperor(['--emperor', pattern, '--emperor-stats', stats], { env: activatedEnv(venv) });
  try {
    const s = await readStats(stats);
    assert.deepEqual(s.emperor, [pattern]);
    assert.deepEqual(s.vassals.map((v) => [v.name, v.file, v.status]), [['site-a.ini', join(dir, 'site-a.ini'), 'ready']]);
    writeFileSync(join(dir, 'site-c.ini'), vassalFile('c'));
    await until('site-c serves', async () => (await ask(join(dir, 'c.sock'))).status === 200);
    rmSync(join(dir, 'site-a.ini'));
    await until('site-a is gone', async () => !vassal(await readStats(stats), 'site-a.ini'));
    assert.deepEqual((await readStats(stats)).vassals.map((v) => v.name), ['site-c.ini']);
  } finally {
    assert.equal((await stopProcess(emperor)).code, 0, emperor.output());
  }
});

const isRoot = process.getuid?.() === 0;

function procIds(pid: number): { uid: number; gid: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return { uid: Number(/^Uid:\s+(\d+)/m.exec(status)![1]), gid: Number(/^Gid:\s+(\d+)/m.exec(status)![1]) };
}

test("emperor-tyrant: each vassal runs as its file's owner; a file owned by root is refused until it is given away; a new owner restarts it", { skip: isRoot ? false : 'needs root: a tyrant switches each vassal to its file owner' }, async () => {
  const nobody = resolveUser('nobody')!;
  const nogroup = resolveGroup('nogroup')!;
  const daemon = resolveUser('daemon')!;
  const dir = tempDir('tsgi-emperor-tyrant-');
  const vassals = join(dir, 'vassals');
  const run = join(dir, 'run');
  mkdirSync(vassals);
  mkdirSync(run);
  chmodSync(run, 0o777); // each vassal creates its socket here as its own user
  const vassalFile = (name: string) => `[uwsgi]\nsocket = ${run}/${name}.sock\nwsgi-file = ${APP}\n`;
  writeFileSync(join(vassals, 'users.ini'), vassalFile('users'));
  chownSync(join(vassals, 'users.ini'), nobody.uid, nogroup);
  writeFileSync(join(vassals, 'rooted.ini'), vassalFile('rooted'));
  const stats = join(dir, 'stats.sock');
  const emperor = await startEmperor(['--emperor', vassals, '--emperor-tyrant', '--emperor-stats', stats], { env: activatedEnv(venv) });
  try {
    assert.match(emperor.output(), /vassal users\.ini: spawned its master \(pid \d+ as uid 65534, gid 65534\)/);
    assert.match(emperor.output(), /vassal rooted\.ini: configuration error: emperor-tyrant: .*rooted\.ini belongs to root \(uid 0, gid 0\); a tyrant runs each vassal as its file's owner, never as root: chown the file to the app's user and group/);
    const users = vassal(await readStats(stats), 'users.ini')!;
    assert.deepEqual([users.uid, users.gid], [nobody.uid, nogroup]);
    for (const pid of [users.pid!, ...childPids(users.pid!), ...workerPids(users.pid!)]) assert.deepEqual(procIds(pid), { uid: nobody.uid, gid: nogroup }, `pid ${pid}`);
    const r = await ask(join(run, 'users.sock'));
    assert.equal(r.status, 200);

    // Given away, the refused file starts, as its new owner.
    chownSync(join(vassals, 'rooted.ini'), nobody.uid, nogroup);
    await until('rooted.ini serves', async () => (await ask(join(run, 'rooted.sock'))).status === 200);
    assert.deepEqual(procIds(vassal(await readStats(stats), 'rooted.ini')!.pid!), { uid: nobody.uid, gid: nogroup });

    // A file that changes hands restarts its vassal as the new owner.
    chownSync(join(vassals, 'users.ini'), daemon.uid, daemon.gid);
    const moved = await until('users.ini runs as daemon', async () => {
      const v = vassal(await readStats(stats), 'users.ini')!;
      return v.status === 'ready' && v.uid === daemon.uid ? v : undefined;
    });
    assert.notEqual(moved.pid, users.pid);
    assert.deepEqual(procIds(moved.pid!), { uid: daemon.uid, gid: daemon.gid });
    assert.match(emperor.output(), /vassal users\.ini: its owner changed to uid 1, gid 1; restarting it as the new owner/);
  } finally {
    assert.equal((await stopProcess(emperor)).code, 0, emperor.output());
  }
});

test("the emperor's logto is its vassals' log too: their lines and their workers' request lines go to the same file", async () => {
  const dir = tempDir('tsgi-emperor-logto-');
  mkdirSync(join(dir, 'vassals'));
  writeFileSync(join(dir, 'vassals/app.ini'), `[uwsgi]\nsocket = ${dir}/app.sock\nwsgi-file = ${APP}\n`);
  const log = join(dir, 'emperor.log');
  const stats = join(dir, 'stats.sock');
  const emperor = await startEmperor(['--emperor', join(dir, 'vassals'), '--logto', log, '--emperor-stats', stats], { env: activatedEnv(venv), ready: false });
  try {
    await until('the emperor is ready', () => /emperor: ready: 1 vassal\(s\) serving/.test(readFileSync(log, 'utf8')));
    assert.equal((await ask(join(dir, 'app.sock'), '/logged')).status, 200);
    await until('the request is logged', () => /GET \/logged => generated/.test(readFileSync(log, 'utf8')));
    const text = readFileSync(log, 'utf8');
    const master = vassal(await readStats(stats), 'app.ini')!.pid;
    assert.match(text, new RegExp(`tsgi: ready: 1 worker\\(s\\) serving \\(master pid: ${master}\\)`));
    assert.equal(emperor.output(), '', 'nothing on the terminal');
  } finally {
    assert.equal((await stopProcess(emperor)).code, 0);
  }
  assert.match(readFileSync(log, 'utf8'), /emperor: stopped: every vassal is gone\n$/);
});

test("tsgi top shows an emperor's vassals from its emperor-stats (tmux)", async (t) => {
  const { spawnSync } = await import('node:child_process');
  const { tsgiBin } = await import('../helpers/paths.js');
  if (spawnSync('tmux', ['-V']).status !== 0) {
    t.skip('tmux is not installed (scripts/test-all installs it)');
    return;
  }
  const dir = tempDir('tsgi-emperor-top-');
  mkdirSync(join(dir, 'vassals'));
  writeFileSync(join(dir, 'vassals/shop.ini'), `[uwsgi]\nsocket = ${join(dir, 'shop.sock')}\nwsgi-file = ${APP}\n`);
  writeFileSync(join(dir, 'vassals/blog.ini'), `[uwsgi]\nsocket = ${join(dir, 'blog.sock')}\nwsgi-file = ${APP}\n`);
  const stats = join(dir, 'emperor-stats.sock');
  const emperor = await startEmperor(['--emperor', join(dir, 'vassals'), '--emperor-stats', stats], { env: activatedEnv(venv), cwd: dir });
  const session = `tsgi-etop-${process.pid}`;
  try {
    assert.equal(spawnSync('tmux', ['new-session', '-d', '-s', session, '-x', '120', '-y', '30', `${process.execPath} ${tsgiBin} top ${stats}`]).status, 0);
    const table = await until('the vassals on screen', () => {
      const screen = spawnSync('tmux', ['capture-pane', '-p', '-t', session], { encoding: 'utf8' }).stdout;
      return /VASSALS/.test(screen) && /blog\.ini/.test(screen) && /shop\.ini/.test(screen) ? screen : undefined;
    });
    assert.match(table, /blog\.ini\s+pid\s+\d+\s+ready/);
  } finally {
    spawnSync('tmux', ['kill-session', '-t', session]);
    await stopProcess(emperor);
  }
});
