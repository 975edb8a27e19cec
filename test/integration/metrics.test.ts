/**
 * The metrics subsystem (enable-metrics, metric, metrics-dir; docs/metrics.md), run beside the real uWSGI 2.0.21
 * with the same options: the stats JSON's "metrics" object (names, order, types, oids, the values that do not
 * depend on timing or memory), the metrics-dir files, and the uwsgi.metric_*() answers come from uWSGI.
 * processes = 1, so which worker serves a request is not left to chance.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { tsgiBin } from '../helpers/paths.js';
import { activatedEnv, freePort, httpRequest, sharedVenv, startProcess, startTsgi, stopProcess, tempDir, writeFiles, type RunningProcess } from '../helpers/procs.js';

const haveUwsgi = spawnSync('uwsgi', ['--plugin', 'python3', '--version']).status === 0;

const APP = `import uwsgi
def application(env, sr):
    out = b'ok'
    if env['PATH_INFO'] == '/api':
        r = [uwsgi.metric_get('foo'), uwsgi.metric_set('foo', 10), uwsgi.metric_inc('foo'), uwsgi.metric_inc('foo', 5),
             uwsgi.metric_dec('foo', 2), uwsgi.metric_mul('foo', 3), uwsgi.metric_div('foo', 2), uwsgi.metric_get('foo'),
             uwsgi.metric_get('nonexist'), uwsgi.metric_set('nonexist', 1), uwsgi.metric_set('worker.1.requests', 5),
             uwsgi.metric_inc('al'), uwsgi.metric_get('g1'), uwsgi.metric_div('foo', 0), uwsgi.metric_dec('g1'), uwsgi.metric_get('g1'),
             uwsgi.metric_set('a1', -4), uwsgi.metric_div('a1', 3), uwsgi.metric_get('a1')]
        out = repr(r).encode()
    sr('200 OK', [('Content-Type', 'text/plain')])
    return [out]
`;

/** A mule shares the metrics too. */
const MULE = `import time, uwsgi
uwsgi.metric_inc('m1', 100)
while True:
    time.sleep(1)
`;

const METRICS = ['name=m1', 'name=foo,type=counter,initial_value=3', 'name=g1,type=gauge,initial_value=7', 'name=a1,type=absolute', 'name=al,type=alias,alias=worker.1.requests'];

type MetricsJson = Record<string, { type: number; oid: string; value: number }>;

function readStats(port: number): Promise<{ metrics?: MetricsJson }> {
  return new Promise((resolve, reject) => {
    const c = net.connect(port, '127.0.0.1');
    let data = '';
    c.on('data', (d) => (data += d));
    c.on('end', () => {
      try {
        resolve(JSON.parse(data) as { metrics?: MetricsJson });
      } catch (err) {
        reject(err);
      }
    });
    c.on('error', reject);
  });
}

async function until<T>(what: string, f: () => Promise<T | undefined>, timeoutMs = 20_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

function cleanEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, PYTHONHOME: '' };
  for (const k of Object.keys(env)) if (k.startsWith('UWSGI_') || k.startsWith('TSGI_')) delete env[k];
  return env;
}

interface Side {
  api: string[];
  stats: MetricsJson;
  files: Map<string, Buffer>;
}

