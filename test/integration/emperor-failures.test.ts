/**
 * What goes wrong in a vassal folder stays with the vassal it belongs to: a bad file is one clear log line and waits
 * for its fix, a vassal that cannot start is retried with back-off, and the other vassals never notice. A bad
 * configuration of the emperor itself is one line and exit status 1, as for a single instance.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot, tsgiBin } from '../helpers/paths.js';
import { activatedEnv, workerPids, sharedVenv, startProcess, stopProcess, tempDir, type RunningProcess } from '../helpers/procs.js';
import { resolveGroup, resolveUser } from '../../src/master/users.js';
import { ask, linesMatching, readStats, startEmperor, until, vassal } from '../helpers/emperor.js';

const APP = join(repoRoot, 'test/fixtures/apps/emperor_app.py');
const env = activatedEnv(sharedVenv());

const good = (sock: string): string => `[uwsgi]\nsocket = ${sock}\nwsgi-file = ${APP}\n`;

test('a vassal file with a syntax error: one clear log line, the other vassals unaffected, and the fixed file starts it', async () => {
  const dir = tempDir('tsgi-emperor-bad-');
  const vassals = join(dir, 'vassals');
  mkdirSync(vassals);
  const stats = join(dir, 'stats.sock');
  writeFileSync(join(vassals, 'one.ini'), good(join(dir, 'one.sock')));
  writeFileSync(join(vassals, 'two.ini'), good(join(dir, 'two.sock')));
  // A line without '=' where `key = value` was meant.
  writeFileSync(join(vassals, 'broken.ini'), `[uwsgi]\nsocket = ${join(dir, 'broken.sock')}\nwsgi-file ${APP}\n`);
  let emperor: RunningProcess | undefined;
  try {
    emperor = await startEmperor(['--emperor', vassals, '--emperor-stats', stats, '--emperor-freq', '1'], { env });
    assert.match(emperor.output(), /emperor: ready: 2 vassal\(s\) serving, 1 not: broken\.ini/);
    const errorLine = new RegExp(`vassal broken\\.ini: configuration error: ${join(vassals, 'broken.ini').replace(/\./g, '\\.')}:3: option 'wsgi-file ${APP.replace(/\./g, '\\.')}': unknown option \\(it starts when the file changes\\)$`);
    assert.equal(linesMatching(emperor.output(), errorLine).length, 1, emperor.output());
    assert.equal((await ask(join(dir, 'one.sock'))).status, 200);
    assert.equal((await ask(join(dir, 'two.sock'))).status, 200);

    // The emperor looks at the folder again and again; the broken file is neither retried nor logged again.
    const s1 = await readStats(stats);
    await until('two more scans', async () => (await readStats(stats)).scans >= s1.scans + 2, 30_000, 100);
    const s2 = await readStats(stats);
    const broken = vassal(s2, 'broken.ini')!;
    assert.equal(broken.status, 'invalid');
    assert.equal(broken.pid, null);
    assert.match(broken.last_error!, /broken\.ini:3: option 'wsgi-file .*': unknown option/);
    assert.equal(linesMatching(emperor.output(), /broken\.ini/).filter((l) => /configuration error/.test(l)).length, 1, 'logged once');
    assert.equal(linesMatching(emperor.output(), /vassal broken\.ini: spawned/).length, 1, 'started once');
    const others = s2.vassals.filter((v) => v.name !== 'broken.ini');
    assert.deepEqual(others.map((v) => [v.name, v.status, v.pid]), s1.vassals.filter((v) => v.name !== 'broken.ini').map((v) => [v.name, 'ready', v.pid]));

    // Fixed: it starts and serves; the others still run the same masters.
    writeFileSync(join(vassals, 'broken.ini'), good(join(dir, 'broken.sock')));
    await until('broken.ini serves', async () => (await ask(join(dir, 'broken.sock'))).status === 200);
    const s3 = await readStats(stats);
    assert.equal(vassal(s3, 'broken.ini')!.status, 'ready');
    for (const v of others) assert.equal(vassal(s3, v.name)!.pid, v.pid, `${v.name} kept its master`);
  } finally {
    if (emperor) assert.equal((await stopProcess(emperor)).code, 0, emperor.output());
  }
});

test('a vassal that cannot start is retried with back-off, the others unaffected, and starts once it can', async () => {
  const dir = tempDir('tsgi-emperor-retry-');
  const vassals = join(dir, 'vassals');
  mkdirSync(vassals);
  const stats = join(dir, 'stats.sock');
  writeFileSync(join(vassals, 'fine.ini'), good(join(dir, 'fine.sock')));
  // Its socket's folder does not exist yet: every start fails, with the vassal's own error line.
  writeFileSync(join(vassals, 'later.ini'), good(join(dir, 'not-yet/later.sock')));
  let emperor: RunningProcess | undefined;
  try {
    emperor = await startEmperor(['--emperor', vassals, '--emperor-stats', stats], { env });
    await emperor.waitFor(/vassal later\.ini: could not start: cannot bind socket .*not-yet\/later\.sock .*: directory .*not-yet does not exist .*; starting it again in 1 s/);
    await emperor.waitFor(/vassal later\.ini: could not start: .*; starting it again in 2 s/);
    const s = await readStats(stats);
    const later = vassal(s, 'later.ini')!;
    assert.ok(later.status === 'backoff' || later.status === 'queued' || later.status === 'starting', later.status);
    assert.match(later.last_error!, /directory .*not-yet does not exist/);
    const fine = vassal(s, 'fine.ini')!;
    assert.equal(fine.status, 'ready');
    assert.equal(fine.restarts, 0);

    mkdirSync(join(dir, 'not-yet'));
    await until('later.ini serves', async () => (await ask(join(dir, 'not-yet/later.sock'))).status === 200);
    const after = await readStats(stats);
    assert.equal(vassal(after, 'later.ini')!.status, 'ready');
    assert.ok(vassal(after, 'later.ini')!.restarts >= 2);
    assert.equal(vassal(after, 'fine.ini')!.pid, fine.pid, 'fine.ini kept its master all along');
    assert.equal(workerPids(fine.pid!).length, 1);
  } finally {
    if (emperor) assert.equal((await stopProcess(emperor)).code, 0, emperor.output());
  }
});

test('a vassal file in a format tsgi does not read yet is reported once, like any bad file', async () => {
  const dir = tempDir('tsgi-emperor-yaml-');
  writeFileSync(join(dir, 'app.yaml'), 'uwsgi:\n  socket: /tmp/x.sock\n');
  const emperor = await startEmperor(['--emperor', dir], { env });
  try {
    assert.match(emperor.output(), /vassal app\.yaml: configuration error: .*'.*app\.yaml': yaml configuration files are not supported by tsgi yet \(use ini\)/);
    assert.match(emperor.output(), /emperor: ready: 0 vassal\(s\) serving, 1 not: app\.yaml/);
  } finally {
    assert.equal((await stopProcess(emperor)).code, 0);
  }
});

test("the emperor's own bad configuration: one line naming it, exit status 1", () => {
  const dir = tempDir('tsgi-emperor-conf-');
  const run = (...args: string[]) => spawnSync(tsgiBin, args, { encoding: 'utf8', env, cwd: dir });
  const cases: Array<[string[], RegExp]> = [
    [['--emperor', join(dir, 'missing')], /^tsgi: command line \(argument 1\): option 'emperor': .*missing: no such directory \(create it, or give a glob such as '.*missing\/\*\.ini'\)\n$/],
    [['--emperor', dir, '--socket', ':3031'], /^tsgi: command line \(argument 3\): option 'socket': belongs in a vassal file: the emperor runs no app itself \(to give it to every vassal, use vassal-set = socket=\.\.\.\)\n$/],
    [['--emperor', dir, '--vassal-set', 'processes'], /^tsgi: command line \(argument 3\): option 'vassal-set': bad value 'processes': expected KEY=VALUE\n$/],
    [['--emperor', 'pg://localhost/vassals'], /^tsgi: command line \(argument 1\): option 'emperor': 'pg:\/\/localhost\/vassals': only folders and globs of vassal files are implemented \(no pg:\/\/ monitor\)\n$/],
    [['--emperor', dir, '--emperor-throttle', '100'], /^tsgi: command line \(argument 3\): option 'emperor-throttle': is a uWSGI option that tsgi does not implement yet\n$/],
  ];
  for (const [args, expected] of cases) {
    const r = run(...args);
    assert.equal(r.status, 1, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, expected);
    assert.equal(r.stdout, '');
  }
  writeFileSync(join(dir, 'emperor.ini'), `[uwsgi]\nemperor = ${dir}\nmodule = wsgi\n`);
  const r = run('--ini', join(dir, 'emperor.ini'));
  assert.equal(r.status, 1);
  assert.match(r.stderr, /^tsgi: .*emperor\.ini:3: option 'module': belongs in a vassal file/);
});

test('a vassal folder that cannot be read for a while (EACCES) stops nothing: its vassals are left as they are until it can be read again', async () => {
  const dir = tempDir('tsgi-emperor-unreadable-');
  const vassals = join(dir, 'vassals');
  const run = join(dir, 'run');
  mkdirSync(vassals);
  mkdirSync(run);
  writeFileSync(join(vassals, 'app.ini'), good(join(run, 'app.sock')));
  // Root reads any folder: as root, the emperor runs as nobody here, owning its folders.
  const asRoot = process.getuid?.() === 0;
  if (asRoot) {
    const nobody = resolveUser('nobody')!;
    const nogroup = resolveGroup('nogroup')!;
    for (const p of [vassals, run, join(vassals, 'app.ini')]) chownSync(p, nobody.uid, nogroup);
  }
  const stats = join(run, 'stats.sock');
  const args = ['--emperor', vassals, '--emperor-stats', stats, '--emperor-freq', '1'];
  const emperor: RunningProcess = asRoot
    ? startProcess('setpriv', ['--reuid=nobody', '--regid=nogroup', '--clear-groups', process.execPath, tsgiBin, ...args], { env })
    : startProcess(tsgiBin, args, { env });
  try {
    await emperor.waitFor(/emperor: ready: 1 vassal\(s\) serving/, 60_000);
    const before = vassal(await readStats(stats), 'app.ini')!;
    chmodSync(vassals, 0o000);
    await emperor.waitFor(new RegExp(`emperor: cannot read ${vassals.replace(/[.]/g, '\\.')} \\(EACCES\\): its vassals are left as they are until it can be read again`));
    const s1 = await readStats(stats);
    await until('two more scans', async () => (await readStats(stats)).scans >= s1.scans + 2, 30_000, 100);
    const during = vassal(await readStats(stats), 'app.ini')!;
    assert.deepEqual([during.status, during.pid], ['ready', before.pid], 'the vassal still runs');
    assert.equal((await ask(join(run, 'app.sock'))).status, 200);
    chmodSync(vassals, 0o755);
    await emperor.waitFor(/emperor: .*vassals can be read again/);
    assert.equal(vassal(await readStats(stats), 'app.ini')!.pid, before.pid);
    assert.doesNotMatch(emperor.output(), /file removed/);
  } finally {
    chmodSync(vassals, 0o755);
    assert.equal((await stopProcess(emperor)).code, 0, emperor.output());
  }
});
