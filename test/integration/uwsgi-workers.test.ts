/**
 * uwsgi.workers() (docs/python-uwsgi-module.md): the same app and command line under tsgi and the real uWSGI
 * 2.0.21 give a tuple of dicts with the same keys and value types, one per worker id, with the same meaning for
 * the counters tsgi keeps (requests, status of the calling worker, pid, tx, running_time, avg_rt).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { repoRoot } from '../helpers/paths.js';
import { activatedEnv, freePort, httpRequest, sharedVenv, startProcess, startTsgi, stopProcess, tempDir, type RunningProcess } from '../helpers/procs.js';

const APP = join(repoRoot, 'test/fixtures/apps/uwsgi_workers.py');
const haveUwsgi = spawnSync('uwsgi', ['--plugin', 'python3', '--version']).status === 0;

interface Snapshot {
  pid: number;
  worker_id: number;
  type: string;
  workers: Array<Record<string, unknown>>;
  types: Array<Record<string, unknown>>;
}

async function get(port: number): Promise<Snapshot> {
  const r = await httpRequest(`http://127.0.0.1:${port}/`);
  assert.equal(r.status, 200, r.body.toString());
  return JSON.parse(r.body.toString()) as Snapshot;
}

async function probe(server: 'tsgi' | 'uwsgi'): Promise<{ snaps: Snapshot[] }> {
  const dir = tempDir();
  const port = await freePort();
  const args = ['--plugin', 'python3', '--http-socket', `127.0.0.1:${port}`, '--wsgi-file', APP, '--master', '--processes', '2',
    '--die-on-term', '--disable-logging'];
  let p: RunningProcess;
  if (server === 'tsgi') {
    p = await startTsgi(args, { env: activatedEnv(sharedVenv()), cwd: dir });
  } else {
    const env: NodeJS.ProcessEnv = { ...process.env, PYTHONHOME: '' };
    for (const k of Object.keys(env)) if (k.startsWith('UWSGI_') || k.startsWith('TSGI_')) delete env[k];
    p = startProcess('uwsgi', args, { env, cwd: dir });
    await p.waitFor(/spawned uWSGI worker 2/);
  }
  try {
    const snaps: Snapshot[] = [];
    for (let i = 0; i < 6; i++) snaps.push(await get(port));
    return { snaps };
  } finally {
    await stopProcess(p);
  }
}

function check(server: string, run: { snaps: Snapshot[] }): void {
  let completed = 0;
  for (const s of run.snaps) {
    assert.equal(s.type, 'tuple', server);
    assert.deepEqual(s.workers.map((w) => w.id), [1, 2], `${server}: one dict per worker id`);
    const me = s.workers[s.worker_id - 1]!;
    assert.equal(me.pid, s.pid, `${server}: the caller's pid`);
    assert.equal(me.status, 'busy', `${server}: the calling worker is busy`);
    const other = s.workers[2 - s.worker_id]!;
    // uWSGI sometimes shows the other worker 'busy' too (woken by the same accept); tsgi's is its scoreboard flag.
    if (server === 'tsgi') assert.equal(other.status, 'idle', `${server}: the other worker is idle`);
    else assert.ok(other.status === 'idle' || other.status === 'busy', server);
    assert.notEqual(other.pid, me.pid, server);
    // requests: completed ones, so over both workers the requests answered before this one.
    const total = s.workers.reduce((n, w) => n + (w.requests as number), 0);
    assert.equal(total, completed, `${server}: requests of both workers before request ${completed + 1}`);
    for (const w of s.workers) {
      assert.equal(w.delta_requests, w.requests, server);
      // avg_rt: uWSGI keeps a running average of the last ones, tsgi the mean (docs/python-uwsgi-module.md).
      assert.equal((w.avg_rt as number) > 0, (w.requests as number) > 0, `${server}: avg_rt`);
      if (w.requests) assert.ok((w.tx as number) > 0 && (w.running_time as number) > 0, `${server}: tx and running_time grow`);
      assert.ok(Math.abs((w.last_spawn as number) - Date.now() / 1000) < 300, `${server}: last_spawn ${w.last_spawn}`);
      assert.equal(w.respawn_count, 0, server);
      assert.equal(w.rss, 0, `${server}: rss (not tracked without memory-report)`);
      assert.equal(w.signals, 0, server);
      assert.ok((w.pid as number) > 0, server);
    }
    completed++;
  }
}

test('uwsgi.workers(): keys, types and counters as the real uWSGI 2.0.21 gives them', { skip: !haveUwsgi && 'uwsgi --plugin python3 is not installed' }, async () => {
  const tsgi = await probe('tsgi');
  const uwsgi = await probe('uwsgi');
  check('uwsgi', uwsgi);
  check('tsgi', tsgi);
  // Same keys and types, the apps tuple included (the addresses uWSGI puts in interpreter/callable are ints).
  assert.deepEqual(tsgi.snaps[0]!.types, uwsgi.snaps[0]!.types);
  assert.deepEqual(Object.keys(tsgi.snaps[0]!.workers[0]!).sort(), Object.keys(uwsgi.snaps[0]!.workers[0]!).sort());
});
