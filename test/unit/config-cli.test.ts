/** The command line, ini files and environment variables, all read through the one option table. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { readCommandLine, type CliOutcome } from '../../src/cli/tsgi.js';
import { OPTIONS } from '../../src/config/options.js';
import { tempDir, writeFiles } from '../helpers/procs.js';

function run(argv: string[], env: NodeJS.ProcessEnv = {}, cwd = process.cwd()): { outcome: CliOutcome; stdout: string; stderr: string } {
  let stdout = '';
  let stderr = '';
  const outcome = readCommandLine(argv, { env, cwd, stdout: (s) => (stdout += s), stderr: (s) => (stderr += s) });
  return { outcome, stdout, stderr };
}

function settingsOf(argv: string[], env: NodeJS.ProcessEnv = {}, cwd?: string) {
  const r = run(argv, env, cwd);
  assert.ok('start' in r.outcome, `expected a server to start, got exit: ${r.stderr}`);
  return r.outcome.start;
}

test('long options take --opt value and --opt=value; booleans stand alone', () => {
  const s = settingsOf(['--socket', '/tmp/a.sock', '--socket=127.0.0.1:3031', '--master', '--processes=5', '--module', 'wsgi:app', '--vacuum']);
  assert.deepEqual(s.sockets.map((x) => x.address), [
    { kind: 'unix', path: '/tmp/a.sock' },
    { kind: 'tcp', host: '127.0.0.1', port: 3031 },
  ]);
  assert.equal(s.processes, 5);
  assert.equal(s.python.module, 'wsgi');
  assert.equal(s.python.callable, 'app');
  assert.equal(s.vacuum, true);
});

test("uWSGI's short flags -s -w -p -M -H work, attached or not", () => {
  const s = settingsOf(['-s', ':3031', '-w', 'wsgi', '-p4', '-M', '-H', '/srv/venv']);
  assert.deepEqual(s.sockets[0]!.address, { kind: 'tcp', host: '0.0.0.0', port: 3031 });
  assert.equal(s.python.module, 'wsgi');
  assert.equal(s.python.callable, 'application');
  assert.equal(s.processes, 4);
  assert.equal(s.python.home, '/srv/venv');
});

test('socket address forms: /path, host:port, :port, 0.0.0.0:port, [::]:port', () => {
  const s = settingsOf(['-s', '/run/x.sock', '-s', 'localhost:1', '-s', ':2', '-s', '0.0.0.0:3', '-s', '[::]:4', '-w', 'w']);
  assert.deepEqual(s.sockets.map((x) => x.address), [
    { kind: 'unix', path: '/run/x.sock' },
    { kind: 'tcp', host: 'localhost', port: 1 },
    { kind: 'tcp', host: '0.0.0.0', port: 2 },
    { kind: 'tcp', host: '0.0.0.0', port: 3 },
    { kind: 'tcp', host: '::', port: 4 },
  ]);
});

test('chmod-socket without a value means 666; listen defaults to 100 and buffer-size to 4096', () => {
  assert.equal(settingsOf(['-s', ':1', '--chmod-socket', '-w', 'w']).chmodSocket, 0o666);
  assert.equal(settingsOf(['-s', ':1', '--chmod-socket', '660', '-w', 'w']).chmodSocket, 0o660);
  const d = settingsOf(['-s', ':1', '-w', 'w']);
  assert.equal(d.listen, 100);
  assert.equal(d.bufferSize, 4096);
  assert.equal(d.chmodSocket, undefined);
});

test('ini: [uwsgi] by default, file:section, repeated keys accumulate, comments, later values override', () => {
  const dir = tempDir();
  writeFiles(dir, {
    'app.ini': `; a comment
# another
[uwsgi]
socket = /tmp/one.sock
socket = /tmp/two.sock
processes = 2
module = wsgi
[prod]
socket = :9000
module = wsgi
processes = 8
`,
  });
  const s = settingsOf(['--ini', join(dir, 'app.ini'), '--processes', '3']);
  assert.deepEqual(s.sockets.map((x) => x.text), ['/tmp/one.sock', '/tmp/two.sock']);
  assert.equal(s.processes, 3, 'the command line after --ini overrides the file');
  const p = settingsOf([`${join(dir, 'app.ini')}:prod`]);
  assert.equal(p.processes, 8, 'a bare config file argument with :section');
  assert.deepEqual(p.sockets.map((x) => x.text), [':9000']);
});

test('ini placeholders, magic variables and $(ENV) resolve as in uWSGI', () => {
  const dir = tempDir();
  writeFiles(dir, {
    'myapp.ini': `[uwsgi]
base = /srv/%n
chdir = %(base)
socket = %(base)/%n.sock
logto = $(LOGDIR)/%n.log
module = wsgi
pidfile = %d%n.pid
`,
  });
  const s = settingsOf(['--ini', join(dir, 'myapp.ini')], { LOGDIR: '/var/log/apps' });
  assert.equal(s.chdir, '/srv/myapp');
  assert.equal(s.sockets[0]!.text, '/srv/myapp/myapp.sock');
  assert.equal(s.logto, '/var/log/apps/myapp.log');
  assert.equal(s.pidfile, `${dir}/myapp.pid`);
});

test('TSGI_* and UWSGI_* environment variables set options; the command line wins over them', () => {
  const s = settingsOf(['--module', 'wsgi'], { UWSGI_SOCKET: '/tmp/env.sock', TSGI_PROCESSES: '6', TSGI_VACUUM: 'true' });
  assert.equal(s.sockets[0]!.text, '/tmp/env.sock');
  assert.equal(s.processes, 6);
  assert.equal(s.vacuum, true);
  assert.equal(settingsOf(['-w', 'w', '-p', '2'], { UWSGI_SOCKET: ':1', UWSGI_PROCESSES: '6' }).processes, 2);
});

test('--get prints the resolved first value of a key, like uWSGI', () => {
  const dir = tempDir();
  writeFiles(dir, { 'a.ini': '[uwsgi]\nsocket = /tmp/%n.sock\nsocket = :2\nname = %(socket)\n' });
  const r = run(['--ini', join(dir, 'a.ini'), '--get', 'socket', '--get', 'name', '--get', 'nothing']);
  assert.deepEqual(r.outcome, { exit: 0 });
  assert.equal(r.stdout, '/tmp/a.sock\n/tmp/a.sock\n');
});

test('--help lists every option of the table and --version prints the version', () => {
  const h = run(['--help']);
  assert.deepEqual(h.outcome, { exit: 0 });
  for (const o of OPTIONS) assert.ok(h.stdout.includes(`--${o.name}`), `--help mentions --${o.name}`);
  const v = run(['--version']);
  assert.match(v.stdout, /^\d+\.\d+\.\d+\n$/);
});

test('a placeholder key used as %(name) is not an unknown option, an unused one is', () => {
  const dir = tempDir();
  writeFiles(dir, { 'p.ini': '[uwsgi]\nproject = demo\nsocket = /tmp/%(project).sock\nmodule = wsgi\n', 'q.ini': '[uwsgi]\nprojekt = demo\nsocket = :1\nmodule = wsgi\n' });
  assert.equal(settingsOf(['--ini', join(dir, 'p.ini')]).sockets[0]!.text, '/tmp/demo.sock');
  const r = run(['--ini', join(dir, 'q.ini')]);
  assert.deepEqual(r.outcome, { exit: 1 });
  assert.match(r.stderr, /q\.ini:2: option 'projekt': unknown option/);
});

test('for loops and if-env blocks expand, print prints while reading', () => {
  const dir = tempDir();
  writeFiles(dir, { 'l.ini': `[uwsgi]
for = 3031 3032
socket = 127.0.0.1:%(_)
endfor =
if-env = APP_MODULE
module = %(_)
endif =
if-not-env = APP_MODULE
module = fallback
endif =
print = sockets ready for %(module)
` });
  const r = run(['--ini', join(dir, 'l.ini')], { APP_MODULE: 'shop.wsgi' });
  assert.ok('start' in r.outcome);
  assert.deepEqual(r.outcome.start.sockets.map((x) => x.text), ['127.0.0.1:3031', '127.0.0.1:3032']);
  assert.equal(r.outcome.start.python.module, 'shop.wsgi');
  assert.equal(r.stdout, 'sockets ready for shop.wsgi\n');
});

test('include and inherit read another ini file where they stand', () => {
  const dir = tempDir();
  writeFiles(dir, {
    'base.ini': '[uwsgi]\nprocesses = 4\nmodule = wsgi\n',
    'app.ini': `[uwsgi]\ninherit = ${join(dir, 'base.ini')}\nsocket = :1\ninclude = ${join(dir, 'more.ini')}\n`,
    'more.ini': '[uwsgi]\nvacuum = true\n',
  });
  const s = settingsOf(['--ini', join(dir, 'app.ini')]);
  assert.equal(s.processes, 4);
  assert.equal(s.python.module, 'wsgi');
  assert.equal(s.vacuum, true);
});

test('mount = MOUNTPOINT=APP: a .py/.wsgi file, module:callable or a module with callable; bad values are one line naming the option', () => {
  const ok = run(['--mount', '/a=a.py', '--mount', '/b/=pkg.mod:app', '--mount', '/c=c', '--mount', '/d=d.wsgi', '--callable', 'main', '--manage-script-name']);
  assert.ok('start' in ok.outcome, ok.stderr);
  if (!('start' in ok.outcome)) return;
  const p = ok.outcome.start.python;
  assert.deepEqual(p.mounts.map((m) => [m.mountpoint, m.wsgiFile, m.module, m.callable]), [
    ['/a', 'a.py', undefined, 'main'], ['/b/', undefined, 'pkg.mod', 'app'], ['/c', undefined, 'c', 'main'], ['/d', 'd.wsgi', undefined, 'main'],
  ]);
  assert.equal(p.manageScriptName, true);
  for (const [value, why] of [
    ['a.py', /expected MOUNTPOINT=APP/], ['blog=a.py', /must start with \//], ['/a=', /no app after =/], ['/a=x.ts', /x\.ts is a Node app/],
    ['/a=paste.ini', /PasteDeploy apps \(\.ini\) are not implemented/], ['/a=no such', /module\[:callable\]/],
  ] as const) {
    const r = run(['--mount', value]);
    assert.deepEqual(r.outcome, { exit: 1 }, value);
    assert.match(r.stderr, new RegExp(`^tsgi: command line .*: option 'mount': .*${why.source}`), value);
  }
  const twice = run(['--mount', '/a=a.py', '--mount', '/a/=b.py']);
  assert.match(twice.stderr, /option 'mount': '\/a\/=b\.py': the mountpoint \/a\/ is already given to a\.py/);
});
