/**
 * mount, manage-script-name and no-default-app (docs/mount.md): several Python apps under URL prefixes in one
 * instance. Each case runs under tsgi and, in the same test, under the real uWSGI (Debian's 2.0.21 with its
 * python3 plugin) with the same command line, so tsgi's answers are compared with uWSGI's, not only with
 * values written here. Both fronts are checked: HTTP (tsgi's router, uWSGI's http-socket) and raw uwsgi packets
 * with and without the SCRIPT_NAME nginx sends with `uwsgi_param SCRIPT_NAME`.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot, tsgiBin } from '../helpers/paths.js';
import {
  activatedEnv, freePort, httpRequest, sharedVenv, startProcess, startTsgi, stopProcess, tempDir, writeFiles, type RunningProcess,
} from '../helpers/procs.js';
import { getVars, uwsgiRequest } from '../helpers/uwsgi-client.js';

const FIXTURES = join(repoRoot, 'test/fixtures/apps');
const haveUwsgi = spawnSync('uwsgi', ['--plugin', 'python3', '--version']).status === 0;

/** What an app answered: which app, SCRIPT_NAME and PATH_INFO (or the status when it was no app's 200). */
type Answer = string;

/** A temp dir with the fixture apps, so `mount_b:application` imports from the working directory. */
function appDir(extra: Record<string, string> = {}): string {
  const dir = tempDir();
  const files: Record<string, string> = { ...extra };
  for (const n of ['mount_a.py', 'mount_b.py', 'mount_main.py', 'fork_hooks.py']) files[n] = readFileSync(join(FIXTURES, n), 'utf8');
  writeFiles(dir, files);
  return dir;
}

function cleanEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, PYTHONHOME: '' };
  for (const k of Object.keys(env)) if (k.startsWith('UWSGI_') || k.startsWith('TSGI_')) delete env[k];
  return env;
}

/**
 * `app SCRIPT_NAME PATH_INFO`. uWSGI leaves SCRIPT_NAME out of the environ when nothing sets it, tsgi always gives
 * it (''): PEP 3333 allows both, and apps read it with a default, so both are written '' here.
 */
function answer(status: number, body: Buffer): Answer {
  if (status !== 200) return `status ${status}`;
  const j = JSON.parse(body.toString()) as { app: string; script_name: string | null; path_info: string };
  return `${j.app} '${j.script_name ?? ''}' '${j.path_info}'`;
}

interface Server {
  proc: RunningProcess;
  http(path: string): Promise<Answer>;
  uwsgi(path: string, scriptName?: string): Promise<Answer>;
}

/** Starts tsgi or uWSGI with `args` plus an HTTP socket and a uwsgi Unix socket. */
async function start(server: 'tsgi' | 'uwsgi', dir: string, args: readonly string[]): Promise<Server> {
  const port = await freePort();
  const sock = join(dir, `${server}.sock`);
  const all = ['--plugin', 'python3', '--master', '--http-socket', `127.0.0.1:${port}`, '--socket', sock, ...args];
  let proc: RunningProcess;
  if (server === 'tsgi') proc = await startTsgi(all, { env: activatedEnv(sharedVenv()), cwd: dir });
  else {
    proc = startProcess('uwsgi', [...all, '--die-on-term'], { env: cleanEnv(), cwd: dir });
    await proc.waitFor(/spawned uWSGI worker 1/);
  }
  return {
    proc,
    async http(path) {
      const r = await httpRequest(`http://127.0.0.1:${port}${path}`);
      return answer(r.status, r.body);
    },
    async uwsgi(path, scriptName) {
      const r = await uwsgiRequest(sock, getVars(path, scriptName === undefined ? {} : { SCRIPT_NAME: scriptName }));
      return answer(r.status, r.body);
    },
  };
}

