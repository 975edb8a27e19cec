/**
 * proxy_cache / uwsgi_cache next to the real nginx (Debian's 1.22.1) on the same configuration: each side
 * has a backend of its own (a Node HTTP server counting the requests it gets, so both sides start from the
 * same state) and a cache directory of its own. Compared: the $upstream_cache_status sequences (MISS, HIT,
 * EXPIRED, STALE, BYPASS), the bodies, how often each backend was asked, nginx's rules for what is stored
 * (Cache-Control, Expires, X-Accel-Expires, Set-Cookie, Vary), HEAD sent as GET, ranges from a stored
 * response, and the files' names on disk (md5 of the key under the levels). tsgi-proxy alone: the cache
 * survives `-s reload`, two workers share it; uwsgi_cache in front of the real uWSGI, next to nginx.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { freePort, get, have, haveUwsgiPython, proxySync, startProxy, startSideBySide, startUwsgi, tempDir, waitFor, type Proc, type RawResponse } from './helpers.js';

const withNginx = have('/usr/sbin/nginx') && process.getuid?.() === 0;
const nginxSkip = withNginx ? false : 'needs /usr/sbin/nginx and root (nginx workers run as root here)';

interface Backend {
  port: number;
  /** Requests per path (query included), and the methods seen. */
  hits: Map<string, number>;
  methods: string[];
  /** Paths answered 500 from now on (use_stale), or by closing the connection ('drop'). */
  failing: Map<string, 500 | 'drop'>;
  close(): Promise<void>;
}

/** What each test path answers: headers that decide cacheability, and a body naming the request count. */
function answer(path: string, n: number): { status: number; headers: Record<string, string | string[]>; body: string } {
  const p = path.replace(/\?.*$/, '');
  const body = `${path} #${n}\n`;
  const h: Record<string, string | string[]> = { 'Content-Type': 'text/plain' };
  switch (p.replace(/^\/[a-z0-9]+(?=\/)/, '')) {
    case '/cookie': h['Set-Cookie'] = 'a=b'; break;
    case '/nocache': h['Cache-Control'] = 'no-cache'; break;
    case '/nostore': h['Cache-Control'] = 'no-store'; break;
    case '/private': h['Cache-Control'] = 'private, max-age=60'; break;
    case '/maxage1': h['Cache-Control'] = 'max-age=1'; break;
    case '/maxage0': h['Cache-Control'] = 'max-age=0'; break;
    case '/smaxage': h['Cache-Control'] = 'max-age=0, s-maxage=60'; break;
    case '/xae0': h['X-Accel-Expires'] = '0'; h['Cache-Control'] = 'max-age=60'; break;
    case '/xae60': h['X-Accel-Expires'] = '60'; h['Cache-Control'] = 'no-cache'; break;
    case '/expired': h.Expires = 'Thu, 01 Jan 1970 00:00:01 GMT'; break;
    case '/expires': h.Expires = new Date(Date.now() + 3600000).toUTCString(); break;
    case '/varystar': h.Vary = '*'; break;
    case '/vary': h.Vary = 'Accept-Language'; break;
    case '/notfound': return { status: 404, headers: h, body };
    case '/ranges':
      h['Accept-Ranges'] = 'bytes';
      return { status: 200, headers: h, body: p === '/big/ranges' ? body.padEnd(2000, '.') : '0123456789abcdefghij' };
    case '/accelcs': return { status: 200, headers: { 'Content-Type': 'text/html; charset=B', 'X-Accel-Charset': 'A', 'Accept-Ranges': 'bytes' }, body: 'XaXbXcXdXe' };
  }
  return { status: 200, headers: h, body };
}

async function backend(): Promise<Backend> {
  const hits = new Map<string, number>();
  const methods: string[] = [];
  const failing = new Map<string, 500 | 'drop'>();
  const srv = http.createServer((req, res) => {
    const url = req.url ?? '/';
    const n = (hits.get(url) ?? 0) + 1;
    hits.set(url, n);
    methods.push(`${req.method} ${url}`);
    const f = failing.get(url.replace(/\?.*$/, ''));
    if (f === 'drop') {
      req.socket.destroy();
      return;
    }
    if (f === 500) {
      res.writeHead(500, { 'Content-Type': 'text/plain' });
      res.end('failed\n');
      return;
    }
    const a = answer(url, n);
    res.writeHead(a.status, { ...a.headers, 'Content-Length': String(Buffer.byteLength(a.body)) });
    res.end(req.method === 'HEAD' ? undefined : a.body);
  });
  const port = await freePort();
  await new Promise<void>((r) => srv.listen(port, '127.0.0.1', r));
  return { port, hits, methods, failing, close: () => new Promise((r) => { srv.closeAllConnections(); srv.close(() => r()); }) };
}

