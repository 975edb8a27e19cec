/** Twenty vassals from one folder: all start, each serves its own app on its own socket, and all stop. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from '../helpers/paths.js';
import { activatedEnv, sharedVenv, stopProcess, tempDir } from '../helpers/procs.js';
import { ask, readStats, startEmperor } from '../helpers/emperor.js';

const APP = join(repoRoot, 'test/fixtures/apps/emperor_app.py');
const COUNT = 20;

test(`${COUNT} vassals start and serve, each on its own socket`, async (t) => {
  const dir = tempDir('tsgi-emperor-20-');
  const vassals = join(dir, 'vassals');
  mkdirSync(vassals);
  mkdirSync(join(dir, 'run'));
  for (let i = 1; i <= COUNT; i++) {
    writeFileSync(join(vassals, `site${String(i).padStart(2, '0')}.ini`), `[uwsgi]\nsocket = ${dir}/run/%n.sock\nwsgi-file = ${APP}\nprocesses = 1\n`);
  }
  const stats = join(dir, 'stats.sock');
  const started = Date.now();
  const emperor = await startEmperor(['--emperor', vassals, '--emperor-stats', stats], { env: activatedEnv(sharedVenv()), timeoutMs: 120_000 });
  const took = Date.now() - started;
  try {
    assert.match(emperor.output(), new RegExp(`emperor: ready: ${COUNT} vassal\\(s\\) serving \\(emperor pid`));
    const s = await readStats(stats);
    assert.equal(s.vassals.length, COUNT);
    assert.ok(s.vassals.every((v) => v.status === 'ready'));
    const names = s.vassals.map((v) => v.name);
    const bodies = await Promise.all(names.map((n) => ask(`${dir}/run/${n.replace('.ini', '')}.sock`)));
    assert.deepEqual(bodies.map((b) => b.status), Array(COUNT).fill(200));
    assert.deepEqual(bodies.map((b) => b.body.toString().split(' ')[0]), names, 'each socket is served by its own vassal');
    const rssKb = Number(/^VmRSS:\s+(\d+)/m.exec(readFileSync(`/proc/${emperor.pid}/status`, 'utf8'))![1]);
    t.diagnostic(`${COUNT} vassals serving ${took} ms after the emperor started; emperor RSS ${(rssKb / 1024).toFixed(1)} MiB`);
  } finally {
    assert.deepEqual(await stopProcess(emperor), { code: 0, signal: null }, emperor.output());
  }
});