/** Runs every case on one server: { case name: answer }. */
async function runCases(s: Server, httpPaths: readonly string[], packets: ReadonlyArray<readonly [string, string?]>): Promise<Record<string, Answer>> {
  const out: Record<string, Answer> = {};
  for (const p of httpPaths) out[`HTTP GET ${p}`] = await s.http(p);
  for (const [path, sn] of packets) out[`uwsgi PATH_INFO=${path}${sn === undefined ? '' : ` SCRIPT_NAME=${sn}`}`] = await s.uwsgi(path, sn);
  return out;
}

/** Starts `server` with `args`, runs every case on it and stops it: the answers, and what it logged. */
async function casesUnder(server: 'tsgi' | 'uwsgi', dir: string, args: readonly string[], httpPaths: readonly string[], packets: ReadonlyArray<readonly [string, string?]>): Promise<{ got: Record<string, Answer>; output: string }> {
  const s = await start(server, dir, args);
  let got: Record<string, Answer>;
  try {
    got = await runCases(s, httpPaths, packets);
  } finally {
    await stopProcess(s.proc);
  }
  return { got, output: s.proc.output() };
}

test('two mounts with manage-script-name: the longest mountpoint at a / boundary picks the app and moves to SCRIPT_NAME, over HTTP and uwsgi, as in uWSGI', async () => {
  const dir = appDir();
  const args = ['--mount', '/a=mount_a.py', '--mount', '/b=mount_b:application', '--manage-script-name'];
  const httpPaths = ['/', '/a', '/a/', '/a/x/y', '/ab', '/b', '/b/c', '/c'];
  const packets = [['/a/x'], ['/b/'], ['/x', '/a'], ['/a/x', '/a'], ['/x', '/b'], ['/x', '/zz'], ['/a/x', '/b'], ['/x', ''], ['/c']] as const;
  const expected = {
    'HTTP GET /': "a '' '/'", // PATH_INFO '/' is too short to hold a mountpoint: the default app (app 0, the first mount)
    'HTTP GET /a': "a '/a' ''",
    'HTTP GET /a/': "a '/a' '/'",
    'HTTP GET /a/x/y': "a '/a' '/x/y'",
    'HTTP GET /ab': "a '' '/ab'", // /a does not end at a / boundary: no match, the default app
    'HTTP GET /b': "b '/b' ''",
    'HTTP GET /b/c': "b '/b' '/c'",
    'HTTP GET /c': "a '' '/c'", // no match: the default app, PATH_INFO untouched
    'uwsgi PATH_INFO=/a/x': "a '/a' '/x'",
    'uwsgi PATH_INFO=/b/': "b '/b' '/'",
    'uwsgi PATH_INFO=/x SCRIPT_NAME=/a': "a '/a' '/x'", // nginx's SCRIPT_NAME names the app
    'uwsgi PATH_INFO=/a/x SCRIPT_NAME=/a': "a '/a' '/x'", // nginx passed the whole path: the prefix is stripped
    'uwsgi PATH_INFO=/x SCRIPT_NAME=/b': "b '/b' '/x'",
    'uwsgi PATH_INFO=/x SCRIPT_NAME=/zz': "a '/zz' '/x'", // no such mountpoint: the default app, SCRIPT_NAME kept
    'uwsgi PATH_INFO=/a/x SCRIPT_NAME=/b': "a '/a' '/x'", // PATH_INFO's mountpoint wins over the SCRIPT_NAME sent
    'uwsgi PATH_INFO=/x SCRIPT_NAME=': "a '' '/x'",
    'uwsgi PATH_INFO=/c': "a '' '/c'",
  };
  const tsgi = await casesUnder('tsgi', dir, args, httpPaths, packets);
  assert.deepEqual(tsgi.got, expected);
  // Each app loaded once, with uWSGI's line; the request log names the app that answered.
  assert.match(tsgi.output, /WSGI app 0 \(mountpoint='\/a'\) ready in \d+ seconds: mount_a\.py \(default app\)/);
  assert.match(tsgi.output, /WSGI app 1 \(mountpoint='\/b'\) ready in \d+ seconds: mount_b:application\n/);
  assert.match(tsgi.output, /\[pid: \d+\|app: 1\|req: \d+\/\d+\] .* GET \/b\/c /);
  if (!haveUwsgi) return;
  const uwsgi = await casesUnder('uwsgi', dir, args, httpPaths, packets);
  assert.deepEqual(uwsgi.got, tsgi.got, 'uWSGI 2.0 answers the same');
  assert.match(uwsgi.output, /WSGI app 1 \(mountpoint='\/b'\) ready in \d+ seconds/);
  assert.match(uwsgi.output, /\[pid: \d+\|app: 1\|req: \d+\/\d+\] .* GET \/b\/c /);
});

