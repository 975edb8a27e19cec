/**
 * The caches (docs/cache.md): cache2/cache, the uwsgi.cache_* API, router_cache's actions, load-file-in-cache.
 * Where uWSGI has the behaviour, the same ini runs under the real uWSGI 2.0.21 (Debian's, python3 and router_cache
 * plugins) and the answers are compared; tsgi's own guarantees (sharing across workers and their deaths, expiry,
 * the store file, bad values) are checked on tsgi.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { join } from 'node:path';
import { repoRoot, tsgiBin } from '../helpers/paths.js';
import {
  activatedEnv, freePort, httpRequest, sharedVenv, startProcess, startTsgi, stopProcess, tempDir, workerPids, type RunningProcess,
} from '../helpers/procs.js';

const APP = join(repoRoot, 'test/fixtures/apps/cache_app.py');
const haveUwsgi = spawnSync('uwsgi', ['--plugin', 'python3,router_cache', '--version']).status === 0;
const NO_UWSGI = 'uwsgi with the python3 and router_cache plugins is not installed (apt-get install uwsgi uwsgi-plugin-python3)';

function cleanEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, PYTHONHOME: '' };
  for (const k of Object.keys(env)) if (k.startsWith('UWSGI_') || k.startsWith('TSGI_')) delete env[k];
  return env;
}

const CACHES = `
cache2 = name=main,items=10,blocksize=32,keysize=32
cache2 = name=other,items=5
cache2 = name=small,items=3,blocksize=8
cache2 = name=lru,items=3,blocksize=8,purge_lru=1
cache2 = name=bitmap,items=5,blocks=6,blocksize=10,bitmap=1
`;

/** Writes an ini for `server` (same options for both) and starts it; resolves once its workers serve. */
async function start(server: 'tsgi' | 'uwsgi', body: string, opts: { dir?: string; processes?: number } = {}): Promise<{ p: RunningProcess; port: number; dir: string }> {
  const dir = opts.dir ?? tempDir();
  const port = await freePort();
  const ini = join(dir, `${server}.ini`);
  writeFileSync(ini, `[uwsgi]\nhttp-socket = 127.0.0.1:${port}\nplugin = python3,router_cache\nwsgi-file = ${APP}\nmaster = true\n` +
    `processes = ${opts.processes ?? 2}\ndie-on-term = true\n${body}\n`);
  let p: RunningProcess;
  if (server === 'tsgi') {
    p = await startTsgi(['--ini', ini], { env: activatedEnv(sharedVenv()), cwd: dir });
  } else {
    p = startProcess('uwsgi', ['--ini', ini], { env: cleanEnv(), cwd: dir });
    await p.waitFor(new RegExp(`spawned uWSGI worker ${opts.processes ?? 2}`));
  }
  return { p, port, dir };
}

async function text(port: number, path: string): Promise<string> {
  const r = await httpRequest(`http://127.0.0.1:${port}${path}`);
  assert.equal(r.status, 200, r.body.toString());
  return r.body.toString();
}

interface Got { pid: number; value: string | null; exists: boolean | null; num: number }

async function got(port: number, key: string, sleepS?: number): Promise<Got> {
  return JSON.parse(await text(port, `/get?k=${encodeURIComponent(key)}${sleepS ? `&sleep=${sleepS}` : ''}`)) as Got;
}