const conf = (dir: string, who: string, port: number, back: number): string => `events {}
http {
  access_log off;
  proxy_temp_path ${dir}/pt-${who};
  proxy_cache_path ${dir}/cache-${who} levels=1:2 keys_zone=Z:1m inactive=1h use_temp_path=off;
  proxy_cache_path ${dir}/flat-${who} keys_zone=F:1m;
  charset_map B A { 58 59; }
  server {
    listen 127.0.0.1:${port};
    add_header X-Cache-Status $upstream_cache_status always;
    location / { proxy_pass http://127.0.0.1:${back}; proxy_cache Z; proxy_cache_valid 200 1m; }
    location /v404/ { proxy_pass http://127.0.0.1:${back}; proxy_cache Z; proxy_cache_valid 1m; proxy_cache_valid 404 1m; }
    location /any/ { proxy_pass http://127.0.0.1:${back}; proxy_cache Z; proxy_cache_valid any 1m; }
    location /none/ { proxy_pass http://127.0.0.1:${back}; proxy_cache Z; }
    location /ign/ { proxy_pass http://127.0.0.1:${back}; proxy_cache Z; proxy_cache_valid 200 1m; proxy_ignore_headers Set-Cookie Cache-Control Expires X-Accel-Expires Vary; }
    location /byp/ { proxy_pass http://127.0.0.1:${back}; proxy_cache Z; proxy_cache_valid 200 1m; proxy_cache_bypass $arg_fresh; proxy_no_cache $arg_nostore; proxy_cache_key $uri; }
    location /min/ { proxy_pass http://127.0.0.1:${back}; proxy_cache Z; proxy_cache_valid 200 1m; proxy_cache_min_uses 3; }
    location /stale/ { proxy_pass http://127.0.0.1:${back}; proxy_cache Z; proxy_cache_valid 200 1s; proxy_cache_use_stale error timeout http_500; }
    location /nostale/ { proxy_pass http://127.0.0.1:${back}; proxy_cache Z; proxy_cache_valid 200 1s; }
    location /key/ { proxy_pass http://127.0.0.1:${back}; proxy_cache Z; proxy_cache_valid 200 1m; proxy_cache_key $uri; }
    location /post/ { proxy_pass http://127.0.0.1:${back}; proxy_cache Z; proxy_cache_valid 200 1m; proxy_cache_methods POST; proxy_cache_key $request_method$uri; }
    location /off/ { proxy_pass http://127.0.0.1:${back}; proxy_cache off; }
    location /flat/ { proxy_pass http://127.0.0.1:${back}; proxy_cache F; proxy_cache_valid 200 1m; }
    location /nohead/ { proxy_pass http://127.0.0.1:${back}; proxy_cache Z; proxy_cache_valid 200 1m; proxy_cache_convert_head off; proxy_cache_key $request_method$uri; }
  }
}
`;

function files(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string): void => {
    let names: string[];
    try {
      names = readdirSync(d);
    } catch {
      return;
    }
    for (const n of names) {
      const p = join(d, n);
      if (statSync(p).isDirectory()) walk(p);
      else out.push(relative(dir, p));
    }
  };
  walk(dir);
  return out.sort();
}

/** Status, cache status and body: what a client of either side sees. */
function seen(r: RawResponse): string {
  return `${r.status} ${r.headers.get('x-cache-status') ?? '-'} ${JSON.stringify(r.body)}`;
}

