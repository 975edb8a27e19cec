/** Signals as systemd, Docker and a terminal send them: graceful stop, immediate stop, graceful reload. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from '../helpers/paths.js';
import { activatedEnv, workerPids, sharedVenv, startTsgi, stopProcess, tempDir, writeFiles } from '../helpers/procs.js';
import { getVars, rawExchange, uwsgiPacket, uwsgiRequest } from '../helpers/uwsgi-client.js';

const APP = join(repoRoot, 'test/fixtures/apps/behaviours.py');
const env = activatedEnv(sharedVenv());

test('SIGTERM: busy workers finish, queued connections are answered, the master exits 0', async () => {
  const dir = tempDir();
  const sock = join(dir, 't.sock');
  const tsgi = await startTsgi(['-s', sock, '-p', '2', '--wsgi-file', APP, '--vacuum'], { env });
  const slow = [uwsgiRequest(sock, getVars('/sleep', { QUERY_STRING: '1.5' })), uwsgiRequest(sock, getVars('/sleep', { QUERY_STRING: '1.5' }))];
  await tsgi.waitFor(/spawned worker 2/);
  // Both workers are now busy for a while: these wait in the socket's queue.
  await new Promise((r) => setTimeout(r, 300));
  const queued = Array.from({ length: 6 }, (_, i) => uwsgiRequest(sock, getVars(`/queued-${i}`)));
  await new Promise((r) => setTimeout(r, 200));
  tsgi.kill('SIGTERM');
  const answers = await Promise.all([...slow, ...queued]);
  assert.deepEqual(answers.map((a) => a.status), [200, 200, 200, 200, 200, 200, 200, 200]);
  assert.deepEqual(answers.slice(2).map((a) => a.body.toString()), Array.from({ length: 6 }, (_, i) => `ok /queued-${i}`));
  const exit = await tsgi.exited;
  assert.deepEqual(exit, { code: 0, signal: null }, tsgi.output());
  assert.match(tsgi.output(), /graceful stop/);
});

test('SIGINT stops at once, even with a request in progress', async () => {
  const dir = tempDir();
  const sock = join(dir, 'i.sock');
  const tsgi = await startTsgi(['-s', sock, '--wsgi-file', APP], { env });
  const hanging = rawExchange(sock, uwsgiPacket(getVars('/sleep', { QUERY_STRING: '60' })));
  await new Promise((r) => setTimeout(r, 300));
  tsgi.kill('SIGINT');
  const exit = await tsgi.exited;
  assert.equal(exit.code, 0);
  assert.equal((await hanging).length, 0, 'the request in progress was cut');
  assert.match(tsgi.output(), /stopping now \(SIGINT\)/);
  // How the worker ended reaches the master (its app loader reports it before going itself).
  assert.match(tsgi.output(), /worker 1 \(pid: \d+\) stopped \(exited with status 0\)/);
  assert.doesNotMatch(tsgi.output(), /killed by SIGKILL/);
});

test('SIGHUP reloads gracefully: new workers, the socket kept, no request refused or failed', async () => {
  const dir = tempDir();
  const sock = join(dir, 'h.sock');
  writeFiles(dir, { 'app.ini': `[uwsgi]\nsocket = ${sock}\nprocesses = 2\nwsgi-file = ${APP}\n` });
  const tsgi = await startTsgi(['--ini', join(dir, 'app.ini')], { env });
  try {
    const before = workerPids(tsgi.pid).sort();
    assert.equal(before.length, 2);
    let stop = false;
    let ok = 0;
    const failures: string[] = [];
    const load = (async () => {
      while (!stop) {
        try {
          const r = await uwsgiRequest(sock, getVars('/pid'));
          if (r.status === 200) ok++;
          else failures.push(`status ${r.status}`);
        } catch (err) {
          failures.push(String(err));
        }
      }
    })();
    // The reload reads the configuration again: it asks for 3 workers now.
    writeFiles(dir, { 'app.ini': `[uwsgi]\nsocket = ${sock}\nprocesses = 3\nwsgi-file = ${APP}\n` });
    for (let i = 0; i < 3; i++) {
      const done = tsgi.output().match(/graceful reload done/g)?.length ?? 0;
      tsgi.kill('SIGHUP');
      await tsgi.waitFor(new RegExp(`(graceful reload done[\\s\\S]*){${done + 1}}`));
    }
    stop = true;
    await load;
    assert.deepEqual(failures, [], 'no request failed during the reloads');
    assert.ok(ok > 0);
    await tsgi.waitFor(/(retired[\s\S]*){7}/); // 2 + 3 + 3 old workers retired by 3 reloads
    const after = workerPids(tsgi.pid).sort();
    assert.equal(after.length, 3, 'the reload applied processes = 3');
    assert.ok(after.every((p) => !before.includes(p)), 'all workers are new');
  } finally {
    assert.equal((await stopProcess(tsgi)).code, 0);
  }
});

test('a reload whose new app does not load keeps the old workers serving', async () => {
  const dir = tempDir();
  const sock = join(dir, 'b.sock');
  writeFiles(dir, { 'wsgi.py': 'def application(e, s):\n    s("200 OK", [])\n    return [b"version 1"]\n' });
  const tsgi = await startTsgi(['-s', sock, '-w', 'wsgi', '-p', '2'], { cwd: dir, env });
  try {
    writeFiles(dir, { 'wsgi.py': 'raise SystemExit("deliberately broken")\n' });
    tsgi.kill('SIGHUP');
    await tsgi.waitFor(/reload failed: the new app could not be loaded \(traceback above\); the previous workers keep serving/);
    assert.equal((await uwsgiRequest(sock, getVars('/'))).body.toString(), 'version 1');
    // A different size too: Python's bytecode cache trusts (mtime in seconds, size) of the source.
    writeFiles(dir, { 'wsgi.py': 'def application(e, s):\n    s("200 OK", [])\n    return [b"version 2, reloaded"]\n' });
    tsgi.kill('SIGHUP');
    await tsgi.waitFor(/graceful reload done[\s\S]*retired[\s\S]*retired/);
    assert.equal((await uwsgiRequest(sock, getVars('/'))).body.toString(), 'version 2, reloaded');
  } finally {
    await stopProcess(tsgi);
  }
});

test('after a reload that failed, a worker respawned runs with the configuration still in effect', async () => {
  const dir = tempDir();
  const sock = join(dir, 'r.sock');
  writeFiles(dir, {
    'good.py': 'def application(e, s):\n    s("200 OK", [])\n    return [b"version 1"]\n',
    'broken.py': 'raise SystemExit("deliberately broken")\n',
    'app.ini': `[uwsgi]\nsocket = ${sock}\nwsgi-file = good.py\nprocesses = 2\n`,
  });
  const tsgi = await startTsgi(['--ini', join(dir, 'app.ini')], { cwd: dir, env });
  try {
    // The new configuration fails to load its app; had it been kept, max-requests = 1 would recycle every respawned worker after each request.
    writeFiles(dir, { 'app.ini': `[uwsgi]\nsocket = ${sock}\nwsgi-file = broken.py\nprocesses = 2\nmax-requests = 1\n` });
    tsgi.kill('SIGHUP');
    await tsgi.waitFor(/reload failed: the new app could not be loaded/);
    const before = workerPids(tsgi.pid);
    process.kill(before[0]!, 'SIGKILL');
    for (let waited = 0; workerPids(tsgi.pid).filter((p) => !before.includes(p)).length === 0; waited += 50) {
      assert.ok(waited < 30_000, `no worker respawned; output:\n${tsgi.output()}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    for (let i = 0; i < 6; i++) assert.equal((await uwsgiRequest(sock, getVars('/'))).body.toString(), 'version 1');
    assert.doesNotMatch(tsgi.output(), /max-requests/);
  } finally {
    await stopProcess(tsgi);
  }
});

test('a reload with a broken configuration is refused with the error line, and nothing changes', async () => {
  const dir = tempDir();
  const sock = join(dir, 'c.sock');
  writeFiles(dir, { 'app.ini': `[uwsgi]\nsocket = ${sock}\nwsgi-file = ${APP}\n` });
  const tsgi = await startTsgi(['--ini', join(dir, 'app.ini')], { env });
  try {
    writeFiles(dir, { 'app.ini': `[uwsgi]\nsocket = ${sock}\nwsgi-file = ${APP}\nprocesess = 4\n` });
    tsgi.kill('SIGHUP');
    await tsgi.waitFor(/reload refused, still serving with the previous configuration: .*app\.ini:4: option 'procesess': unknown option \(did you mean 'processes'\?\)/);
    assert.equal((await uwsgiRequest(sock, getVars('/x'))).status, 200);
  } finally {
    await stopProcess(tsgi);
  }
});

test('a worker killed from outside is respawned; one that keeps dying at start is respawned with back-off', async () => {
  const dir = tempDir();
  const sock = join(dir, 'k.sock');
  const flag = join(dir, 'break-now');
  writeFiles(dir, { 'wsgi.py': `import os\nif os.path.exists(${JSON.stringify(flag)}):\n    raise RuntimeError("cannot start")\ndef application(e, s):\n    s("200 OK", [])\n    return [str(os.getpid()).encode()]\n` });
  // lazy-apps: each worker imports the app itself, so a broken app makes a worker fail at its start.
  const tsgi = await startTsgi(['-s', sock, '-w', 'wsgi', '--lazy-apps'], { cwd: dir, env });
  try {
    const [first] = workerPids(tsgi.pid);
    process.kill(first!, 'SIGKILL');
    await tsgi.waitFor(new RegExp(`worker 1 \\(pid: ${first}\\) killed by SIGKILL; respawning`));
    await tsgi.waitFor(/ready[\s\S]*spawned worker 1/);
    const r = await uwsgiRequest(sock, getVars('/'));
    assert.equal(r.status, 200);
    assert.notEqual(r.body.toString(), String(first));

    writeFileSync(flag, '');
    process.kill(Number(r.body.toString()), 'SIGKILL');
    await tsgi.waitFor(/\(app failed to load\); respawning in \d+ s \(it keeps dying at start\)/);
    rmSync(flag);
    // The request waits in the socket's queue until a worker that loads the app takes it.
    const again = await uwsgiRequest(sock, getVars('/'));
    assert.equal(again.status, 200, 'serving again once the app loads');
  } finally {
    await stopProcess(tsgi);
  }
});
