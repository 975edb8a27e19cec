/** Every configuration mistake is one line naming where, the option and what is wrong, with exit status 1. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { tsgiBin } from '../helpers/paths.js';
import { tempDir, writeFiles } from '../helpers/procs.js';

function tsgi(args: string[], env: NodeJS.ProcessEnv = {}): { status: number | null; stderr: string; stdout: string } {
  const clean: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: process.env.HOME, ...env };
  const r = spawnSync(tsgiBin, args, { encoding: 'utf8', env: clean });
  return { status: r.status, stderr: r.stderr, stdout: r.stdout };
}

const dir = tempDir();
writeFiles(dir, {
  'typo.ini': '[uwsgi]\nmodule = wsgi\nprocesess = 5\n',
  'badvalue.ini': '[uwsgi]\nprocesses = five\n',
  'badbool.ini': '[uwsgi]\nmaster = maybe\n',
  'later.ini': '[uwsgi]\nsocket = :3031\nmule-msg-size = 2\n',
  'plain.ini': '[uwsgi]\nmodule = wsgi\n',
  'badumask.ini': '[uwsgi]\nmodule = wsgi\numask = 0o22\n',
  'badsocket.ini': '[uwsgi]\nsocket = 127.0.0.1:99999\nmodule = wsgi\n',
});

test('unknown option on the command line: argument, option, nearest name', () => {
  const r = tsgi(['--sockett', ':3031']);
  assert.equal(r.status, 1);
  assert.equal(r.stderr, "tsgi: command line (argument 1): option 'sockett': unknown option (did you mean 'socket'?)\n");
});

test('unknown option in an ini file: file:line, option, nearest name', () => {
  const r = tsgi(['--ini', join(dir, 'typo.ini')]);
  assert.equal(r.status, 1);
  assert.equal(r.stderr, `tsgi: ${join(dir, 'typo.ini')}:3: option 'procesess': unknown option (did you mean 'processes'?)\n`);
});

test('bad value: what was given and what is expected', () => {
  const r = tsgi(['--ini', join(dir, 'badvalue.ini')]);
  assert.equal(r.status, 1);
  assert.equal(r.stderr, `tsgi: ${join(dir, 'badvalue.ini')}:2: option 'processes': bad value 'five': expected a whole number\n`);
  const b = tsgi(['--ini', join(dir, 'badbool.ini')]);
  assert.equal(b.stderr, `tsgi: ${join(dir, 'badbool.ini')}:2: option 'master': bad value 'maybe': expected true or false\n`);
  const s = tsgi(['--ini', join(dir, 'badsocket.ini')]);
  assert.equal(s.stderr, `tsgi: ${join(dir, 'badsocket.ini')}:2: option 'socket': '127.0.0.1:99999': port 99999 is out of range (0-65535)\n`);
});

test('bad value from the environment names the variable', () => {
  const r = tsgi(['-s', ':1', '-w', 'w'], { UWSGI_PROCESSES: 'lots' });
  assert.equal(r.status, 1);
  assert.equal(r.stderr, "tsgi: environment variable UWSGI_PROCESSES: option 'processes': bad value 'lots': expected a whole number\n");
});

test('missing ini file and missing section', () => {
  const missing = join(dir, 'nope.ini');
  const r = tsgi(['--ini', missing]);
  assert.equal(r.status, 1);
  assert.equal(r.stderr, `tsgi: command line (argument 1): option 'ini': cannot read ini file ${missing}: no such file or directory\n`);
  const s = tsgi(['--ini', `${join(dir, 'plain.ini')}:production`]);
  assert.equal(s.status, 1);
  assert.equal(s.stderr, `tsgi: command line (argument 1): option 'ini': no [production] section in ${join(dir, 'plain.ini')}\n`);
});

test('a uWSGI option tsgi does not implement yet is refused, never ignored', () => {
  const r = tsgi(['--ini', join(dir, 'later.ini')]);
  assert.equal(r.status, 1);
  assert.equal(r.stderr, `tsgi: ${join(dir, 'later.ini')}:3: option 'mule-msg-size': is a uWSGI option that tsgi does not implement yet\n`);
});

test('umask must be octal digits', () => {
  const r = tsgi(['--ini', join(dir, 'badumask.ini')]);
  assert.equal(r.status, 1);
  assert.equal(r.stderr, `tsgi: ${join(dir, 'badumask.ini')}:3: option 'umask': bad value '0o22': expected an octal mask such as 022\n`);
});

test('an option that needs a value and has none', () => {
  const r = tsgi(['--module']);
  assert.equal(r.status, 1);
  assert.equal(r.stderr, "tsgi: command line (argument 1): option 'module': needs a value\n");
});