test('a main app and mounts without manage-script-name: SCRIPT_NAME alone picks the app, PATH_INFO is left as sent, the main app is the default, as in uWSGI', async () => {
  const dir = appDir();
  const args = ['--wsgi-file', 'mount_main.py', '--mount', '/a=mount_a.py', '--mount', '/b=mount_b:application'];
  const httpPaths = ['/', '/a/x'];
  const packets = [['/a/x'], ['/x', '/a'], ['/a/x', '/a'], ['/x', '/b'], ['/x', '/a/'], ['/x', '/zz']] as const;
  const expected = {
    'HTTP GET /': "main '' '/'",
    'HTTP GET /a/x': "main '' '/a/x'", // no SCRIPT_NAME over HTTP: the main app
    'uwsgi PATH_INFO=/a/x': "main '' '/a/x'",
    'uwsgi PATH_INFO=/x SCRIPT_NAME=/a': "a '/a' '/x'",
    'uwsgi PATH_INFO=/a/x SCRIPT_NAME=/a': "a '/a' '/a/x'", // not stripped without manage-script-name
    'uwsgi PATH_INFO=/x SCRIPT_NAME=/b': "b '/b' '/x'",
    'uwsgi PATH_INFO=/x SCRIPT_NAME=/a/': "main '/a/' '/x'", // SCRIPT_NAME must equal the mountpoint
    'uwsgi PATH_INFO=/x SCRIPT_NAME=/zz': "main '/zz' '/x'",
  };
  const tsgi = await casesUnder('tsgi', dir, args, httpPaths, packets);
  assert.deepEqual(tsgi.got, expected);
  assert.match(tsgi.output, /WSGI app 0 \(mountpoint=''\) ready in \d+ seconds: mount_main\.py \(default app\)/);
  if (!haveUwsgi) return;
  const uwsgi = await casesUnder('uwsgi', dir, args, httpPaths, packets);
  assert.deepEqual(uwsgi.got, tsgi.got, 'uWSGI 2.0 answers the same');
  assert.match(uwsgi.output, /WSGI app 0 \(mountpoint=''\) ready in \d+ seconds .*\(default app\)/);
});

