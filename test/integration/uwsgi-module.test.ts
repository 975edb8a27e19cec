/**
 * The `uwsgi` module Python apps import (docs/python-uwsgi-module.md): the same app, with the same command
 * line, under tsgi and under the real uWSGI (Debian's 2.0.21 with its python3 plugin) gives the same values and
 * types; @postfork runs once in each worker and never in the loader; logvars reach log-format; reload() reloads
 * gracefully; what tsgi does not provide is an AttributeError naming it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from '../helpers/paths.js';
import { until } from '../helpers/emperor.js';
import {
  activatedEnv, freePort, httpRequest, sharedVenv, startProcess, startTsgi, stopProcess, tempDir, workerPids, type RunningProcess,
} from '../helpers/procs.js';

const APP = join(repoRoot, 'test/fixtures/apps/uwsgi_api.py');
const haveUwsgi = spawnSync('uwsgi', ['--plugin', 'python3', '--version']).status === 0;

interface Info {
  pid: number;
  worker_id: number;
  numproc: number;
  masterpid: number;
  mule_id: number;
  request_id: number;
  total_requests: number;
  opt: Record<string, unknown>;
  version_info: unknown[];
  started_on: number;
  is_a_reload: boolean;
  logsize: number;
  mem: number[];
  types: Record<string, string>;
  decorators: string;
}

interface ProbeRecord {
  event: 'import' | 'postfork' | 'atexit';
  pid: number;
  worker_id: number;
  masterpid?: number;
}

function records(file: string): ProbeRecord[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as ProbeRecord);
}

async function get<T>(port: number, path: string): Promise<T> {
  const r = await httpRequest(`http://127.0.0.1:${port}${path}`);
  assert.equal(r.status, 200, r.body.toString());
  return JSON.parse(r.body.toString()) as T;
}

function cleanEnv(extra: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, PYTHONHOME: '', ...extra };
  for (const k of Object.keys(env)) if (k.startsWith('UWSGI_') || k.startsWith('TSGI_')) delete env[k];
  return env;
}

interface Run {
  infos: Info[];
  records: ProbeRecord[];
  master: number;
  port: number;
  dir: string;
  output: string;
}

/** Starts `server` with the same uWSGI command line, makes 8 requests, stops it with SIGTERM. */
async function probe(server: 'tsgi' | 'uwsgi'): Promise<Run> {
  const dir = tempDir();
  const port = await freePort();
  const out = join(dir, 'records.jsonl');
  const pidfile = join(dir, 'master.pid');
  const args = ['--plugin', 'python3', '--http-socket', `127.0.0.1:${port}`, '--wsgi-file', APP, '--master', '--processes', '2',
    '--pidfile', pidfile, '--logformat', 'L %(uri) [%(myvar)]', '--die-on-term'];
  let p: RunningProcess;
  if (server === 'tsgi') {
    p = await startTsgi(args, { env: activatedEnv(sharedVenv(), { APIPROBE_OUT: out }), cwd: dir });
  } else {
    p = startProcess('uwsgi', args, { env: cleanEnv({ APIPROBE_OUT: out }), cwd: dir });
    await p.waitFor(/spawned uWSGI worker 2/);
  }
  const infos: Info[] = [];
  try {
    for (let i = 0; i < 8; i++) infos.push(await get<Info>(port, '/info'));
    // Both workers must have run their post-fork hooks before the stop: uWSGI logs "spawned uWSGI worker 2" from the
    // master, and on a loaded machine the second worker can still be starting when the requests are done (one CI run
    // stopped it there, and its atexit came without a postfork).
    await until('both workers to run their post-fork hooks', () => records(out).filter((r) => r.event === 'postfork').length >= 2, 20_000);
  } finally {
    await stopProcess(p);
  }
  return { infos, records: records(out), master: Number(readFileSync(pidfile, 'utf8').trim()), port, dir, output: p.output() };
}