describe('proxy_cache next to nginx', () => {
  let t: ReturnType<typeof tempDir>;
  let proxy: Proc;
  let nginx: Proc | undefined;
  const ports = { proxy: 0, nginx: 0 };
  const backs: { proxy?: Backend; nginx?: Backend } = {};

  before(async () => {
    t = tempDir('cache');
    backs.proxy = await backend();
    backs.nginx = await backend();
    const both = await startSideBySide(t.dir, (port, who) => conf(t.dir, who, port, backs[who]!.port), withNginx);
    proxy = both.proxy;
    nginx = both.nginx;
    Object.assign(ports, both.ports);
  });
  after(async () => {
    await proxy?.stop('SIGQUIT');
    await nginx?.stop('SIGQUIT');
    await backs.proxy?.close();
    await backs.nginx?.close();
    t?.cleanup();
  });

  /** Runs the same requests, one after the other, on both sides; returns what each side saw. */
  async function sequence(steps: Array<{ path: string; method?: string; headers?: Record<string, string>; waitMs?: number; before?: (b: Backend) => void }>): Promise<{ proxy: string[]; nginx: string[] }> {
    const out = { proxy: [] as string[], nginx: [] as string[] };
    for (const who of withNginx ? (['proxy', 'nginx'] as const) : (['proxy'] as const)) {
      for (const s of steps) {
        if (s.waitMs) await new Promise((r) => setTimeout(r, s.waitMs));
        s.before?.(backs[who]!);
        const r = await get(ports[who], s.path, s.headers ?? {}, s.method ?? 'GET');
        out[who].push(seen(r));
      }
    }
    return out;
  }

  const rules: Array<[string, string[]]> = [
    ['/plain', ['200 MISS "/plain #1\\n"', '200 HIT "/plain #1\\n"', '200 HIT "/plain #1\\n"']],
    ['/cookie', ['200 MISS "/cookie #1\\n"', '200 MISS "/cookie #2\\n"']],
    ['/nocache', ['200 MISS "/nocache #1\\n"', '200 MISS "/nocache #2\\n"']],
    ['/nostore', ['200 MISS "/nostore #1\\n"', '200 MISS "/nostore #2\\n"']],
    ['/private', ['200 MISS "/private #1\\n"', '200 MISS "/private #2\\n"']],
    ['/maxage0', ['200 MISS "/maxage0 #1\\n"', '200 MISS "/maxage0 #2\\n"']],
    ['/smaxage', ['200 MISS "/smaxage #1\\n"', '200 HIT "/smaxage #1\\n"']],
    ['/xae0', ['200 MISS "/xae0 #1\\n"', '200 MISS "/xae0 #2\\n"']],
    ['/xae60', ['200 MISS "/xae60 #1\\n"', '200 HIT "/xae60 #1\\n"']],
    ['/expired', ['200 MISS "/expired #1\\n"', '200 MISS "/expired #2\\n"']],
    ['/varystar', ['200 MISS "/varystar #1\\n"', '200 MISS "/varystar #2\\n"']],
    ['/notfound', ['404 MISS "/notfound #1\\n"', '404 MISS "/notfound #2\\n"']],
    ['/v404/notfound', ['404 MISS "/v404/notfound #1\\n"', '404 HIT "/v404/notfound #1\\n"']],
    ['/any/notfound', ['404 MISS "/any/notfound #1\\n"', '404 HIT "/any/notfound #1\\n"']],
    ['/none/plain', ['200 MISS "/none/plain #1\\n"', '200 MISS "/none/plain #2\\n"']],
    ['/v404/plain', ['200 MISS "/v404/plain #1\\n"', '200 HIT "/v404/plain #1\\n"']],
    ['/ign/cookie', ['200 MISS "/ign/cookie #1\\n"', '200 HIT "/ign/cookie #1\\n"']],
    ['/ign/nocache', ['200 MISS "/ign/nocache #1\\n"', '200 HIT "/ign/nocache #1\\n"']],
    ['/ign/xae0', ['200 MISS "/ign/xae0 #1\\n"', '200 HIT "/ign/xae0 #1\\n"']],
    ['/ign/varystar', ['200 MISS "/ign/varystar #1\\n"', '200 HIT "/ign/varystar #1\\n"']],
    ['/off/plain', ['200 - "/off/plain #1\\n"', '200 - "/off/plain #2\\n"']],
    ['/flat/plain', ['200 MISS "/flat/plain #1\\n"', '200 HIT "/flat/plain #1\\n"']],
  ];
  for (const [path, expected] of rules) {
    test(`what is stored: ${path}`, async () => {
      const got = await sequence(expected.map(() => ({ path })));
      assert.deepEqual(got.proxy, expected);
      if (withNginx) assert.deepEqual(got.nginx, got.proxy);
    });
  }

  test('the files on disk have the names nginx gives them: md5 of the key, levels cut from its end; the default key', { skip: nginxSkip }, async () => {
    await get(ports.proxy, '/flat/named');
    await get(ports.nginx, '/flat/named');
    await get(ports.proxy, '/key/named');
    await get(ports.nginx, '/key/named');
    const md5 = (k: string): string => createHash('md5').update(k).digest('hex');
    const leveled = (h: string): string => `${h.slice(-1)}/${h.slice(-3, -1)}/${h}`;
    for (const who of ['proxy', 'nginx'] as const) {
      // The default key of proxy_pass http://127.0.0.1:PORT is the pass URL with the request URI.
      const base = `http://127.0.0.1:${backs[who]!.port}`;
      assert.deepEqual(files(join(t.dir, `flat-${who}`)), [md5(`${base}/flat/named`), md5(`${base}/flat/plain`)].sort(), who);
      const z = files(join(t.dir, `cache-${who}`));
      assert.ok(z.includes(leveled(md5('/key/named'))), `${who}: ${z.join(' ')}`);
      assert.ok(z.includes(leveled(md5(`${base}/plain`))), `${who}: ${z.join(' ')}`);
    }
    // Every file of ours is named after the key it holds.
    for (const f of files(join(t.dir, 'cache-proxy'))) {
      const key = /"key":"([^"]*)"/.exec(readFileSync(join(t.dir, 'cache-proxy', f), 'latin1'))?.[1] ?? '';
      assert.equal(f, leveled(md5(key)));
    }
  });

  test('EXPIRED after the validity, then HIT again (Cache-Control max-age=1)', async () => {
    const got = await sequence([{ path: '/maxage1' }, { path: '/maxage1' }, { path: '/maxage1', waitMs: 2100 }, { path: '/maxage1' }]);
    assert.deepEqual(got.proxy, ['200 MISS "/maxage1 #1\\n"', '200 HIT "/maxage1 #1\\n"', '200 EXPIRED "/maxage1 #2\\n"', '200 HIT "/maxage1 #2\\n"']);
    if (withNginx) assert.deepEqual(got.nginx, got.proxy);
  });

  test('BYPASS skips the cache and still stores; no_cache does not store', async () => {
    const got = await sequence([
      { path: '/byp/a' }, { path: '/byp/a?fresh=1' }, { path: '/byp/a' },
      { path: '/byp/b?nostore=1' }, { path: '/byp/b?nostore=1' }, { path: '/byp/c?fresh=0' }, { path: '/byp/c?fresh=0' },
    ]);
    assert.deepEqual(got.proxy, [
      '200 MISS "/byp/a #1\\n"', '200 BYPASS "/byp/a?fresh=1 #1\\n"', '200 HIT "/byp/a?fresh=1 #1\\n"',
      '200 MISS "/byp/b?nostore=1 #1\\n"', '200 MISS "/byp/b?nostore=1 #2\\n"', '200 MISS "/byp/c?fresh=0 #1\\n"', '200 HIT "/byp/c?fresh=0 #1\\n"',
    ]);
    if (withNginx) assert.deepEqual(got.nginx, got.proxy);
  });

  test('min_uses: stored from the third request on', async () => {
    const got = await sequence([{ path: '/min/x' }, { path: '/min/x' }, { path: '/min/x' }, { path: '/min/x' }]);
    assert.deepEqual(got.proxy, ['200 MISS "/min/x #1\\n"', '200 MISS "/min/x #2\\n"', '200 MISS "/min/x #3\\n"', '200 HIT "/min/x #3\\n"']);
    if (withNginx) assert.deepEqual(got.nginx, got.proxy);
  });

  test('use_stale: an expired entry answers (STALE) when the backend fails with 500 or a cut connection; without it the error passes', async () => {
    const got = await sequence([
      { path: '/stale/a' },
      { path: '/stale/a', waitMs: 2100, before: (b) => b.failing.set('/stale/a', 500) },
      { path: '/stale/a', before: (b) => b.failing.set('/stale/a', 'drop') },
      { path: '/nostale/a', before: (b) => b.failing.delete('/stale/a') },
      { path: '/nostale/a', waitMs: 2100, before: (b) => b.failing.set('/nostale/a', 500) },
      { path: '/stale/a', before: (b) => b.failing.delete('/stale/a') },
    ]);
    assert.deepEqual(got.proxy.map((s) => s.replace(/"<html>.*/, '"page"')), [
      '200 MISS "/stale/a #1\\n"', '200 STALE "/stale/a #1\\n"', '200 STALE "/stale/a #1\\n"',
      '200 MISS "/nostale/a #1\\n"', '500 EXPIRED "failed\\n"', '200 EXPIRED "/stale/a #4\\n"',
    ]);
    if (withNginx) assert.deepEqual(got.nginx, got.proxy);
  });

  test('a custom key: requests differing only in arguments share an entry', async () => {
    const got = await sequence([{ path: '/key/k?a=1' }, { path: '/key/k?a=2' }]);
    assert.deepEqual(got.proxy, ['200 MISS "/key/k?a=1 #1\\n"', '200 HIT "/key/k?a=1 #1\\n"']);
    if (withNginx) assert.deepEqual(got.nginx, got.proxy);
  });

  test('methods: POST is cached when listed; a method not listed is not looked up (empty status)', async () => {
    const got = await sequence([{ path: '/post/p', method: 'POST' }, { path: '/post/p', method: 'POST' }, { path: '/plain2', method: 'POST' }, { path: '/plain2', method: 'POST' }]);
    assert.deepEqual(got.proxy, ['200 MISS "/post/p #1\\n"', '200 HIT "/post/p #1\\n"', '200 - "/plain2 #1\\n"', '200 - "/plain2 #2\\n"']);
    if (withNginx) assert.deepEqual(got.nginx, got.proxy);
  });

  test('HEAD goes upstream as GET and the whole response is stored; a GET then HITs; convert_head off passes HEAD', async () => {
    const got = await sequence([{ path: '/h/x', method: 'HEAD' }, { path: '/h/x' }, { path: '/h/x', method: 'HEAD' }, { path: '/nohead/x', method: 'HEAD' }, { path: '/nohead/x' }]);
    assert.deepEqual(got.proxy, ['200 MISS ""', '200 HIT "/h/x #1\\n"', '200 HIT ""', '200 MISS ""', '200 MISS "/nohead/x #2\\n"']);
    assert.ok(backs.proxy!.methods.includes('GET /h/x') && !backs.proxy!.methods.includes('HEAD /h/x'));
    assert.ok(backs.proxy!.methods.includes('HEAD /nohead/x'));
    if (withNginx) {
      assert.deepEqual(got.nginx, got.proxy);
      assert.deepEqual(backs.nginx!.methods.filter((m) => /\/(h|nohead)\//.test(m)), backs.proxy!.methods.filter((m) => /\/(h|nohead)\//.test(m)));
    }
  });

  test('Vary: a request with other values of the varied header is a MISS', async () => {
    const got = await sequence([
      { path: '/vary', headers: { 'Accept-Language': 'en' } }, { path: '/vary', headers: { 'Accept-Language': 'en' } },
      { path: '/vary', headers: { 'Accept-Language': 'fr' } },
    ]);
    assert.equal(got.proxy[0], '200 MISS "/vary #1\\n"');
    assert.equal(got.proxy[1], '200 HIT "/vary #1\\n"');
    assert.match(got.proxy[2]!, /^200 MISS "\/vary #2\\n"$/);
    if (withNginx) assert.deepEqual(got.nginx, got.proxy);
  });

  test('X-Accel-Charset: the body is recoded to the charset the backend names (passed, stored, and in ranges)', async () => {
    const out: Record<string, string[]> = { proxy: [], nginx: [] };
    for (const who of withNginx ? (['proxy', 'nginx'] as const) : (['proxy'] as const)) {
      for (const [path, range] of [['/off/accelcs', ''], ['/accelcs', ''], ['/accelcs', 'bytes=0-3'], ['/accelcs', 'bytes=0-1,4-5']] as const) {
        const r = await get(ports[who], path, range ? { Range: range } : {});
        const boundary = /boundary=(\w+)/.exec(r.headers.get('content-type') ?? '')?.[1] ?? 'none';
        out[who]!.push(`${r.status} ${r.headers.get('x-cache-status') ?? '-'} ${r.headers.get('content-type')?.replace(boundary, 'B')} ${JSON.stringify(r.body.split(boundary).join('B'))}`);
      }
    }
    assert.deepEqual(out.proxy!.slice(0, 3), ['200 - text/html; charset=A "YaYbYcYdYe"', '200 MISS text/html; charset=A "YaYbYcYdYe"', '206 HIT text/html; charset=A "YaYb"']);
    assert.match(out.proxy![3]!, /Content-Type: text\/html; charset=A\\r\\nContent-Range: bytes 0-1\/10\\r\\n\\r\\nYa/);
    if (withNginx) assert.deepEqual(out.nginx, out.proxy);
  });

  test('ranges: a stored response with Accept-Ranges answers single and multiple ranges and 416; the backend never sees the Range', async () => {
    const out: Record<string, string[]> = { proxy: [], nginx: [] };
    for (const who of withNginx ? (['proxy', 'nginx'] as const) : (['proxy'] as const)) {
      const first = await get(ports[who], '/ranges', { Range: 'bytes=2-4' });
      const one = await get(ports[who], '/ranges', { Range: 'bytes=2-4' });
      const two = await get(ports[who], '/ranges', { Range: 'bytes=0-1,5-6' });
      const bad = await get(ports[who], '/ranges', { Range: 'bytes=100-' });
      const head = await get(ports[who], '/ranges', {}, 'HEAD');
      const boundary = /boundary=(\w+)/.exec(two.headers.get('content-type') ?? '')?.[1] ?? 'none';
      out[who] = [
        `${first.status} ${first.headers.get('x-cache-status')} ${first.headers.get('content-range') ?? '-'} ${first.body}`,
        `${one.status} ${one.headers.get('x-cache-status')} ${one.headers.get('content-range')} ${one.headers.get('content-length')} ${one.body}`,
        `${two.status} ${two.headers.get('content-type')?.replace(boundary, 'B')} ${two.body.split(boundary).join('B')}`,
        `${bad.status} ${bad.headers.get('content-range')}`,
        `${head.status} ${head.headers.get('x-cache-status')} ${head.headers.get('content-length')} ${JSON.stringify(head.body)}`,
      ];
    }
    assert.deepEqual(out.proxy!.slice(0, 2), ['206 MISS bytes 2-4/20 234', '206 HIT bytes 2-4/20 3 234']);
    assert.match(out.proxy![2]!, /^206 multipart\/byteranges; boundary=B /);
    assert.equal(out.proxy![3], '416 bytes */20');
    assert.equal(out.proxy![4], '200 HIT 20 ""');
    assert.equal(backs.proxy!.hits.get('/ranges'), 1);
    if (withNginx) assert.deepEqual(out.nginx, out.proxy);
  });
});

describe('proxy_cache: configuration errors, as nginx -t gives them', () => {
  const cases: Array<[string, string]> = [
    ['proxy_cache_path /tmp/x levels=1:2;', '"proxy_cache_path" must have "keys_zone" parameter'],
    ['proxy_cache_path /tmp/x keys_zone=Z:1m foo=1;', 'invalid parameter "foo=1"'],
    ['proxy_cache_path /tmp/x levels=3 keys_zone=Z:1m;', 'invalid "levels" "levels=3"'],
    ['proxy_cache_path /tmp/x keys_zone=Z:1m; proxy_cache_path /tmp/y keys_zone=Z:1m;', 'duplicate zone "Z"'],
    ['server { location / { proxy_cache NOPE; proxy_pass http://127.0.0.1:1; } }', '"proxy_cache" zone "NOPE" is unknown'],
    ['uwsgi_cache_path /tmp/x keys_zone=U:1m; server { location / { proxy_cache U; proxy_pass http://127.0.0.1:1; } }', 'the shared memory zone "U" is already declared for a different use'],
    ['proxy_cache_valid 20x 1m;', 'invalid status "20x"'],
    ['proxy_cache_use_stale error bogus;', 'invalid value "bogus"'],
  ];
  for (const [http, err] of cases) {
    test(`-t: ${err}`, () => {
      const t = tempDir('cachet');
      try {
        writeFileSync(join(t.dir, 'c.conf'), `events {}\nhttp {\n${http}\n}\n`);
        const mine = proxySync(['-t', '-p', t.dir, '-c', 'c.conf']);
        assert.equal(mine.code, 1);
        assert.match(mine.stderr, new RegExp(`\\[emerg\\] ${err.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} in .*c\\.conf:\\d`));
        if (withNginx) {
          const theirs = spawnSync('/usr/sbin/nginx', ['-t', '-p', t.dir, '-c', join(t.dir, 'c.conf'), '-e', join(t.dir, 'e.log')], { encoding: 'latin1' });
          assert.notEqual(theirs.status, 0);
          assert.ok(theirs.stderr.includes(err), theirs.stderr);
        }
      } finally {
        t.cleanup();
      }
    });
  }

  test('-t: "on" for cache_lock / cache_revalidate / background_update is refused with a line; off is accepted', () => {
    const t = tempDir('cachet');
    try {
      for (const d of ['proxy_cache_lock', 'uwsgi_cache_revalidate', 'proxy_cache_background_update']) {
        writeFileSync(join(t.dir, 'c.conf'), `events {}\nhttp {\n${d} on;\n}\n`);
        const on = proxySync(['-t', '-p', t.dir, '-c', 'c.conf']);
        assert.equal(on.code, 1);
        assert.match(on.stderr, new RegExp(`"${d} on" is not supported by tsgi-proxy .* in .*c\\.conf:3`));
        writeFileSync(join(t.dir, 'c.conf'), `events {}\nhttp {\n${d} off;\n}\n`);
        assert.equal(proxySync(['-t', '-p', t.dir, '-c', 'c.conf']).code, 0);
      }
    } finally {
      t.cleanup();
    }
  });

  test('-t: uwsgi_cache without uwsgi_cache_key warns as nginx does', () => {
    const t = tempDir('cachet');
    try {
      writeFileSync(join(t.dir, 'c.conf'), `events {}\nhttp {\nuwsgi_cache_path ${t.dir}/u keys_zone=U:1m;\nserver { location / { uwsgi_pass 127.0.0.1:1; uwsgi_cache U; } }\n}\n`);
      const mine = proxySync(['-t', '-p', t.dir, '-c', 'c.conf']);
      assert.equal(mine.code, 0, mine.stderr);
      assert.match(mine.stderr, /\[warn\] no "uwsgi_cache_key" for "uwsgi_cache" in .*c\.conf:4/);
    } finally {
      t.cleanup();
    }
  });
});

describe('proxy_cache across processes (tsgi-proxy)', () => {
  test('two workers share the cache, and it survives -s reload', async () => {
    const t = tempDir('cachew');
    const back = await backend();
    const port = await freePort();
    writeFileSync(join(t.dir, 'p.conf'), `worker_processes 2;
pid ${t.dir}/p.pid;
events {}
http {
  access_log off;
  proxy_cache_path ${t.dir}/cache levels=2 keys_zone=Z:1m;
  server {
    listen 127.0.0.1:${port};
    add_header X-Cache-Status $upstream_cache_status;
    add_header X-Pid $pid;
    location / { proxy_pass http://127.0.0.1:${back.port}; proxy_cache Z; proxy_cache_valid 200 1h; }
  }
}
`);
    const p = await startProxy(t.dir, 'p.conf', port);
    try {
      const first = await get(port, '/w');
      assert.equal(first.headers.get('x-cache-status'), 'MISS');
      // New connections until both workers have answered: every answer after the first is a HIT.
      const pids = new Set<string>();
      for (let i = 0; i < 200 && pids.size < 2; i++) {
        const r = await get(port, '/w');
        assert.equal(`${r.headers.get('x-cache-status')} ${r.body}`, 'HIT /w #1\n');
        pids.add(r.headers.get('x-pid')!);
      }
      assert.equal(pids.size, 2, 'both workers answered');
      assert.equal(back.hits.get('/w'), 1);
      assert.equal(proxySync(['-p', t.dir, '-c', 'p.conf', '-s', 'reload']).code, 0);
      await waitFor('workers of the new configuration', async () => {
        const r = await get(port, '/w');
        return !pids.has(r.headers.get('x-pid')!);
      });
      const again = await get(port, '/w');
      assert.equal(`${again.headers.get('x-cache-status')} ${again.body}`, 'HIT /w #1\n');
      assert.equal(back.hits.get('/w'), 1);
    } finally {
      await p.stop('SIGQUIT');
      await back.close();
      t.cleanup();
    }
  });

  test('max_size: a response larger than the zone is passed on whole and not stored, also when a Range was held for it', async () => {
    await withOneCachedLocation('caches', 'max_size=1k', async (port, t) => {
      for (let i = 1; i <= 2; i++) {
        const r = await get(port, '/big/ranges', { Range: 'bytes=0-3' });
        assert.equal(`${r.status} ${r.headers.get('x-cache-status')} ${r.body.length} ${r.body.slice(0, 14)}`, `200 MISS 2000 /big/ranges #${i}`);
      }
      const small = await get(port, '/ranges', { Range: 'bytes=0-3' });
      assert.equal(`${small.status} ${small.body}`, '206 0123');
      assert.equal(files(join(t.dir, 'cache')).length, 1);
    });
  });

  test('inactive: an entry not used for that long is removed from disk', async () => {
    await withOneCachedLocation('cachei', 'inactive=1s', async (port, t) => {
      await get(port, '/i');
      await waitFor('the entry', () => files(join(t.dir, 'cache')).length === 1);
      assert.equal((await get(port, '/i')).headers.get('x-cache-status'), 'HIT');
      await waitFor('the sweep', () => files(join(t.dir, 'cache')).length === 0);
      assert.equal((await get(port, '/i')).headers.get('x-cache-status'), 'MISS');
    });
  });
});

/**
 * tsgi-proxy with one location cached in zone Z (`proxy_cache_path DIR/cache keys_zone=Z:1m PARAMS`, 200s valid
 * for an hour, $upstream_cache_status in X-Cache-Status) in front of the counting backend; `run` gets its port and
 * temp dir, and both are stopped and removed afterwards.
 */
async function withOneCachedLocation(tag: string, params: string, run: (port: number, t: ReturnType<typeof tempDir>) => Promise<void>): Promise<void> {
  const t = tempDir(tag);
  const back = await backend();
  const port = await freePort();
  writeFileSync(join(t.dir, 'p.conf'), `events {}
http {
  access_log off;
  proxy_cache_path ${t.dir}/cache keys_zone=Z:1m ${params};
  server {
    listen 127.0.0.1:${port};
    add_header X-Cache-Status $upstream_cache_status;
    location / { proxy_pass http://127.0.0.1:${back.port}; proxy_cache Z; proxy_cache_valid 200 1h; }
  }
}
`);
  const p = await startProxy(t.dir, 'p.conf', port);
  try {
    await run(port, t);
  } finally {
    await p.stop('SIGQUIT');
    await back.close();
    t.cleanup();
  }
}

const APP = `
import os
count = {}
def application(env, start):
    path = env['PATH_INFO']
    count[path] = count.get(path, 0) + 1
    headers = [('Content-Type', 'text/plain')]
    if path == '/cookie':
        headers.append(('Set-Cookie', 'a=b'))
    start('200 OK', headers)
    return [('%s %s #%d\\n' % (env['REQUEST_METHOD'], path, count[path])).encode()]
`;

describe('uwsgi_cache in front of the real uWSGI, next to nginx', () => {
  const skip = !haveUwsgiPython() ? 'needs the real uWSGI with the python3 plugin' : false;
  test('MISS, HIT, Set-Cookie not stored, HEAD', { skip }, async () => {
    const t = tempDir('ucache');
    writeFileSync(join(t.dir, 'app.py'), APP);
    const procs: Proc[] = [];
    try {
      const ups = { proxy: await freePort(), nginx: await freePort() };
      procs.push(await startUwsgi(t.dir, `127.0.0.1:${ups.proxy}`, join(t.dir, 'app.py')));
      if (withNginx) procs.push(await startUwsgi(t.dir, `127.0.0.1:${ups.nginx}`, join(t.dir, 'app.py')));
      const both = await startSideBySide(t.dir, (port, who) => `events {}
http {
  access_log off;
  uwsgi_temp_path ${t.dir}/ut-${who};
  uwsgi_cache_path ${t.dir}/uc-${who} levels=1:2 keys_zone=U:1m;
  server {
    listen 127.0.0.1:${port};
    add_header X-Cache-Status $upstream_cache_status;
    location / { include /etc/nginx/uwsgi_params; uwsgi_pass 127.0.0.1:${ups[who]}; uwsgi_cache U; uwsgi_cache_key $request_uri; uwsgi_cache_valid 1m; }
  }
}
`, withNginx);
      if (both.nginx) procs.push(both.nginx);
      procs.push(both.proxy);
      const out: Record<string, string[]> = {};
      for (const who of withNginx ? (['proxy', 'nginx'] as const) : (['proxy'] as const)) {
        const seq: string[] = [];
        for (const [path, method] of [['/a', 'GET'], ['/a', 'GET'], ['/cookie', 'GET'], ['/cookie', 'GET'], ['/a', 'HEAD']] as const) {
          const r = await get(both.ports[who], path, {}, method);
          seq.push(`${r.status} ${r.headers.get('x-cache-status')} ${JSON.stringify(r.body)}`);
        }
        out[who] = seq;
      }
      assert.deepEqual(out.proxy, ['200 MISS "GET /a #1\\n"', '200 HIT "GET /a #1\\n"', '200 MISS "GET /cookie #1\\n"', '200 MISS "GET /cookie #2\\n"', '200 HIT ""']);
      if (withNginx) assert.deepEqual(out.nginx, out.proxy);
    } finally {
      for (const p of procs.reverse()) await p.stop('SIGQUIT');
      t.cleanup();
    }
  });
});
