/**
 * The emperor's signals, as systemd, a terminal or an admin send them: SIGTERM stops every vassal gracefully,
 * SIGINT at once, SIGHUP reloads every vassal, SIGUSR1 prints the table. An emperor that dies without a word
 * (SIGKILL) leaves no vassal behind.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from '../helpers/paths.js';
import { activatedEnv, workerPids, sharedVenv, stopProcess, tempDir } from '../helpers/procs.js';
import { getVars, rawExchange, uwsgiPacket, uwsgiRequest } from '../helpers/uwsgi-client.js';
import { readStats, startEmperor, until } from '../helpers/emperor.js';

const APP = join(repoRoot, 'test/fixtures/apps/emperor_app.py');
const env = activatedEnv(sharedVenv());

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** A folder of `n` vassals with one worker each; returns their socket paths. */
function folder(n: number): { dir: string; vassals: string; socks: string[]; stats: string } {
  const dir = tempDir('tsgi-emperor-sig-');
  const vassals = join(dir, 'vassals');
  mkdirSync(vassals);
  const socks: string[] = [];
  for (let i = 1; i <= n; i++) {
    const sock = join(dir, `v${i}.sock`);
    socks.push(sock);
    writeFileSync(join(vassals, `v${i}.ini`), `[uwsgi]\nsocket = ${sock}\nwsgi-file = ${APP}\nvacuum = true\n`);
  }
  return { dir, vassals, socks, stats: join(dir, 'stats.sock') };
}

for (const allAtOnce of [false, true]) {
  test(allAtOnce
    ? "SIGTERM to every process at once (systemd's KillMode=control-group): still graceful, no request in flight is lost, exit 0"
    : 'SIGTERM to the emperor: every vassal stops gracefully, no request in flight is lost, exit 0', async () => {
    const f = folder(3);
    const emperor = await startEmperor(['--emperor', f.vassals, '--emperor-stats', f.stats], { env });
    const masters = (await readStats(f.stats)).vassals.map((v) => v.pid!);
    const workers = masters.flatMap((m) => workerPids(m));
    assert.equal(workers.length, 3);
    // Each vassal's only worker is busy with a slow request; three more wait in each socket's queue.
    const slow = f.socks.map((s) => uwsgiRequest(s, getVars('/sleep', { QUERY_STRING: '1.5' })));
    await new Promise((r) => setTimeout(r, 300));
    const queued = f.socks.flatMap((s, i) => [1, 2, 3].map((k) => uwsgiRequest(s, getVars(`/queued-${i + 1}-${k}`))));
    await new Promise((r) => setTimeout(r, 200));
    emperor.kill('SIGTERM');
    if (allAtOnce) for (const pid of [...masters, ...workers]) process.kill(pid, 'SIGTERM');
    const answers = await Promise.all([...slow, ...queued]);
    assert.deepEqual(answers.map((a) => a.status), Array(12).fill(200));
    assert.deepEqual(
      answers.slice(3).map((a) => a.body.toString().split(' ')[2]),
      f.socks.flatMap((_, i) => [1, 2, 3].map((k) => `/queued-${i + 1}-${k}`)),
    );
    const exit = await emperor.exited;
    assert.deepEqual(exit, { code: 0, signal: null }, emperor.output());
    assert.match(emperor.output(), /emperor: graceful stop: every vassal finishes its requests/);
    for (let i = 1; i <= 3; i++) assert.match(emperor.output(), new RegExp(`vassal v${i}\\.ini: stopped \\(exited with status 0\\)`));
    assert.match(emperor.output(), /emperor: stopped: every vassal is gone/);
    for (const pid of [...masters, ...workers]) assert.equal(alive(pid), false, `pid ${pid} is gone`);
  });
}

test('SIGINT to the emperor stops every vassal at once, even with a request in progress', async () => {
  const f = folder(2);
  const emperor = await startEmperor(['--emperor', f.vassals, '--emperor-stats', f.stats], { env });
  const masters = (await readStats(f.stats)).vassals.map((v) => v.pid!);
  const hanging = rawExchange(f.socks[0]!, uwsgiPacket(getVars('/sleep', { QUERY_STRING: '60' })));
  await new Promise((r) => setTimeout(r, 300));
  emperor.kill('SIGINT');
  assert.deepEqual(await emperor.exited, { code: 0, signal: null }, emperor.output());
  assert.equal((await hanging).length, 0, 'the request in progress was cut');
  assert.match(emperor.output(), /emperor: stopping every vassal at once \(SIGINT\)/);
  for (const pid of masters) assert.equal(alive(pid), false);
});

test('SIGHUP to the emperor reloads every vassal gracefully (same masters, new workers); SIGUSR1 prints the table', async () => {
  const f = folder(2);
  const emperor = await startEmperor(['--emperor', f.vassals, '--emperor-stats', f.stats], { env });
  try {
    const masters = (await readStats(f.stats)).vassals.map((v) => v.pid!);
    const before = masters.flatMap((m) => workerPids(m));
    emperor.kill('SIGHUP');
    await until('both vassals reloaded', async () => (await readStats(f.stats)).vassals.every((v) => v.reloads === 1 && v.status === 'ready'));
    await until('the old workers are gone', () => masters.flatMap((m) => workerPids(m)).every((p) => !before.includes(p)));
    assert.deepEqual((await readStats(f.stats)).vassals.map((v) => v.pid), masters);
    for (const s of f.socks) assert.equal((await uwsgiRequest(s, getVars('/'))).status, 200);
    emperor.kill('SIGUSR1');
    await emperor.waitFor(/emperor: 2 vassal\(s\):\n.*emperor: {3}v1\.ini: ready, pid \d+, restarts 0, reloads 1\n.*emperor: {3}v2\.ini: ready, pid \d+, restarts 0, reloads 1/);
  } finally {
    assert.equal((await stopProcess(emperor)).code, 0);
  }
});

test('an emperor killed outright leaves no vassal behind: each one notices and stops gracefully', async () => {
  const f = folder(2);
  const emperor = await startEmperor(['--emperor', f.vassals, '--emperor-stats', f.stats], { env });
  const masters = (await readStats(f.stats)).vassals.map((v) => v.pid!);
  const workers = masters.flatMap((m) => workerPids(m));
  emperor.kill('SIGKILL');
  await emperor.exited;
  await until('every vassal process is gone', () => [...masters, ...workers].every((p) => !alive(p)));
  await until('the vassals logged why', () => (emperor.output().match(/lost the emperor \(its link closed\); stopping gracefully/g) ?? []).length === 2);
});