/** What must hold under both servers. */
function checkSemantics(run: Run, server: string): void {
  const { infos, records: recs, master } = run;
  for (const info of infos) {
    assert.equal(info.numproc, 2, `${server}: numproc`);
    assert.ok(info.worker_id === 1 || info.worker_id === 2, `${server}: worker_id ${info.worker_id}`);
    assert.equal(info.masterpid, master, `${server}: masterpid() is the master's pid`);
    assert.equal(info.mule_id, 0);
    assert.equal(info.is_a_reload, false);
    assert.deepEqual(info.version_info.slice(0, 2), [2, 0]);
    assert.ok(Math.abs(info.started_on - Date.now() / 1000) < 120, `${server}: started_on ${info.started_on}`);
  }
  // request_id(): per worker, the requests it completed before this one.
  const perWorker = new Map<number, number[]>();
  for (const info of infos) perWorker.set(info.pid, [...(perWorker.get(info.pid) ?? []), info.request_id]);
  for (const [pid, ids] of perWorker) assert.deepEqual(ids, ids.map((_, i) => i), `${server}: request_id of worker pid ${pid}`);
  // total_requests(): requests completed by every worker, so 0 in the first one.
  assert.equal(infos[0]!.total_requests, 0);
  assert.ok(infos.every((x, i) => i === 0 || x.total_requests >= infos[i - 1]!.total_requests));
  assert.equal(infos.at(-1)!.total_requests, 7, `${server}: total_requests after 7 completed requests`);
  // Imported once, outside any worker (uWSGI's master, tsgi's loader): worker_id() 0 there.
  const imports = recs.filter((r) => r.event === 'import');
  assert.equal(imports.length, 1, `${server}: imported once: ${JSON.stringify(recs)}`);
  assert.equal(imports[0]!.worker_id, 0);
  assert.equal(imports[0]!.masterpid, master);
  // post_fork_hook: once in each worker, never where the app was imported.
  const forks = recs.filter((r) => r.event === 'postfork');
  assert.deepEqual(forks.map((r) => r.worker_id).sort(), [1, 2], `${server}: ${JSON.stringify(recs)}`);
  assert.equal(new Set(forks.map((r) => r.pid)).size, 2);
  assert.ok(forks.every((r) => r.pid !== imports[0]!.pid));
  for (const info of infos) assert.ok(forks.some((r) => r.pid === info.pid && r.worker_id === info.worker_id));
  // atexit: in each worker as it stops (SIGTERM here), not in the master or loader.
  const exits = recs.filter((r) => r.event === 'atexit');
  assert.deepEqual(exits.map((r) => r.pid).sort(), forks.map((r) => r.pid).sort(), `${server}: atexit: ${JSON.stringify(recs)}`);
}

/** uwsgi.opt with the parts that differ between two runs (port, temp dir) made equal. */
function normalOpt(run: Run): Record<string, unknown> {
  return JSON.parse(JSON.stringify(run.infos[0]!.opt).split(String(run.port)).join('PORT').split(run.dir).join('DIR')) as Record<string, unknown>;
}

test("the uwsgi module under tsgi gives what uWSGI 2.0's gives for the same command line", async () => {
  const tsgi = await probe('tsgi');
  checkSemantics(tsgi, 'tsgi');
  const info = tsgi.infos[0]!;
  assert.equal(info.decorators, 'uwsgidecorators', 'tsgi gives the app `from uwsgidecorators import postfork`');
  // uwsgi.opt as uWSGI presents it: names as given, values bytes, True for a flag given without a value.
  assert.deepEqual(normalOpt(tsgi), {
    plugin: { bytes: 'python3' }, 'http-socket': { bytes: '127.0.0.1:PORT' }, 'wsgi-file': { bytes: APP }, master: true,
    processes: { bytes: '2' }, pidfile: { bytes: 'DIR/master.pid' }, logformat: { bytes: 'L %(uri) [%(myvar)]' }, 'die-on-term': true,
  });
  assert.deepEqual(info.types, {
    worker_id: 'int', numproc: 'int', masterpid: 'int', mule_id: 'int', request_id: 'int', total_requests: 'int', opt: 'dict',
    version: 'bytes', version_info: 'tuple', hostname: 'bytes', started_on: 'int', is_a_reload: 'bool', logsize: 'int', mem: 'tuple',
  });
  assert.equal(info.logsize, 0, 'no logto: logsize() 0');
  assert.ok(info.mem[0]! > 0 && info.mem[1]! > info.mem[0]!, 'mem() is (rss, vsz)');
  if (!haveUwsgi) return;
  const uwsgi = await probe('uwsgi');
  checkSemantics(uwsgi, 'uwsgi');
  assert.deepEqual(normalOpt(tsgi), normalOpt(uwsgi), 'uwsgi.opt');
  assert.deepEqual(info.types, uwsgi.infos[0]!.types, 'types of the values');
});