/** Asks until every worker pid in `pids` has answered for `key`; returns their answers. */
async function fromEvery(port: number, key: string, pids: number[]): Promise<Map<number, Got>> {
  const seen = new Map<number, Got>();
  // an idle worker takes the next request: concurrent slow ones reach every worker
  for (let i = 0; i < 50 && pids.some((p) => !seen.has(p)); i++) {
    for (const g of await Promise.all(Array.from({ length: pids.length + 1 }, () => got(port, key, 0.05)))) seen.set(g.pid, g);
  }
  for (const p of pids) assert.ok(seen.has(p), `worker ${p} never answered (saw ${[...seen.keys()].join(', ')})`);
  return seen;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('the uwsgi.cache_* API answers as uWSGI 2.0.21 does: values, types, limits, full caches, LRU, bitmap, errors', async (t) => {
  const tsgi = await start('tsgi', CACHES);
  let tsgiApi: string;
  let tsgiFull: string;
  try {
    tsgiApi = await text(tsgi.port, '/api');
    tsgiFull = await text(tsgi.port, '/full');
    await sleep(100);
    assert.match(tsgi.p.output(), /\*\*\* DANGER cache "small" is FULL !!! \*\*\*/);
    assert.match(tsgi.p.output(), /LRU item will be purged from cache "lru"/);
  } finally {
    await stopProcess(tsgi.p);
  }
  // tsgi's own expectations, so the test means something without uWSGI too
  const api = tsgiApi.split('\n');
  assert.deepEqual(api.slice(0, 11), ['None', 'True', 'None', "b'x1'", 'True', "b'x3'", 'True', 'None', 'True', 'None', 'None']);
  assert.ok(api.includes("EXC TypeError: cache_get() takes at least 1 argument (0 given)"), tsgiApi);
  assert.ok(tsgiFull.startsWith('True\nTrue\nNone\nNone\nNone\n'), `items=3 holds 2 keys: ${tsgiFull}`);
  if (!haveUwsgi) return t.skip(NO_UWSGI);
  const uwsgi = await start('uwsgi', CACHES);
  try {
    assert.equal(tsgiApi, await text(uwsgi.port, '/api'));
    assert.equal(tsgiFull, await text(uwsgi.port, '/full'));
  } finally {
    await stopProcess(uwsgi.p);
  }
});

test('one cache for every worker: a value set by one is read by the other, and survives a killed worker; increments from both add up', async () => {
  const { p, port } = await start('tsgi', CACHES);
  try {
    assert.equal(await text(port, '/set?k=shared&v=hello'), 'True');
    const pids = workerPids(p.pid);
    assert.equal(pids.length, 2, `two workers: ${pids.join(',')}`);
    for (const g of (await fromEvery(port, 'shared', pids)).values()) assert.equal(g.value, 'hello');
    // 100 increments, concurrently, spread over both workers
    await Promise.all(Array.from({ length: 100 }, () => text(port, '/inc?k=counter')));
    assert.equal((await got(port, 'counter')).num, 100);
    // a worker killed outright: the cache is not in it
    process.kill(pids[0]!, 'SIGKILL');
    await p.waitFor(new RegExp(`\\(pid: ${pids[0]}\\) killed by SIGKILL`), 30_000);
    let now: number[] = [];
    for (let i = 0; i < 100 && (now.length !== 2 || now.includes(pids[0]!)); i++) {
      await sleep(100);
      now = workerPids(p.pid);
    }
    for (const g of (await fromEvery(port, 'shared', now)).values()) assert.equal(g.value, 'hello');
    assert.equal((await got(port, 'counter')).num, 100);
    // a graceful reload keeps the caches (tsgi's master stays; docs/cache.md)
    process.kill(p.pid, 'SIGHUP');
    await p.waitFor(/graceful reload done/, 30_000);
    await sleep(300);
    assert.equal((await got(port, 'shared')).value, 'hello');
  } finally {
    await stopProcess(p);
  }
});

test('expiry: an expired item is never returned (tsgi), and is gone under uWSGI once its sweeper ran', async (t) => {
  const { p, port } = await start('tsgi', CACHES);
  try {
    // expiry is in whole seconds (as in uWSGI): 2 s from now is at least 1 s away
    assert.equal(await text(port, '/set?k=soon&v=1&e=2'), 'True');
    assert.equal(await text(port, '/set?k=later&v=2&e=100'), 'True');
    assert.equal((await got(port, 'soon')).value, '1');
    await sleep(3100);
    const g = await got(port, 'soon');
    assert.deepEqual([g.value, g.exists], [null, null]);
    assert.equal((await got(port, 'later')).value, '2');
    // its slot is free again: set does not say "exists"
    assert.equal(await text(port, '/set?k=soon&v=3'), 'True');
  } finally {
    await stopProcess(p);
  }
  if (!haveUwsgi) return t.skip(NO_UWSGI);
  const u = await start('uwsgi', CACHES);
  try {
    assert.equal(await text(u.port, '/set?k=soon&v=1&e=1'), 'True');
    await sleep(5200); // 1 s, and uWSGI's sweeper runs every 3 s
    const g = await got(u.port, 'soon');
    assert.deepEqual([g.value, g.exists], [null, null]);
  } finally {
    await stopProcess(u.p);
  }
});

test('store=FILE keeps the cache across a restart; a store of another geometry is one line and exit 1', async () => {
  const dir = tempDir();
  const store = join(dir, 'c.store');
  const conf = `cache2 = name=main,items=10,blocksize=64,store=${store},store_sync=1`;
  let run = await start('tsgi', conf, { dir });
  try {
    assert.equal(await text(run.port, '/set?k=kept&v=across'), 'True');
  } finally {
    await stopProcess(run.p);
  }
  assert.ok(existsSync(store));
  run = await start('tsgi', conf, { dir });
  try {
    assert.equal((await got(run.port, 'kept')).value, 'across');
    assert.match(run.p.output(), /recovered from its store file/);
  } finally {
    await stopProcess(run.p);
  }
  const ini = join(dir, 'other.ini');
  writeFileSync(ini, `[uwsgi]\nhttp-socket = 127.0.0.1:${await freePort()}\nwsgi-file = ${APP}\ncache2 = name=main,items=20,blocksize=64,store=${store}\n`);
  const r = spawnSync(tsgiBin, ['--ini', ini], { encoding: 'utf8', env: activatedEnv(sharedVenv()), cwd: dir, timeout: 30_000 });
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stderr, new RegExp(`other\\.ini:4.*store file .*c\\.store does not match cache "main"`));
  // store_delete=1: the mismatched file is replaced by an empty cache
  writeFileSync(ini, `[uwsgi]\nhttp-socket = 127.0.0.1:0\nwsgi-file = ${APP}\n`);
  run = await start('tsgi', `cache2 = name=main,items=20,blocksize=64,store=${store},store_delete=1`, { dir });
  try {
    assert.equal((await got(run.port, 'kept')).value, null);
  } finally {
    await stopProcess(run.p);
  }
});