describe('metrics, compared with the real uWSGI', { skip: haveUwsgi ? false : 'uwsgi with the python3 plugin is not installed' }, () => {
  let uwsgi: RunningProcess | undefined;
  let tsgi: RunningProcess | undefined;
  const sides: Record<'uwsgi' | 'tsgi', Side> = {} as Record<'uwsgi' | 'tsgi', Side>;

  before(async () => {
    const dir = tempDir();
    writeFiles(dir, { 'app.py': APP, 'mule.py': MULE });
    const run = async (which: 'uwsgi' | 'tsgi'): Promise<void> => {
      const port = await freePort();
      const statsPort = await freePort();
      const mdir = join(dir, `md-${which}`);
      mkdirSync(mdir);
      const args = ['--http-socket', `127.0.0.1:${port}`, '--stats', `127.0.0.1:${statsPort}`, '--master', '--processes', '1', '--enable-metrics',
        '--metrics-dir', mdir, ...METRICS.flatMap((m) => ['--metric', m]), '--wsgi-file', join(dir, 'app.py'), `--mule=${join(dir, 'mule.py')}`];
      if (which === 'uwsgi') {
        uwsgi = startProcess('uwsgi', ['--plugin', 'python3', '--die-on-term', ...args], { env: cleanEnv(), cwd: dir });
        await uwsgi.waitFor(/spawned uWSGI worker 1/);
      } else {
        tsgi = await startTsgi(['--plugin', 'python3', ...args], { env: activatedEnv(sharedVenv()), cwd: dir });
      }
      const api: string[] = [];
      await until('the server', async () => (await httpRequest(`http://127.0.0.1:${port}/`).then((r) => r.status === 200, () => false)) || undefined);
      for (let i = 0; i < 2; i++) api.push((await httpRequest(`http://127.0.0.1:${port}/api`)).body.toString());
      // The master collects once a second: wait until the 3 requests show, in the stats and in metrics-dir.
      const stats = await until(`${which}'s metrics`, async () => {
        const m = (await readStats(statsPort)).metrics;
        if (m?.['worker.1.requests']?.value !== 3 || m.m1?.value !== 100) return undefined;
        const file = readFileSync(join(mdir, 'worker.1.requests'));
        return file.subarray(0, 2).toString() === '3\n' ? m : undefined;
      });
      const files = new Map(readdirSync(mdir).map((f) => [f, readFileSync(join(mdir, f))]));
      sides[which] = { api, stats, files };
    };
    await Promise.all([run('uwsgi'), run('tsgi')]);
  });

  after(async () => {
    await Promise.all([uwsgi && stopProcess(uwsgi, 'SIGINT'), tsgi && stopProcess(tsgi)]);
  });

  test('uwsgi.metric_get/set/inc/dec/mul/div answer as uWSGI does, and the user metrics are shared', () => {
    assert.equal(sides.uwsgi.api[0], '[3, True, True, True, True, True, True, 21, 0, None, None, None, 7, None, True, 6, True, True, -1]');
    assert.deepEqual(sides.tsgi.api, sides.uwsgi.api);
  });

  test("the stats JSON's metrics: the same names in the same order, types and oids", () => {
    const shape = (m: MetricsJson): Array<[string, number, string]> => Object.entries(m).map(([k, v]) => [k, v.type, v.oid]);
    assert.ok(Object.keys(sides.uwsgi.stats).length > 40);
    assert.deepEqual(shape(sides.tsgi.stats), shape(sides.uwsgi.stats));
  });

  test('the stats values that do not depend on timing or memory are uWSGI\'s', () => {
    const names = ['worker.0.requests', 'worker.1.requests', 'worker.1.delta_requests', 'worker.1.respawns', 'worker.1.core.0.requests',
      'worker.1.failed_requests', 'core.busy_workers', 'core.overloaded', 'm1', 'foo', 'g1', 'a1', 'al'];
    const values = (m: MetricsJson): Record<string, number | undefined> => Object.fromEntries(names.map((n) => [n, m[n]?.value]));
    assert.deepEqual(values(sides.tsgi.stats), values(sides.uwsgi.stats));
    assert.equal(sides.uwsgi.stats.foo!.value, 21);
    // Collected from the same counters: tx and the response time are the app's own, so they only have to be there.
    assert.ok(sides.tsgi.stats['core.total_tx']!.value > 0 && sides.tsgi.stats['worker.1.total_tx']!.value === sides.tsgi.stats['core.total_tx']!.value);
  });

  test("metrics-dir: one page-sized file per metric, uWSGI's names and format", () => {
    assert.deepEqual([...sides.tsgi.files.keys()].sort(), [...sides.uwsgi.files.keys()].sort());
    for (const [name, b] of sides.tsgi.files) {
      assert.equal(b.length, 4096, name);
      assert.match(b.toString('latin1'), /^(-?\d+\n)?\0*$/, name);
    }
    for (const name of ['worker.0.requests', 'worker.1.requests', 'worker.1.core.0.requests', 'foo', 'g1', 'a1', 'al']) {
      assert.deepEqual(sides.tsgi.files.get(name), sides.uwsgi.files.get(name), name);
    }
  });
});

