/** The emperor's pure parts: its configuration, what it finds in folders, and how it starts each vassal. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { readCommandLine } from '../../src/cli/tsgi.js';
import { ConfigError } from '../../src/config/errors.js';
import type { EmperorSettings } from '../../src/config/resolve.js';
import { checkEmperorEntries, configFlag, isVassalFile, parseMonitor } from '../../src/emperor/config.js';
import { TSGI_BIN, vassalCommand, vassalEnv } from '../../src/emperor/spawn.js';
import { contentChanged, globFiles, scanMonitors } from '../../src/emperor/watch.js';
import { tempDir, writeFiles } from '../helpers/procs.js';

const argv0 = { kind: 'argv' as const, index: 0 };

function settingsOf(argv: string[], env: NodeJS.ProcessEnv = {}, cwd = process.cwd()) {
  let err = '';
  const o = readCommandLine(argv, { env, cwd, stdout: () => {}, stderr: (t) => (err += t) });
  assert.ok('start' in o, err);
  return o;
}

test('--emperor and its options are read through the option table, and --help lists them', () => {
  const dir = tempDir();
  const o = settingsOf(['--emperor', dir, '--emperor', `${dir}/*.ini`, '--emperor-tyrant', '--vassals-inherit', 'a.ini', '--vassal-set', 'processes=2', '--emperor-stats', ':9191', '--emperor-freq', '5']);
  const e = o.start.emperor!;
  assert.deepEqual(e.monitors.map((m) => m.value), [dir, `${dir}/*.ini`]);
  assert.equal(e.tyrant, true);
  assert.deepEqual(e.inherit, ['a.ini']);
  assert.deepEqual(e.set.map((s) => s.value), ['processes=2']);
  assert.equal(e.stats?.value, ':9191');
  assert.equal(e.freq, 5);
  assert.equal(settingsOf(['--socket', ':1', '--module', 'w']).start.emperor, undefined);
  assert.equal(settingsOf(['--emperor-stats-server', ':1', '--emperor', dir]).start.emperor!.stats?.value, ':1');
  let help = '';
  readCommandLine(['--help'], { env: {}, cwd: dir, stdout: (t) => (help += t), stderr: () => {} });
  assert.match(help, /\nEmperor:\n {2}--emperor DIR\|GLOB +run as an emperor/);
  assert.match(help, /--vassal-set KEY=VALUE/);
});

test("magic variables in vassal-set are left for each vassal's file; everything else in the emperor's file expands as usual", () => {
  const dir = tempDir();
  writeFiles(dir, { 'emperor.ini': '[uwsgi]\nemperor = %dvassals\nvassal-set = socket=/run/%n.sock\nvassal-set = chdir=%d\nvassals-inherit = %dcommon.ini\n' });
  mkdirSync(join(dir, 'vassals'));
  const e = settingsOf(['--ini', join(dir, 'emperor.ini')]).start.emperor!;
  assert.deepEqual(e.monitors.map((m) => m.value), [`${dir}/vassals`]);
  assert.deepEqual(e.set.map((s) => s.value), ['socket=/run/%n.sock', 'chdir=%d']);
  assert.deepEqual(e.inherit, [`${dir}/common.ini`]);
});

test('the emperor refuses app options on its command line and in its files, not in its environment (vassals inherit that)', () => {
  const dir = tempDir();
  const o = settingsOf(['--emperor', dir, '--master', '--logto', join(dir, 'log'), '--reload-mercy', '5'], { UWSGI_PROCESSES: '4' });
  assert.doesNotThrow(() => checkEmperorEntries(o.entries));
  const bad = settingsOf(['--emperor', dir, '-p', '4']);
  assert.throws(() => checkEmperorEntries(bad.entries), (err: ConfigError) =>
    err.code === 'CONFLICT' && err.message === "command line (argument 3): option 'processes': belongs in a vassal file: the emperor runs no app itself (to give it to every vassal, use vassal-set = processes=...)");
});

test('emperor values: a folder or a glob (relative to the working directory), a single file, dir:// and glob://; a missing folder or another scheme is one clear error', () => {
  const dir = tempDir();
  mkdirSync(join(dir, 'vassals'));
  writeFiles(dir, { 'one.ini': '[uwsgi]\n' });
  assert.deepEqual(parseMonitor('vassals', argv0, dir), { kind: 'dir', text: 'vassals', dir: join(dir, 'vassals') });
  assert.deepEqual(parseMonitor('vassals/*.ini', argv0, dir), { kind: 'glob', text: 'vassals/*.ini', pattern: join(dir, 'vassals/*.ini') });
  assert.deepEqual(parseMonitor(`dir://${dir}/vassals`, argv0, '/'), { kind: 'dir', text: `dir://${dir}/vassals`, dir: join(dir, 'vassals') });
  assert.deepEqual(parseMonitor(`glob://${dir}/v*`, argv0, '/'), { kind: 'glob', text: `glob://${dir}/v*`, pattern: `${dir}/v*` });
  assert.deepEqual(parseMonitor(join(dir, 'one.ini'), argv0, '/'), { kind: 'glob', text: join(dir, 'one.ini'), pattern: join(dir, 'one.ini') });
  assert.throws(() => parseMonitor('missing', argv0, dir), /option 'emperor': .*\/missing: no such directory/);
  assert.throws(() => parseMonitor('mongodb://db/vassals', argv0, dir), /no mongodb:\/\/ monitor/);
  assert.throws(() => parseMonitor('', argv0, dir), /a folder or a glob of vassal files is required/);
});

test("vassal files are uWSGI's config extensions; each is read with uWSGI's option for its format", () => {
  for (const n of ['a.ini', 'a.xml', 'a.yml', 'a.yaml', 'a.json', 'a.js']) assert.equal(isVassalFile(n), true, n);
  for (const n of ['.ini', '.hidden.ini', 'a.ini~', 'a.ini.swp', 'a.skel', 'README', 'a.sock']) assert.equal(isVassalFile(n), false, n);
  assert.deepEqual(['a.ini', 'a.xml', 'a.yml', 'a.yaml', 'a.json', 'a.js'].map(configFlag), ['--ini', '--xml', '--yaml', '--yaml', '--json', '--json']);
});

test('globs: *, ? and [...] in any path component; hidden files only when the pattern asks', () => {
  const dir = tempDir();
  writeFiles(dir, { 'a1.ini': '', 'a2.ini': '', 'b1.ini': '', '.a3.ini': '', 'x/a1.ini': '', 'y/a2.ini': '', 'y/z/a1.ini': '' });
  assert.deepEqual(globFiles(`${dir}/a*.ini`), [`${dir}/a1.ini`, `${dir}/a2.ini`]);
  assert.deepEqual(globFiles(`${dir}/?1.ini`), [`${dir}/a1.ini`, `${dir}/b1.ini`]);
  assert.deepEqual(globFiles(`${dir}/[ab]1.ini`), [`${dir}/a1.ini`, `${dir}/b1.ini`]);
  assert.deepEqual(globFiles(`${dir}/[!a]1.ini`), [`${dir}/b1.ini`]);
  assert.deepEqual(globFiles(`${dir}/*/a*.ini`), [`${dir}/x/a1.ini`, `${dir}/y/a2.ini`]);
  assert.deepEqual(globFiles(`${dir}/.a*.ini`), [`${dir}/.a3.ini`]);
  assert.deepEqual(globFiles(`${dir}/nothing-*.ini`), []);
});

test('a scan finds regular vassal files (symlinks followed, each file once), with what tells a change', () => {
  const dir = tempDir();
  writeFiles(dir, { 'one.ini': '[uwsgi]\n', 'two.yaml': 'x', 'notes.txt': '', 'app.skel': '[uwsgi]\n', 'sub/three.ini': '' });
  mkdirSync(join(dir, 'dir.ini'));
  symlinkSync(join(dir, 'app.skel'), join(dir, 'linked.ini'));
  symlinkSync(join(dir, 'missing.skel'), join(dir, 'dangling.ini'));
  const monitors = [parseMonitor(dir, argv0, '/'), parseMonitor(`${dir}/*.ini`, argv0, '/')];
  const { found, failed, uncertain } = scanMonitors(monitors);
  assert.deepEqual([failed.size, uncertain.size], [0, 0]);
  assert.deepEqual([...found.keys()], [join(dir, 'linked.ini'), join(dir, 'one.ini'), join(dir, 'two.yaml')]);
  assert.equal(found.get(join(dir, 'one.ini'))!.monitor, monitors[0], 'the first monitor that sees a file owns it');
  const a = found.get(join(dir, 'one.ini'))!.stamp;
  assert.equal(contentChanged(a, { ...a }), false);
  assert.equal(contentChanged(a, { ...a, mtimeMs: a.mtimeMs + 1 }), true);
  assert.equal(contentChanged(a, { ...a, ino: a.ino + 1 }), true);
  assert.equal(contentChanged(a, { ...a, uid: a.uid + 1 }), false, 'an owner change is emperor-tyrant business only');
});

test("a vassal's environment: TSGI_VASSAL_*/UWSGI_VASSAL_* renamed with its file's magic variables; the emperor's own settings and NOTIFY_SOCKET dropped", () => {
  const dir = tempDir();
  writeFiles(dir, { 'app1.ini': '' });
  const env = vassalEnv(
    {
      PATH: '/bin',
      HOME: '/root',
      UWSGI_VASSAL_SOCKET: '/run/%n.sock',
      TSGI_VASSAL_CHDIR: '%d',
      TSGI_VASSAL_ENV: 'A=%s;%%n;$(HOME)',
      UWSGI_PROCESSES: '4',
      TSGI_EMPEROR: '/etc/tsgi/vassals',
      UWSGI_EMPEROR_TYRANT: '1',
      TSGI_VASSALS_INHERIT: 'x.ini',
      UWSGI_INI: 'emperor.ini',
      UWSGI_RELOADS: '3',
      NOTIFY_SOCKET: '/run/systemd/notify',
    },
    join(dir, 'app1.ini'),
    'app1.ini',
    '/',
  );
  assert.deepEqual(env, {
    PATH: '/bin',
    HOME: '/root',
    UWSGI_SOCKET: '/run/app1.sock',
    TSGI_CHDIR: `${dir}/`,
    TSGI_ENV: 'A=app1.ini;%n;/root',
    UWSGI_PROCESSES: '4',
    TSGI_VASSAL: 'app1.ini',
  });
});