const ROUTES = `
cache2 = name=c,items=10
load-file-in-cache = foo.html
add-cache-item = c greeting=hello
route = ^/cached/(.*) cache:key=$1,name=c
route = ^/typed/(.*) cache:key=$1,name=c,mime=1
route = ^/lf cache:key=foo.html
route = ^/stored/ cachestore:key=\${REQUEST_URI},name=c
route = ^/stored/ cache:key=\${REQUEST_URI},name=c
route-run = cacheinc:key=hits,name=c
route-run = cachevar:key=hits,name=c,as_num=1,var=HITS
route-if = equal:\${PATH_INFO};/hits addheader:X-Hits: \${HITS}
`;

test("routing: cache serves a stored value, cachestore stores the app's response, cacheinc/cachevar count; load-file-in-cache and add-cache-item", async (t) => {
  const paths = ['/cached/greeting', '/cached/nothing', '/typed/x.json', '/lf', '/stored/a', '/stored/a', '/hits'];
  const runOne = async (server: 'tsgi' | 'uwsgi'): Promise<string[]> => {
    const dir = tempDir();
    writeFileSync(join(dir, 'foo.html'), '<h1>foo</h1>\n');
    const { p, port } = await start(server, ROUTES, { dir, processes: 1 });
    const out: string[] = [];
    try {
      await text(port, '/set?k=x.json&v={}');
      for (const path of paths) {
        const r = await httpRequest(`http://127.0.0.1:${port}${path}`);
        out.push(`${path} ${r.status} ${r.headers['content-type']} ${r.headers['x-hits'] ?? '-'} ${r.body.toString()}`);
      }
    } finally {
      await stopProcess(p);
    }
    return out;
  };
  const mine = await runOne('tsgi');
  assert.deepEqual(mine.slice(0, 4), [
    '/cached/greeting 200 text/html - hello', '/cached/nothing 200 text/plain - app /cached/nothing',
    '/typed/x.json 200 application/json - {}', '/lf 200 text/html - <h1>foo</h1>\n',
  ]);
  assert.equal(mine[4], '/stored/a 200 text/plain - app /stored/a');
  assert.equal(mine[5], '/stored/a 200 text/html - app /stored/a', 'the second is served from the cache');
  if (!haveUwsgi) return t.skip(NO_UWSGI);
  const theirs = await runOne('uwsgi');
  // mime=1: uWSGI 2.0.21 answered with the default type here (its mime table was empty); tsgi reads /etc/mime.types
  assert.equal(theirs[2], '/typed/x.json 200 text/html - {}');
  assert.deepEqual([...mine.slice(0, 2), ...mine.slice(3)], [...theirs.slice(0, 2), ...theirs.slice(3)]);
});

test("the old-style cache (cache = N, cache-blocksize) is the default one, as in uWSGI; add-cache-item fills it", async (t) => {
  const conf = 'cache = 3\ncache-blocksize = 16\nadd-cache-item = default pre=set at start';
  const runOne = async (server: 'tsgi' | 'uwsgi'): Promise<string[]> => {
    const { p, port } = await start(server, conf, { processes: 1 });
    try {
      return [
        (await got(port, 'pre')).value ?? 'null',
        await text(port, `/set?k=a&v=${'x'.repeat(16)}`),
        await text(port, `/set?k=b&v=${'x'.repeat(17)}`),
        await text(port, '/set?k=c&v=1'),
        String((await got(port, 'a')).value),
      ];
    } finally {
      await stopProcess(p);
    }
  };
  const mine = await runOne('tsgi');
  assert.deepEqual(mine, ['set at start', 'True', 'None', 'None', 'x'.repeat(16)]);
  if (!haveUwsgi) return t.skip(NO_UWSGI);
  assert.deepEqual(mine, await runOne('uwsgi'));
});