describe('metrics-dir-restore, compared with the real uWSGI', { skip: haveUwsgi ? false : 'uwsgi with the python3 plugin is not installed' }, () => {
  const seen: Record<string, Record<string, number | undefined>> = {};

  before(async () => {
    const dir = tempDir();
    writeFiles(dir, { 'app.py': APP });
    const names = ['worker.0.requests', 'worker.1.requests', 'worker.1.respawns', 'worker.1.core.0.requests', 'foo', 'g1'];
    const run = async (which: 'uwsgi' | 'tsgi', mdir: string, restore: boolean, requests: number, total: number): Promise<Record<string, number | undefined>> => {
      const port = await freePort();
      const statsPort = await freePort();
      const args = ['--http-socket', `127.0.0.1:${port}`, '--stats', `127.0.0.1:${statsPort}`, '--master', '--processes', '1',
        '--metrics-dir', mdir, ...(restore ? ['--metrics-dir-restore'] : []), ...METRICS.flatMap((m) => ['--metric', m]), '--wsgi-file', join(dir, 'app.py')];
      const p = which === 'uwsgi'
        ? startProcess('uwsgi', ['--plugin', 'python3', '--die-on-term', ...args], { env: cleanEnv(), cwd: dir })
        : await startTsgi(['--plugin', 'python3', ...args], { env: activatedEnv(sharedVenv()), cwd: dir });
      try {
        if (which === 'uwsgi') await p.waitFor(/spawned uWSGI worker 1/);
        await until('the server', async () => (await httpRequest(`http://127.0.0.1:${port}/`).then((r) => r.status === 200, () => false)) || undefined);
        for (let i = 1; i < requests; i++) await httpRequest(`http://127.0.0.1:${port}/`);
        const m = await until(`${which}'s metrics`, async () => {
          const m = (await readStats(statsPort)).metrics;
          if (m?.['worker.0.requests']?.value !== total) return undefined;
          return readFileSync(join(mdir, 'worker.0.requests')).subarray(0, String(total).length + 1).toString() === `${total}\n` ? m : undefined;
        });
        return Object.fromEntries(names.map((n) => [n, m[n]?.value]));
      } finally {
        await stopProcess(p, which === 'uwsgi' ? 'SIGINT' : 'SIGTERM');
      }
    };
    await Promise.all((['uwsgi', 'tsgi'] as const).map(async (which) => {
      const mdir = join(dir, `md-${which}`);
      mkdirSync(mdir);
      await run(which, mdir, false, 3, 3);
      // The second run counts on from the files: 3 + 2 requests.
      seen[which] = await run(which, mdir, true, 2, 5);
    }));
  });

  test('the collected metrics count on from their files, the user metrics start from initial_value, as in uWSGI', () => {
    assert.deepEqual(seen.uwsgi, { 'worker.0.requests': 5, 'worker.1.requests': 5, 'worker.1.respawns': 2, 'worker.1.core.0.requests': 5, foo: 3, g1: 7 });
    assert.deepEqual(seen.tsgi, seen.uwsgi);
  });
});

function tsgiConfig(ini: string, extra: Record<string, string> = {}): { status: number | null; stderr: string } {
  const dir = tempDir();
  writeFiles(dir, { 'app.ini': ini, ...extra });
  const r = spawnSync(tsgiBin, ['--ini', join(dir, 'app.ini')], { encoding: 'utf8', cwd: dir, env: { PATH: process.env.PATH, HOME: process.env.HOME } });
  return { status: r.status, stderr: r.stderr.replaceAll(join(dir, 'app.ini'), 'app.ini').replaceAll(dir, 'DIR') };
}

test('a bad metric is refused with one line naming file:line, option and key; what tsgi lacks says so', () => {
  const head = '[uwsgi]\nsocket = :3031\nmodule = wsgi\n';
  const cases: Array<[string, string]> = [
    ['metric = name=x,bogus=1', "tsgi: app.ini:4: option 'metric': 'name=x,bogus=1': unknown key 'bogus' (name, type, initial_value, oid, alias, freq)"],
    ['metric = name=x,type=meter', "tsgi: app.ini:4: option 'metric': 'name=x,type=meter': type 'meter' is not counter, gauge, absolute or alias"],
    ['metric = type=gauge', "tsgi: app.ini:4: option 'metric': 'type=gauge': a metric needs a name"],
    ['metric = name=a b', "tsgi: app.ini:4: option 'metric': 'name=a b': invalid metric name 'a b' (letters, digits, '.', '-', '_')"],
    ['metric = name=x,initial_value=ten', "tsgi: app.ini:4: option 'metric': 'name=x,initial_value=ten': initial_value 'ten' is not an integer"],
    ['metric = name=x,collector=file,arg1=/tmp/f', "tsgi: app.ini:4: option 'metric': 'name=x,collector=file,arg1=/tmp/f': key 'collector' (metric collectors, children, reset) is not implemented in tsgi"],
    ['metrics-dir = /tmp', "tsgi: app.ini:4: option 'metrics-dir': has no effect without enable-metrics (or a metric)"],
    ['enable-metrics = true\nmetrics-dir = nowhere', "tsgi: app.ini:5: option 'metrics-dir': 'DIR/nowhere' is not a directory"],
    ['metric-alarm = key=x', "tsgi: app.ini:4: option 'metric-alarm': is a uWSGI option that tsgi does not implement yet"],
  ];
  for (const [line, expected] of cases) {
    const r = tsgiConfig(head + line + '\n');
    assert.equal(r.status, 1, line);
    assert.equal(r.stderr, expected + '\n', line);
  }
});

