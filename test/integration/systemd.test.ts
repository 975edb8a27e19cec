/**
 * Under systemd: notifications read from a real AF_UNIX datagram socket (READY=1 once every worker serves,
 * RELOADING=1, STOPPING=1, WATCHDOG=1), and socket activation (LISTEN_FDS) in place of binding.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot, tsgiBin } from '../helpers/paths.js';
import { activatedEnv, freePort, sharedVenv, startProcess, startTsgi, stopProcess, tempDir, SYSTEM_PYTHON } from '../helpers/procs.js';
import { parseResponses, rawHttp } from '../helpers/http-raw.js';
import { getVars, uwsgiRequest } from '../helpers/uwsgi-client.js';

const APP = join(repoRoot, 'test/fixtures/apps/behaviours.py');
const TOOLS = join(repoRoot, 'test/fixtures/tools');
const env = activatedEnv(sharedVenv());
const nativeBuilt = existsSync(join(repoRoot, 'build/Release/tsgi_native.node'));

test('sd_notify: READY=1 once the workers serve, WATCHDOG=1, RELOADING=1 then READY=1, STOPPING=1', { skip: nativeBuilt ? false : 'the native helper was not built (npm install needs a C compiler)' }, async () => {
  const dir = tempDir();
  const notifySock = join(dir, 'notify.sock');
  const listener = startProcess(SYSTEM_PYTHON, [join(TOOLS, 'notify_listener.py'), notifySock]);
  await listener.waitFor(/LISTENING/);
  const sock = join(dir, 'n.sock');
  const tsgi = await startTsgi(['-s', sock, '-p', '2', '--wsgi-file', APP], { env: { ...env, NOTIFY_SOCKET: notifySock, WATCHDOG_USEC: '400000' } });
  try {
    await listener.waitFor(/^READY=1\|STATUS=2 workers serving$/m);
    assert.doesNotMatch(listener.output().split('READY=1')[0]!, /READY/, 'READY=1 comes once');
    await listener.waitFor(/^WATCHDOG=1$/m);
    assert.equal((await uwsgiRequest(sock, getVars('/x'))).status, 200);
    tsgi.kill('SIGHUP');
    await listener.waitFor(/^RELOADING=1\|MONOTONIC_USEC=\d+\|STATUS=graceful reload to generation 2$/m);
    await listener.waitFor(/RELOADING=1[\s\S]*^READY=1\|STATUS=generation 2 serving$/m);
    tsgi.kill('SIGTERM');
    assert.equal((await tsgi.exited).code, 0);
    await listener.waitFor(/^STOPPING=1\|STATUS=stopping$/m);
  } finally {
    await stopProcess(tsgi);
    listener.kill('SIGKILL');
  }
});

test('socket activation: sockets passed with LISTEN_FDS are used in place of binding', async () => {
  const dir = tempDir();
  const sock = join(dir, 'activated.sock');
  const port = await freePort();
  const tsgi = startProcess(SYSTEM_PYTHON, [join(TOOLS, 'socket_activate.py'), `unix:${sock}=app`, `tcp:127.0.0.1:${port}=web`, '--',
    process.execPath, tsgiBin, '--socket', sock, '--http-socket', `127.0.0.1:${port}`, '-p', '2', '--wsgi-file', APP], { env });
  try {
    await tsgi.waitFor(/ready: 2 worker/);
    assert.match(tsgi.output(), new RegExp(`uwsgi socket ${sock.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} passed by systemd \\(fd 3\\)`));
    assert.match(tsgi.output(), new RegExp(`http socket 127\\.0\\.0\\.1:${port} passed by systemd \\(fd 4\\)`));
    assert.equal((await uwsgiRequest(sock, getVars('/via-uwsgi'))).body.toString(), 'ok /via-uwsgi');
    const { bytes } = await rawHttp(port, 'GET /via-http HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    assert.equal(parseResponses(bytes)[0]!.body.toString(), 'ok /via-http');
  } finally {
    await stopProcess(tsgi);
  }
  assert.equal(existsSync(sock), true, "systemd's socket file is systemd's: never removed by tsgi");
});

test('socket activation without any socket configured serves every passed socket', async () => {
  const dir = tempDir();
  const sock = join(dir, 'only.sock');
  const tsgi = startProcess(SYSTEM_PYTHON, [join(TOOLS, 'socket_activate.py'), `unix:${sock}`, '--', process.execPath, tsgiBin, '--wsgi-file', APP], { env });
  try {
    await tsgi.waitFor(/ready: 1 worker/);
    assert.equal((await uwsgiRequest(sock, getVars('/only'))).body.toString(), 'ok /only');
  } finally {
    await stopProcess(tsgi);
  }
});
