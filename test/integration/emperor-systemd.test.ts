/**
 * The emperor under systemd (Type=notify): it, not its vassals, talks to the notification socket, read here from a
 * real AF_UNIX datagram socket.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from '../helpers/paths.js';
import { activatedEnv, sharedVenv, startProcess, stopProcess, tempDir, SYSTEM_PYTHON } from '../helpers/procs.js';
import { ask, startEmperor } from '../helpers/emperor.js';

const APP = join(repoRoot, 'test/fixtures/apps/emperor_app.py');
const nativeBuilt = existsSync(join(repoRoot, 'build/Release/tsgi_native.node'));

test('sd_notify from the emperor: READY=1 once its vassals serve, RELOADING=1 then READY=1 around SIGHUP, STOPPING=1; vassals never see NOTIFY_SOCKET', { skip: nativeBuilt ? false : 'the native helper was not built (npm install needs a C compiler)' }, async () => {
  const dir = tempDir('tsgi-emperor-systemd-');
  const notifySock = join(dir, 'notify.sock');
  const listener = startProcess(SYSTEM_PYTHON, [join(repoRoot, 'test/fixtures/tools/notify_listener.py'), notifySock]);
  await listener.waitFor(/LISTENING/);
  mkdirSync(join(dir, 'vassals'));
  for (const name of ['one', 'two']) writeFileSync(join(dir, `vassals/${name}.ini`), `[uwsgi]\nsocket = ${dir}/%n.sock\nwsgi-file = ${APP}\n`);
  const emperor = await startEmperor(['--emperor', join(dir, 'vassals')], { env: { ...activatedEnv(sharedVenv()), NOTIFY_SOCKET: notifySock } });
  try {
    await listener.waitFor(/^READY=1\|STATUS=2 vassal\(s\) serving$/m);
    assert.equal((await ask(join(dir, 'one.sock'), '/env', 'NOTIFY_SOCKET,TSGI_VASSAL')).body.toString(), 'NOTIFY_SOCKET=\nTSGI_VASSAL=one.ini\n');
    emperor.kill('SIGHUP');
    await listener.waitFor(/^RELOADING=1\|MONOTONIC_USEC=\d+\|STATUS=reloading every vassal$/m);
    await listener.waitFor(/RELOADING=1[\s\S]*^READY=1\|STATUS=2 vassal\(s\) serving$/m);
    await emperor.waitFor(/emperor: reload done: 2 vassal\(s\) serving/);
    emperor.kill('SIGTERM');
    assert.equal((await emperor.exited).code, 0);
    await listener.waitFor(/^STOPPING=1\|STATUS=graceful stop: every vassal finishes its requests$/m);
    // Only the emperor spoke: no vassal's own "N workers serving".
    assert.doesNotMatch(listener.output(), /workers serving|generation/);
  } finally {
    await stopProcess(emperor);
    listener.kill('SIGKILL');
  }
});