test('a reload cannot change the metric list (it is laid out once): refused with a line, the old metrics keep serving', async () => {
  const dir = tempDir();
  const port = await freePort();
  const statsPort = await freePort();
  const ini = (extra: string): string => `[uwsgi]\nhttp-socket = 127.0.0.1:${port}\nstats = 127.0.0.1:${statsPort}\nmaster = true\nprocesses = 1\nwsgi-file = app.py\nmetric = name=foo\n${extra}`;
  writeFiles(dir, { 'app.py': APP, 'app.ini': ini('') });
  const tsgi = await startTsgi(['--ini', join(dir, 'app.ini')], { env: activatedEnv(sharedVenv()), cwd: dir });
  try {
    writeFiles(dir, { 'app.ini': ini('metric = name=bar\n') });
    tsgi.kill('SIGHUP');
    await tsgi.waitFor(/reload refused, still serving with the previous configuration: metrics changes \(enable-metrics, metric, metrics-dir\) need a restart: a reload keeps the metrics/);
    writeFiles(dir, { 'app.ini': ini('').replace('processes = 1', 'processes = 2') });
    tsgi.kill('SIGHUP');
    await tsgi.waitFor(/reload refused, still serving with the previous configuration: with metrics, processes and threads changes need a restart/);
    const m = (await readStats(statsPort)).metrics!;
    assert.ok('foo' in m && !('bar' in m) && !('worker.2.requests' in m));
  } finally {
    await stopProcess(tsgi);
  }
});

test('without metrics, uwsgi.metric_* exist and answer as uWSGI\'s do (0, None), and the stats have no metrics object', { skip: haveUwsgi ? false : 'uwsgi with the python3 plugin is not installed' }, async () => {
  const dir = tempDir();
  writeFiles(dir, { 'app.py': APP });
  const answers: Record<string, { api: string; keys: string[] }> = {};
  await Promise.all((['uwsgi', 'tsgi'] as const).map(async (which) => {
    const port = await freePort();
    const statsPort = await freePort();
    const args = ['--http-socket', `127.0.0.1:${port}`, '--stats', `127.0.0.1:${statsPort}`, '--master', '--processes', '1', '--wsgi-file', join(dir, 'app.py')];
    const p = which === 'uwsgi'
      ? startProcess('uwsgi', ['--plugin', 'python3', '--die-on-term', ...args], { env: cleanEnv(), cwd: dir })
      : await startTsgi(['--plugin', 'python3', ...args], { env: activatedEnv(sharedVenv()), cwd: dir });
    try {
      if (which === 'uwsgi') await p.waitFor(/spawned uWSGI worker 1/);
      const api = await until('the server', async () => httpRequest(`http://127.0.0.1:${port}/api`).then((r) => (r.status === 200 ? r.body.toString() : undefined), () => undefined));
      answers[which] = { api, keys: Object.keys(await readStats(statsPort)) };
    } finally {
      await stopProcess(p, which === 'uwsgi' ? 'SIGINT' : 'SIGTERM');
    }
  }));
  assert.equal(answers.uwsgi!.api, '[0, None, None, None, None, None, None, 0, 0, None, None, None, 0, None, None, 0, None, None, 0]');
  assert.equal(answers.tsgi!.api, answers.uwsgi!.api);
  assert.ok(!answers.uwsgi!.keys.includes('metrics') && !answers.tsgi!.keys.includes('metrics'));
});

test('an alias of a metric that does not exist is refused at start with one line naming file:line and option', async () => {
  const port = await freePort();
  const r = tsgiConfig(`[uwsgi]\nhttp-socket = 127.0.0.1:${port}\nwsgi-file = app.py\nmetric = name=al,type=alias,alias=worker.3.requests\n`, { 'app.py': APP });
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stderr, /^tsgi: app\.ini:4: option 'metric': 'name=al,type=alias,alias=worker\.3\.requests': unable to find metric 'worker\.3\.requests' \(a built-in one, or a user metric given before\)\n$/m);
});