test('manage-script-name with one app and no mount changes nothing (uWSGI strips only mountpoints); no-default-app answers 500 where no mountpoint matches', async () => {
  const dir = appDir();
  const single = ['--wsgi-file', 'mount_main.py', '--manage-script-name'];
  const noDefault = ['--mount', '/a=mount_a.py', '--manage-script-name', '--no-default-app'];
  const cases = async (s: Server): Promise<Record<string, Answer>> => ({
    ...await runCases(s, ['/a/x'], [['/a/x', '/a'], ['/x', '/a']]),
  });
  const noDefaultCases = async (s: Server): Promise<Record<string, Answer>> => runCases(s, ['/a/x', '/c'], [['/x', '/zz'], ['/x', '/a']]);
  const results: Record<string, Record<string, Answer>> = {};
  for (const server of haveUwsgi ? ['tsgi', 'uwsgi'] as const : ['tsgi'] as const) {
    const s1 = await start(server, dir, single);
    try {
      results[`${server} single`] = await cases(s1);
    } finally {
      await stopProcess(s1.proc);
    }
    const s2 = await start(server, dir, noDefault);
    try {
      results[`${server} no-default`] = await noDefaultCases(s2);
    } finally {
      await stopProcess(s2.proc);
    }
  }
  assert.deepEqual(results['tsgi single'], {
    'HTTP GET /a/x': "main '' '/a/x'",
    'uwsgi PATH_INFO=/a/x SCRIPT_NAME=/a': "main '/a' '/a/x'",
    'uwsgi PATH_INFO=/x SCRIPT_NAME=/a': "main '/a' '/x'",
  });
  assert.deepEqual(results['tsgi no-default'], {
    'HTTP GET /a/x': "a '/a' '/x'",
    'HTTP GET /c': 'status 500',
    'uwsgi PATH_INFO=/x SCRIPT_NAME=/zz': 'status 500',
    'uwsgi PATH_INFO=/x SCRIPT_NAME=/a': "a '/a' '/x'",
  });
  if (!haveUwsgi) return;
  assert.deepEqual(results['uwsgi single'], results['tsgi single']);
  assert.deepEqual(results['uwsgi no-default'], results['tsgi no-default']);
});

test("tsgi only: a mountpoint written with a trailing slash matches as without it (uWSGI 2.0.21 gives PATH_INFO 'x' there)", async () => {
  const dir = appDir();
  const s = await start('tsgi', dir, ['--wsgi-file', 'mount_main.py', '--mount', '/a/=mount_a.py', '--mount', '/=mount_b:application', '--manage-script-name']);
  try {
    assert.deepEqual(await runCases(s, ['/a', '/a/x', '/b/x'], [['/x', '/a/'], ['/x', '/']]), {
      'HTTP GET /a': "a '/a' ''",
      'HTTP GET /a/x': "a '/a' '/x'",
      'HTTP GET /b/x': "main '' '/b/x'", // a mountpoint of / never matches PATH_INFO (as in uWSGI): the default app
      'uwsgi PATH_INFO=/x SCRIPT_NAME=/a/': "a '/a/' '/x'",
      'uwsgi PATH_INFO=/x SCRIPT_NAME=/': "b '/' '/x'",
    });
  } finally {
    await stopProcess(s.proc);
  }
});

test('a mount whose file does not exist: tsgi stops at start naming the mount (uWSGI exits 22); with need-app = false its mountpoint answers 500', async () => {
  const ini = (needApp: string): string => `[uwsgi]\nsocket = %d/app.sock\nmount = /a=mount_a.py\nmount = /b=missing.py\nmanage-script-name = true\n${needApp}`;
  const dir = appDir({ 'strict.ini': ini(''), 'lenient.ini': ini('need-app = false\n') });
  const strict = spawnSync(tsgiBin, ['--ini', 'strict.ini'], { cwd: dir, env: activatedEnv(sharedVenv()), encoding: 'utf8', timeout: 60_000 });
  assert.equal(strict.status, 1, strict.stderr);
  assert.match(strict.stderr, /cannot load the app missing\.py \(app 1, mountpoint='\/b'\):[\s\S]*ImportError: mount \/b: file .*\/missing\.py does not exist/);
  assert.match(strict.stderr, /the app could not be loaded .* need-app/);

  const lenient = await startTsgi(['--ini', 'lenient.ini'], { env: activatedEnv(sharedVenv()), cwd: dir });
  try {
    assert.match(lenient.output(), /cannot load the app missing\.py \(app 1, mountpoint='\/b'\)/);
    const a = await uwsgiRequest(join(dir, 'app.sock'), getVars('/a/x'));
    assert.equal(answer(a.status, a.body), "a '/a' '/x'");
    const b = await uwsgiRequest(join(dir, 'app.sock'), getVars('/b/x'));
    assert.equal(b.status, 500, 'the broken mount answers 500, not another app');
  } finally {
    await stopProcess(lenient);
  }
  if (!haveUwsgi) return;
  for (const file of ['strict.ini', 'lenient.ini']) {
    const u = spawnSync('uwsgi', ['--plugin', 'python3', '--ini', file], { cwd: dir, env: cleanEnv(), encoding: 'utf8', timeout: 60_000 });
    assert.equal(u.status, 22, `uWSGI exits 22 (${file}): ${u.stderr.slice(-500)}`);
    assert.match(u.stderr + u.stdout, /failed to open python file missing\.py/);
  }
});