test("a vassal's command: vassal-set before its file, vassals-inherit after it; its folder as working directory (a glob's: the emperor's); a tyrant's file owner", () => {
  const dir = tempDir();
  writeFiles(dir, { 'v/site.ini': '' });
  const es: EmperorSettings = {
    monitors: [],
    tyrant: false,
    inherit: ['common.ini', '/etc/tsgi/all.ini'],
    set: [{ value: 'socket=/run/%n.sock', origin: argv0 }, { value: 'env=DIR=%d', origin: argv0 }],
    stats: undefined,
    freq: 3,
  };
  const stamp = { mtimeMs: 1, ctimeMs: 1, size: 0, ino: 1, uid: 1000, gid: 1001 };
  const found = { path: join(dir, 'v/site.ini'), name: 'site.ini', monitor: parseMonitor(join(dir, 'v'), argv0, '/'), stamp };
  const cmd = vassalCommand(found, es, { PATH: '/bin' }, '/srv');
  assert.deepEqual(cmd.args, ['--set', 'socket=/run/site.sock', '--set', `env=DIR=${dir}/v/`, '--ini', join(dir, 'v/site.ini'), '--ini', '/srv/common.ini', '--ini', '/etc/tsgi/all.ini']);
  assert.equal(cmd.cwd, join(dir, 'v'));
  assert.deepEqual([cmd.uid, cmd.gid], [undefined, undefined]);
  assert.equal(cmd.env.TSGI_VASSAL, 'site.ini');
  const globbed = vassalCommand({ ...found, monitor: parseMonitor(`${dir}/v/*.ini`, argv0, '/') }, { ...es, tyrant: true }, {}, '/srv');
  assert.equal(globbed.cwd, '/srv');
  assert.deepEqual([globbed.uid, globbed.gid], [1000, 1001]);
  assert.throws(() => vassalCommand(found, { ...es, set: [{ value: 'env=@(missing-file)', origin: argv0 }] }, {}, dir), /vassal-set env=@\(missing-file\): .*cannot read/);
  assert.match(TSGI_BIN, /\/bin\/tsgi$/);
});

test("magic variables name a symlinked config file by its link, as uWSGI does (a vassal linked to a shared template is %n = its own name)", () => {
  const dir = tempDir();
  writeFiles(dir, { 'templates/app.skel': '[uwsgi]\nsocket = /run/%n.sock\nchdir = %d\nprint = %p %s %c\n' });
  mkdirSync(join(dir, 'vassals'));
  symlinkSync(join(dir, 'templates/app.skel'), join(dir, 'vassals/blog.ini'));
  let out = '';
  const o = readCommandLine(['--ini', join(dir, 'vassals/blog.ini')], { env: {}, cwd: dir, stdout: (t) => (out += t), stderr: () => {} });
  assert.ok('start' in o);
  assert.equal(o.start.sockets[0]!.text, '/run/blog.sock');
  assert.equal(o.start.chdir, `${dir}/vassals/`);
  assert.equal(out, `${dir}/vassals/blog.ini blog.ini vassals\n`);
});