test('set_logvar: log-format prints the value for that request only; get_logvar; uwsgi.log; a missing name is an AttributeError', async () => {
  const port = await freePort();
  const tsgi = await startTsgi(['--http-socket', `127.0.0.1:${port}`, '--wsgi-file', APP, '-p', '1', '--logformat', 'L %(uri) [%(myvar)]'],
    { env: activatedEnv(sharedVenv()) });
  try {
    const lv = await get<{ myvar: { bytes: string }; unset: null }>(port, '/logvar');
    assert.match(lv.myvar.bytes, /^set-by-\d+$/, 'get_logvar() returns bytes');
    assert.equal(lv.unset, null, 'get_logvar() of an unset name is None');
    await tsgi.waitFor(new RegExp(`^L /logvar \\[${lv.myvar.bytes}\\]$`, 'm'));
    await get(port, '/after');
    await tsgi.waitFor(/^L \/after \[-\]$/m);
    assert.deepEqual(await get(port, '/log'), { log: true });
    await tsgi.waitFor(/^a line from the app via uwsgi\.log$/m);
    const missing = await get<{ error: string; hasattr: boolean }>(port, '/missing');
    assert.equal(missing.error, "uwsgi.nonexistent is not provided by tsgi (its uwsgi module has the part of uWSGI's API listed in docs/python-uwsgi-module.md)");
    assert.equal(missing.hasattr, false, 'hasattr(uwsgi, "cache_get") is False');
  } finally {
    assert.equal((await stopProcess(tsgi)).code, 0, tsgi.output());
  }
});

test('uwsgi.reload() reloads the whole instance gracefully: new workers, no failed request, is_a_reload in the new ones', async () => {
  const dir = tempDir();
  const out = join(dir, 'records.jsonl');
  const port = await freePort();
  const tsgi = await startTsgi(['--http-socket', `127.0.0.1:${port}`, '--wsgi-file', APP, '-p', '2', '--pidfile', join(dir, 'pid')],
    { env: activatedEnv(sharedVenv(), { APIPROBE_OUT: out }) });
  try {
    const before = workerPids(tsgi.pid);
    assert.equal(before.length, 2);
    let stop = false;
    const statuses: number[] = [];
    const load = async (): Promise<void> => {
      while (!stop) statuses.push((await httpRequest(`http://127.0.0.1:${port}/info`)).status);
    };
    const loops = [load(), load()];
    assert.deepEqual(await get(port, '/reload'), { reload: true });
    await tsgi.waitFor(/graceful reload done/);
    stop = true;
    await Promise.all(loops);
    assert.ok(statuses.length > 0 && statuses.every((s) => s === 200), `statuses during the reload: ${statuses.join(' ')}`);
    const after = workerPids(tsgi.pid);
    assert.equal(after.length, 2);
    assert.ok(after.every((p) => !before.includes(p)), `new workers: ${before} -> ${after}`);
    const info = await get<Info>(port, '/info');
    assert.equal(info.is_a_reload, true);
    assert.ok(after.includes(info.pid));
    const recs = records(out);
    assert.equal(recs.filter((r) => r.event === 'import').length, 2, 'the app imported again, once, for the new generation');
    assert.deepEqual(recs.filter((r) => r.event === 'atexit').map((r) => r.pid).sort(), before, 'uwsgi.atexit in each old worker');
    assert.deepEqual(recs.filter((r) => r.event === 'postfork').map((r) => r.pid).sort(), [...before, ...after].sort());
  } finally {
    assert.equal((await stopProcess(tsgi)).code, 0, tsgi.output());
  }
});

test('lazy-apps: the app is imported in each worker (worker_id() is its id there) and post_fork_hook is not called, as in uWSGI', async () => {
  const dir = tempDir();
  const out = join(dir, 'records.jsonl');
  const port = await freePort();
  const tsgi = await startTsgi(['--http-socket', `127.0.0.1:${port}`, '--wsgi-file', APP, '-p', '2', '--lazy-apps'],
    { env: activatedEnv(sharedVenv(), { APIPROBE_OUT: out }) });
  try {
    await get(port, '/info');
  } finally {
    assert.equal((await stopProcess(tsgi)).code, 0, tsgi.output());
  }
  const recs = records(out);
  assert.deepEqual(recs.filter((r) => r.event === 'import').map((r) => r.worker_id).sort(), [1, 2]);
  assert.equal(recs.filter((r) => r.event === 'postfork').length, 0);
  assert.equal(recs.filter((r) => r.event === 'atexit').length, 2);
});