test('the stats server lists the caches as uWSGI does ("caches")', async () => {
  const statsPort = await freePort();
  const { p, port } = await start('tsgi', `${CACHES}stats = 127.0.0.1:${statsPort}`);
  try {
    await text(port, '/set?k=one&v=1');
    await got(port, 'one');
    await got(port, 'two');
    const doc = await new Promise<string>((resolve, reject) => {
      let s = '';
      const c = createConnection(statsPort, '127.0.0.1');
      c.on('data', (d) => (s += d.toString()));
      c.on('end', () => resolve(s));
      c.on('error', reject);
    });
    const caches = (JSON.parse(doc) as { caches: Array<Record<string, number | string>> }).caches;
    assert.deepEqual(caches.map((c) => c.name), ['main', 'other', 'small', 'lru', 'bitmap']);
    assert.equal(caches[0]!.items, 1);
    assert.equal(caches[0]!.max_items, 10);
    assert.ok(Number(caches[0]!.hits) >= 1 && Number(caches[0]!.miss) >= 1, JSON.stringify(caches[0]));
  } finally {
    await stopProcess(p);
  }
});

test('bad cache options are one line naming the file, line and option, and exit 1', () => {
  const dir = tempDir();
  writeFileSync(join(dir, 'app.js'), 'export default { fetch() { return new Response("x"); } };\n');
  const cases: Array<[string, RegExp]> = [
    ['cache2 = name=a,items=10,bogus=1', /bad\.ini:3: option 'cache2': unknown key 'bogus'/],
    ['cache2 = name=a', /bad\.ini:3: option 'cache2': cache "a" needs the number of items/],
    ['cache2 = items=10', /bad\.ini:3: option 'cache2': a cache needs a name/],
    ['cache2 = name=a,items=ten', /bad\.ini:3: option 'cache2': items 'ten' is not a number/],
    ['cache2 = name=a,items=10,blocks=5', /bad\.ini:3: option 'cache2': blocks \(5\) must be at least items \(10\)/],
    ['cache2 = name=a,items=10,nodes=127.0.0.1:4000', /bad\.ini:3: option 'cache2': key 'nodes': .*not implemented/],
    ['cache2 = name=a,items=10,hash=murmur2', /bad\.ini:3: option 'cache2': hash 'murmur2': tsgi implements djb33x/],
    ['cache = 0', /bad\.ini:3: option 'cache'/],
    ['cache-blocksize = 100', /bad\.ini:3: option 'cache-blocksize': .*no/],
    ['cache2 = name=a,items=10\nload-file-in-cache = /nonexistent/file', /bad\.ini:4: option 'load-file-in-cache': cannot read \/nonexistent\/file/],
    ['cache2 = name=a,items=10\nadd-cache-item = k=two words', /bad\.ini:4: option 'add-cache-item': 'k=two' \(before the space\) is not a cache/],
    ['cache-udp-node = 127.0.0.1:4000', /bad\.ini:3: option 'cache-udp-node': is a uWSGI option that tsgi does not implement yet/],
    ['cache2 = name=a,items=10\nroute = ^/ cache:key=x,name=b', /bad\.ini:4 route = .*no cache named "b"/],
    ['route = ^/ cache:name=a', /bad\.ini:3: option 'route': action 'cache' needs key=KEY/],
    ['route = ^/ cache:key=a', /bad\.ini:3 route = .*needs a cache, and there is none/],
    ['route = ^/ cache-continue:key=a', /router_cache/],
  ];
  for (const [lines, re] of cases) {
    const ini = join(dir, 'bad.ini');
    writeFileSync(ini, `[uwsgi]\nhttp-socket = 127.0.0.1:0\n${lines}\nwsgi-file = ${APP}\n`);
    const r = spawnSync(tsgiBin, ['--ini', ini], { encoding: 'utf8', env: activatedEnv(sharedVenv()), cwd: dir, timeout: 30_000 });
    assert.equal(r.status, 1, `${lines}: ${r.stderr}`);
    assert.equal(r.stderr.trim().split('\n').length, 1, `${lines}: one line: ${r.stderr}`);
    assert.match(r.stderr, re, lines);
  }
  // a Node app: the caches are for Python apps
  const ini = join(dir, 'node.ini');
  writeFileSync(ini, `[uwsgi]\nhttp-socket = 127.0.0.1:0\nwsgi-file = app.js\ncache2 = name=a,items=10\n`);
  const r = spawnSync(tsgiBin, ['--ini', ini], { encoding: 'utf8', env: cleanEnv(), cwd: dir, timeout: 30_000 });
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stderr, /node\.ini:4 cache2: the caches .* are implemented for Python apps only/);
});