test('a Node app with mount or manage-script-name is refused in one line naming the file, line and option', () => {
  const dir = tempDir();
  writeFiles(dir, {
    'app.ts': 'export function application(e: unknown, sr: (s: string, h: string[][]) => void) { sr("200 OK", []); return ["x"]; }\n',
    'mount.ini': '[uwsgi]\nsocket = %d/app.sock\nwsgi-file = app.ts\nmount = /a=other.py\n',
    'msn.ini': '[uwsgi]\nsocket = %d/app.sock\nwsgi-file = app.ts\n\nmanage-script-name = true\n',
  });
  for (const [file, line, option] of [['mount.ini', 4, 'mount'], ['msn.ini', 5, 'manage-script-name']] as const) {
    const r = spawnSync(tsgiBin, ['--ini', file], { cwd: dir, env: activatedEnv(sharedVenv()), encoding: 'utf8', timeout: 60_000 });
    assert.equal(r.status, 1);
    const lines = r.stderr.trim().split('\n');
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0]!, new RegExp(`^tsgi: .*${file.replace('.', '\\.')}:${line}: option '${option}': is for Python apps; .*app\\.ts is a Node app`));
  }
  // A Node file as a mount's app is refused while the configuration is read.
  const r = spawnSync(tsgiBin, ['--socket', join(dir, 'x.sock'), '--mount', '/n=app.ts'], { cwd: dir, env: activatedEnv(sharedVenv()), encoding: 'utf8' });
  assert.equal(r.status, 1);
  assert.match(r.stderr, /option 'mount': '\/n=app\.ts': app\.ts is a Node app: mount loads Python apps only/);
});

test("py-call-uwsgi-fork-hooks: the app's os.register_at_fork hooks run in each forked worker (always in tsgi; in uWSGI with the option)", async () => {
  const dir = appDir();
  // worker-reload-mercy: a uWSGI 2.0.21 worker whose app registered at-fork hooks often hangs as it stops under
  // py-call-uwsgi-fork-hooks, and its master waits that long before killing it (60 s by default).
  const args = ['--wsgi-file', 'fork_hooks.py', '--processes', '2', '--py-call-uwsgi-fork-hooks', '--enable-threads', '--worker-reload-mercy', '2'];
  const childHooks = (out: string): number => out.split('\n').filter((l) => l.startsWith('FORKHOOK after_in_child')).length;
  const tsgi = await start('tsgi', dir, args);
  await stopProcess(tsgi.proc);
  assert.equal(childHooks(tsgi.proc.output()), 2, tsgi.proc.output());
  // os.fork() also runs the loader's side: before and after_in_parent, once per worker.
  assert.equal(tsgi.proc.output().split('\n').filter((l) => l.startsWith('FORKHOOK before')).length, 2);
  if (!haveUwsgi) return;
  const uwsgi = await start('uwsgi', dir, args);
  await uwsgi.proc.waitFor(/spawned uWSGI worker 2/);
  await uwsgi.proc.waitFor(/FORKHOOK after_in_child[\s\S]*FORKHOOK after_in_child/);
  // Serving before the stop: a uWSGI master told to stop while its workers start up waits out its mercy (60 s).
  assert.equal((await uwsgiRequest(join(dir, 'uwsgi.sock'), getVars('/'))).status, 200);
  await stopProcess(uwsgi.proc);
  assert.equal(childHooks(uwsgi.proc.output()), 2, uwsgi.proc.output());
});
