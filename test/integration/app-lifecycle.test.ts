/** Loading apps the ways uWSGI does, and what happens when loading fails or the app breaks PEP 3333 rules. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { repoRoot } from '../helpers/paths.js';
import { activatedEnv, sharedVenv, startTsgi, stopProcess, tempDir, writeFiles } from '../helpers/procs.js';
import { getVars, uwsgiRequest } from '../helpers/uwsgi-client.js';

const FIXTURES = join(repoRoot, 'test/fixtures/apps');

test('wsgiref.validate.validator sees no violation for GET, POST and HEAD', async () => {
  const dir = tempDir();
  const sock = join(dir, 's.sock');
  const tsgi = await startTsgi(['-s', sock, '--wsgi-file', join(FIXTURES, 'validated.py')], { env: activatedEnv(sharedVenv()) });
  try {
    const get = await uwsgiRequest(sock, getVars('/hello'));
    assert.equal(get.status, 200);
    assert.equal(get.body.toString(), 'ok /hello');
    const post = await uwsgiRequest(sock, { ...getVars('/echo'), REQUEST_METHOD: 'POST', CONTENT_TYPE: 'application/octet-stream' }, Buffer.from('payload'));
    assert.equal(post.status, 200);
    assert.equal(post.body.toString(), 'payload');
    const head = await uwsgiRequest(sock, { ...getVars('/hello'), REQUEST_METHOD: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(head.body.length, 0);
    const stream = await uwsgiRequest(sock, getVars('/stream'));
    assert.equal(stream.status, 200);
  } finally {
    await stopProcess(tsgi);
  }
  assert.doesNotMatch(tsgi.output(), /AssertionError|WSGIWarning|Traceback/, 'the validator raised or warned');
});

test('an app that fails to import stops the start with its traceback and exit status 1', async () => {
  const dir = tempDir();
  writeFiles(dir, { 'broken.py': 'import no_such_module_anywhere\n' });
  const tsgi = await startTsgi(['-s', join(dir, 's.sock'), '-p', '3', '-w', 'broken'], { cwd: dir, env: activatedEnv(sharedVenv()), ready: false });
  const r = await tsgi.exited;
  assert.equal(r.code, 1);
  assert.match(tsgi.output(), /cannot load the app broken:application:\nTraceback[\s\S]*ModuleNotFoundError: No module named 'no_such_module_anywhere'/);
  assert.match(tsgi.output(), /the app could not be loaded \(traceback above\); stopping/);
});

test('a module without the callable is a clear error', async () => {
  const dir = tempDir();
  writeFiles(dir, { 'nocall.py': 'app = None\n' });
  const tsgi = await startTsgi(['-s', join(dir, 's.sock'), '-w', 'nocall'], { cwd: dir, env: activatedEnv(sharedVenv()), ready: false });
  assert.equal((await tsgi.exited).code, 1);
  assert.match(tsgi.output(), /nocall has no callable named 'application' \(set callable = NAME or module = nocall:NAME\)/);
});

test('module:callable, callable =, wsgi-file and pythonpath find the app', async () => {
  const dir = tempDir();
  writeFiles(dir, {
    'pkg/__init__.py': '',
    'pkg/site.py': 'def app(e, s):\n    s("200 OK", [])\n    return [b"pkg.site:app"]\n',
    'lib/other.py': 'def serve(e, s):\n    s("200 OK", [])\n    return [b"wsgi-file + callable"]\n',
  });
  const env = activatedEnv(sharedVenv());
  const cases: Array<[string[], string]> = [
    [['--module', 'pkg.site:app'], 'pkg.site:app'],
    [['--module', 'pkg.site', '--callable', 'app'], 'pkg.site:app'],
    [['--wsgi-file', join(dir, 'lib/other.py'), '--callable', 'serve'], 'wsgi-file + callable'],
    [['--pythonpath', join(dir, 'lib'), '-w', 'other:serve'], 'wsgi-file + callable'],
  ];
  for (const [args, body] of cases) {
    const sock = join(dir, 'c.sock');
    const tsgi = await startTsgi(['-s', sock, '--chdir', dir, ...args], { env });
    try {
      assert.equal((await uwsgiRequest(sock, getVars('/'))).body.toString(), body, args.join(' '));
    } finally {
      await stopProcess(tsgi);
    }
  }
});

test('the interpreter: home/virtualenv first, else $VIRTUAL_ENV, else python3 on PATH', async () => {
  const dir = tempDir();
  writeFiles(dir, { 'which.py': 'import sys\ndef application(e, s):\n    s("200 OK", [])\n    return [sys.prefix.encode()]\n' });
  const venv = sharedVenv();
  const sock = join(dir, 'w.sock');
  const viaHome = await startTsgi(['-s', sock, '-w', 'which', '--home', venv], { cwd: dir, env: { ...process.env, VIRTUAL_ENV: '' } });
  try {
    assert.equal((await uwsgiRequest(sock, getVars('/'))).body.toString(), venv);
  } finally {
    await stopProcess(viaHome);
  }
  const viaActivate = await startTsgi(['-s', sock, '-w', 'which'], { cwd: dir, env: activatedEnv(venv) });
  try {
    assert.equal((await uwsgiRequest(sock, getVars('/'))).body.toString(), venv);
  } finally {
    await stopProcess(viaActivate);
  }
  const bad = await startTsgi(['-s', sock, '-w', 'which', '-H', join(dir, 'not-a-venv')], { cwd: dir, ready: false });
  assert.equal((await bad.exited).code, 1);
  assert.match(bad.output(), /^tsgi: home .*not-a-venv: no Python interpreter at .*not-a-venv\/bin\/python3 \(is it a virtualenv\?\)$/m);
});

test('the guide app returning a str: served as UTF-8 with one log line per worker; a 500 under --strict', async () => {
  const dir = tempDir();
  writeFiles(dir, { 'wsgi.py': "def application(environ, start_response):\n    start_response('200 OK', [('Content-Type', 'text/html')])\n    return [\"<h1 style='color:blue'>Hello There!</h1>\"]\n" });
  const sock = join(dir, 'g.sock');
  const lenient = await startTsgi(['-s', sock, '-w', 'wsgi'], { cwd: dir, env: activatedEnv(sharedVenv()) });
  try {
    for (let i = 0; i < 3; i++) {
      const r = await uwsgiRequest(sock, getVars('/'));
      assert.equal(r.body.toString(), "<h1 style='color:blue'>Hello There!</h1>");
    }
    await lenient.waitFor(/req: 3\//);
    assert.equal(lenient.output().match(/returned a str in its response body/g)?.length, 1, 'said once per worker');
  } finally {
    await stopProcess(lenient);
  }
  const strict = await startTsgi(['-s', sock, '-w', 'wsgi', '--strict'], { cwd: dir, env: activatedEnv(sharedVenv()) });
  try {
    const r = await uwsgiRequest(sock, getVars('/'));
    assert.equal(r.status, 500);
    await strict.waitFor(/refused because of --strict/);
  } finally {
    await stopProcess(strict);
  }
});

test('the app is imported once and the workers are forked from it; lazy-apps imports it in each worker', async () => {
  const dir = tempDir();
  // Each answer takes a moment, so three requests at once reach three workers.
  writeFiles(dir, { 'once.py': 'import os, time\nLOADED_IN = os.getpid()\ndef application(e, s):\n    time.sleep(0.3)\n    s("200 OK", [])\n    return [("%d %d" % (LOADED_IN, os.getpid())).encode()]\n' });
  const sock = join(dir, 'o.sock');
  const answers = async (): Promise<Array<[string, string]>> => {
    const seen = new Map<string, string>();
    for (let i = 0; i < 5 && seen.size < 3; i++) {
      for (const r of await Promise.all([1, 2, 3].map(() => uwsgiRequest(sock, getVars('/'))))) {
        const [loaded, pid] = r.body.toString().split(' ') as [string, string];
        seen.set(pid, loaded);
      }
    }
    return [...seen.entries()];
  };
  const preload = await startTsgi(['-s', sock, '-w', 'once', '-p', '3', '--threads', '1'], { cwd: dir, env: activatedEnv(sharedVenv()) });
  try {
    const seen = await answers();
    assert.ok(seen.length >= 2, 'several workers answered');
    assert.equal(new Set(seen.map(([, loaded]) => loaded)).size, 1, 'every worker shares the one import');
    assert.ok(seen.every(([pid, loaded]) => pid !== loaded), 'the import happened in the app loader, not in the worker');
  } finally {
    await stopProcess(preload);
  }
  const lazy = await startTsgi(['-s', sock, '-w', 'once', '-p', '3', '--lazy-apps'], { cwd: dir, env: activatedEnv(sharedVenv()) });
  try {
    const seen = await answers();
    assert.ok(seen.every(([pid, loaded]) => pid === loaded), 'with lazy-apps each worker imported the app itself');
  } finally {
    await stopProcess(lazy);
  }
});

test('import = MODULE: imported before the app where the app is loaded, as uWSGI does; one that fails stops the start', async () => {
  const dir = tempDir();
  writeFiles(dir, {
    'side.py': 'import os, sys\nsys.stderr.write("SIDE imported in pid %d\\n" % os.getpid())\n',
    // The app says whether the side module was there before it was imported itself.
    'app.py': 'import sys\nBEFORE = "side" in sys.modules\ndef application(e, s):\n    s("200 OK", [])\n    return [b"side before app: %r" % BEFORE]\n',
  });
  const sock = join(dir, 'i.sock');
  const counts: Record<string, number> = {};
  for (const [mode, extra] of [['preload', []], ['lazy', ['--lazy-apps']]] as const) {
    const tsgi = await startTsgi(['-s', sock, '-w', 'app', '-p', '2', '--import', 'side', '--pythonpath', dir, ...extra], { cwd: dir, env: activatedEnv(sharedVenv()) });
    try {
      assert.equal((await uwsgiRequest(sock, getVars('/'))).body.toString(), 'side before app: True');
      counts[mode] = tsgi.output().match(/SIDE imported in pid \d+/g)?.length ?? 0;
    } finally {
      await stopProcess(tsgi);
    }
  }
  // Once in the app loader; with lazy-apps once in each of the two workers (uWSGI 2.0.21 prints the same).
  assert.deepEqual(counts, { preload: 1, lazy: 2 });
  const broken = await startTsgi(['-s', sock, '-w', 'app', '--import', 'no_such_side_module'], { cwd: dir, env: activatedEnv(sharedVenv()), ready: false });
  assert.equal((await broken.exited).code, 1);
  assert.match(broken.output(), /cannot import no_such_side_module \(import option\):\nTraceback[\s\S]*ModuleNotFoundError/);
});

test('the app loader dying takes its workers with it, and both are started again', async () => {
  const dir = tempDir();
  const sock = join(dir, 'd.sock');
  const tsgi = await startTsgi(['-s', sock, '--wsgi-file', join(FIXTURES, 'behaviours.py'), '-p', '2'], { env: activatedEnv(sharedVenv()) });
  try {
    const loader = /spawned the app loader \(pid: (\d+)\)/.exec(tsgi.output())![1]!;
    process.kill(Number(loader), 'SIGKILL');
    await tsgi.waitFor(/the app loader of generation 1 killed by SIGKILL; its workers go with it and are started again/);
    await tsgi.waitFor(/spawned the app loader \(pid: \d+\)[\s\S]*spawned the app loader \(pid: \d+\)/);
    assert.equal((await uwsgiRequest(sock, getVars('/again'))).body.toString(), 'ok /again');
  } finally {
    await stopProcess(tsgi);
  }
});

test('need-app = false: a broken app does not stop the server; requests get a 500 saying the app could not be loaded', async () => {
  const dir = tempDir();
  writeFiles(dir, { 'broken.py': 'raise ImportError("not today")\n' });
  const sock = join(dir, 'n.sock');
  const tsgi = await startTsgi(['-s', sock, '-w', 'broken', '--need-app', 'false'], { cwd: dir, env: activatedEnv(sharedVenv()) });
  try {
    const r = await uwsgiRequest(sock, getVars('/'));
    assert.equal(r.status, 500);
    assert.match(r.body.toString(), /the app could not be loaded/);
    assert.match(tsgi.output(), /cannot load the app broken:application:[\s\S]*ImportError: not today/);
  } finally {
    await stopProcess(tsgi);
  }
});
