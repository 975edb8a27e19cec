/**
 * Static files on a Python worker's uwsgi socket (docs/static-files.md): static-map, static-map2,
 * check-static, static-index, static-skip-ext, static-safe, the Expires rules, gzip variants and mime tables,
 * answered by the worker before the app, behind the real nginx, behind tsgi-proxy with kept backend
 * connections, and to a raw uwsgi client (exact bytes). A request no mount serves reaches the app unchanged.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { repoRoot, tsgiBin } from '../helpers/paths.js';
import { activatedEnv, freePort, httpRequest, sharedVenv, startNginxUwsgi, startProcess, startTsgi, stopProcess, tempDir, waitForPort, writeFiles, type RunningProcess } from '../helpers/procs.js';
import { conversation, getVars, uwsgiRequest, type ParsedResponse, type Vars } from '../helpers/uwsgi-client.js';

const PROXY = join(repoRoot, 'bin/tsgi-proxy');
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const header = (r: ParsedResponse, name: string): string | undefined => r.headers.find(([n]) => n.toLowerCase() === name.toLowerCase())?.[1];

/** The app: says what reached it; /sockets lists the worker's open sockets (which connections it holds). */
const APP = `import os
import sys


def application(environ, start_response):
    path = environ['PATH_INFO']
    if path == '/sockets':
        socks = []
        for fd in os.listdir('/proc/self/fd'):
            try:
                target = os.readlink('/proc/self/fd/' + fd)
            except OSError:
                continue
            if target.startswith('socket:'):
                socks.append(target)
        body = ' '.join(sorted(socks))
    elif path == '/modules':
        body = 'static module loaded: %s' % ('tsgi_worker.static' in sys.modules)
    else:
        body = 'app %s %s' % (environ['REQUEST_METHOD'], path)
    start_response('200 OK', [('Content-Type', 'text/plain')])
    return [body.encode('latin-1')]
`;

/** A fixed modification time, so that Last-Modified can be checked byte for byte. */
const MTIME = Date.UTC(2024, 0, 2, 3, 4, 5) / 1000;
const MTIME_HTTP = 'Tue, 02 Jan 2024 03:04:05 GMT';

interface Site {
  root: string;
  big: Buffer;
  js: Buffer;
  jsGz: Buffer;
}

function makeSite(): Site {
  const root = tempDir('tsgi-static-');
  const big = randomBytes(5 * 1024 * 1024);
  const js = Buffer.from('console.log("hello from a static file");\n'.repeat(20));
  const jsGz = gzipSync(js);
  writeFiles(root, {
    'app.py': APP,
    'static/a.css': 'body{}',
    'static/plain.txt': 'plain text\n',
    'static/sub/index.html': '<p>index</p>\n',
    'static/noindex/other.txt': 'not an index\n',
    'static/skip.php': '<?php echo "source"; ?>\n',
    'static/f.tsgi': 'custom type\n',
    'static/%2e%2e': 'a file really named %2e%2e\n',
    'secret/s.txt': 'SECRET',
    'safe/ok.txt': 'safe ok\n',
    'map2/m2/x.txt': 'map2 file\n',
    'checkdir/robots.txt': 'User-agent: *\n',
    'favicon.ico': 'ICO!',
    'extra.types': '# a mime-file\napplication/x-tsgi-test  tsgi\ntext/x-special css\n',
  });
  writeFileSync(join(root, 'static/big.bin'), big);
  writeFileSync(join(root, 'static/app.js'), js);
  writeFileSync(join(root, 'static/app.js.gz'), jsGz);
  symlinkSync('../secret/s.txt', join(root, 'static/out.txt'));
  symlinkSync('../safe/ok.txt', join(root, 'static/ok.txt'));
  for (const f of ['static/a.css', 'static/plain.txt', 'static/app.js', 'static/app.js.gz', 'favicon.ico']) utimesSync(join(root, f), MTIME, MTIME);
  return { root, big, js, jsGz };
}

function staticArgs(root: string): string[] {
  return [
    '--static-map', `/static=${join(root, 'static')}`,
    '--static-map', `/favicon.ico=${join(root, 'favicon.ico')}`,
    '--static-map', `/assets/=${join(root, 'static')}/`,
    '--static-map2', `/m2=${join(root, 'map2')}`,
    '--check-static', join(root, 'checkdir'),
    '--static-index', 'index.html',
    '--static-skip-ext', '.php',
    '--static-safe', join(root, 'safe'),
    '--static-expires', '\\.css$ 3600',
    '--static-expires-type-mtime', 'text/plain=1000',
    '--static-gzip-ext', '.js',
  ];
}

const OUTSIDE = (root: string, file: string): RegExp =>
  new RegExp(`static file ${(root + file).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} is outside ${join(root, 'static').replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} and every static-safe directory`);

describe('static files on a uwsgi socket: a raw uwsgi client, the real nginx, tsgi-proxy', () => {
  let site: Site;
  let sock: string;
  let tsgi: RunningProcess;
  let nginx: RunningProcess | undefined;
  let nginxBase: string;
  let proxy: RunningProcess | undefined;
  let proxyBase: string;
  const get = (path: string, extra: Vars = {}): Promise<ParsedResponse> => {
    const [p, q] = path.split('?', 2);
    return uwsgiRequest(sock, { ...getVars(path), PATH_INFO: p!, QUERY_STRING: q ?? '', ...extra });
  };

  before(async () => {
    site = makeSite();
    sock = join(site.root, 'app.sock');
    // One worker, one core: /sockets then tells exactly which connections the worker holds.
    tsgi = await startTsgi(['-s', sock, '--chmod-socket', '666', '-p', '1', '--wsgi-file', join(site.root, 'app.py'), ...staticArgs(site.root)], {
      env: activatedEnv(sharedVenv()),
    });
    const nport = await freePort();
    nginx = await startNginxUwsgi(sock, nport);
    nginxBase = `http://127.0.0.1:${nport}`;
    const pport = await freePort();
    const pdir = tempDir('tsgi-static-proxy-');
    writeFileSync(join(pdir, 'nginx.conf'), `worker_processes 1;
error_log ${join(pdir, 'proxy-error.log')};
pid ${join(pdir, 'proxy.pid')};
events {}
http {
  access_log off;
  upstream app { server unix:${sock}; keepalive 8; }
  server {
    listen 127.0.0.1:${pport};
    location / {
      include /etc/nginx/uwsgi_params;
      uwsgi_pass app;
    }
  }
}
`);
    proxy = startProcess(process.execPath, [PROXY, '-p', pdir, '-c', join(pdir, 'nginx.conf'), '-g', 'daemon off;']);
    await waitForPort(pport);
    proxyBase = `http://127.0.0.1:${pport}`;
  });
  after(async () => {
    if (nginx) await stopProcess(nginx, 'SIGQUIT');
    if (proxy) await stopProcess(proxy, 'SIGQUIT');
    assert.equal((await stopProcess(tsgi)).code, 0, tsgi.output());
  });

  // ---- a raw uwsgi client: exact bytes -------------------------------------------------------------------

  test('static-map serves a file: 200 with exactly Content-Type, Content-Length, Last-Modified, Expires', async () => {
    const r = await get('/static/plain.txt');
    assert.equal(r.statusLine, 'HTTP/1.1 200 OK');
    // static-expires-type-mtime = text/plain=1000: the file's mtime + 1000 s.
    assert.deepEqual(r.headers, [
      ['Content-Type', 'text/plain'],
      ['Content-Length', '11'],
      ['Last-Modified', MTIME_HTTP],
      ['Expires', new Date((MTIME + 1000) * 1000).toUTCString()],
    ]);
    assert.equal(r.body.toString(), 'plain text\n');
    // static-expires = \.css$ 3600: now + 3600 s (a rule on the file name comes before the type rules).
    const before = Math.floor(Date.now() / 1000);
    const css = await get('/static/a.css?v=1');
    const afterT = Math.ceil(Date.now() / 1000);
    assert.deepEqual(css.headers.map(([n]) => n), ['Content-Type', 'Content-Length', 'Last-Modified', 'Expires']);
    assert.equal(header(css, 'content-type'), 'text/css');
    assert.equal(header(css, 'last-modified'), MTIME_HTTP);
    const expires = Date.parse(header(css, 'expires')!) / 1000;
    assert.ok(expires >= before + 3600 && expires <= afterT + 3600, `Expires ${header(css, 'expires')} is now + 3600`);
    assert.equal(css.body.toString(), 'body{}');
  });

  test('the request is logged like an app request and counted with them', async () => {
    await get('/static/a.css');
    await get('/after-static');
    await tsgi.waitFor(/GET \/after-static => generated/);
    const lines = tsgi.output().split('\n');
    const at = lines.findIndex((l) => l.includes('GET /after-static'));
    const css = lines.slice(0, at).reverse().find((l) => l.includes('GET /static/a.css'));
    assert.match(css ?? '', /^\[pid: \d+\|app: 0\|req: \d+\/\d+\] 127\.0\.0\.1 \(\) \{\d+ vars in \d+ bytes\} \[[^\]]+\] GET \/static\/a\.css => generated 6 bytes in \d+ msecs \(HTTP\/1\.1 200\) 4 headers in \d+ bytes \(1 switches on core 0\)$/);
    const req = (l: string): number => Number(/req: (\d+)\//.exec(l)![1]);
    assert.equal(req(lines[at]!), req(css!) + 1, 'the static request counts as one of the worker\'s requests');
  });

  test('a missing file, a directory without an index, a path beside a mount: the app answers', async () => {
    assert.equal((await get('/static/missing.css')).body.toString(), 'app GET /static/missing.css');
    assert.equal((await get('/static/noindex')).body.toString(), 'app GET /static/noindex');
    // The boundary rule: /staticx is not under /static.
    assert.equal((await get('/staticx/a.css')).body.toString(), 'app GET /staticx/a.css');
    assert.equal((await get('/elsewhere')).body.toString(), 'app GET /elsewhere');
  });

  test('a directory serves its static-index file, with or without the trailing slash', async () => {
    for (const p of ['/static/sub', '/static/sub/']) {
      const r = await get(p);
      assert.equal(r.status, 200, p);
      assert.equal(header(r, 'content-type'), 'text/html');
      assert.equal(r.body.toString(), '<p>index</p>\n');
    }
  });

  test('static-map2 appends the whole path; check-static serves every path; a one-file mount (favicon); a mount ending in /', async () => {
    const m2 = await get('/m2/x.txt');
    assert.equal(m2.body.toString(), 'map2 file\n');
    const robots = await get('/robots.txt');
    assert.equal(robots.body.toString(), 'User-agent: *\n');
    const ico = await get('/favicon.ico');
    assert.equal(ico.status, 200);
    assert.equal(ico.body.toString(), 'ICO!');
    assert.equal(header(ico, 'last-modified'), MTIME_HTTP);
    assert.equal(header(ico, 'content-type'), 'image/vnd.microsoft.icon');
    // Below a file there is nothing.
    assert.equal((await get('/favicon.ico/x')).body.toString(), 'app GET /favicon.ico/x');
    // A mount ending in '/' (uWSGI's usual spelling, /assets/=DIR/): the rest keeps its '/', and the mount
    // without its slash is not under it.
    assert.equal((await get('/assets/a.css')).body.toString(), 'body{}');
    assert.equal((await get('/assets/')).body.toString(), 'app GET /assets/');
    assert.equal((await get('/assets/sub/')).body.toString(), '<p>index</p>\n');
    assert.equal((await get('/assets')).body.toString(), 'app GET /assets');
  });

  test('a symlink out of the root goes to the app with one log line; under a static-safe directory it is served', async () => {
    const out = await get('/static/out.txt');
    assert.equal(out.body.toString(), 'app GET /static/out.txt');
    await tsgi.waitFor(OUTSIDE(site.root, '/static/out.txt'));
    const ok = await get('/static/ok.txt');
    assert.equal(ok.status, 200);
    assert.equal(ok.body.toString(), 'safe ok\n');
  });

  test('.. and %2e%2e never reach a file outside the root', async () => {
    for (const p of ['/static/../secret/s.txt', '/static/sub/../../secret/s.txt', '/static/..', '/../secret/s.txt', '/m2/../secret/s.txt']) {
      const r = await get(p);
      assert.notEqual(r.body.toString(), 'SECRET', p);
      assert.equal(r.body.toString(), `app GET ${p}`, p);
    }
    await tsgi.waitFor(OUTSIDE(site.root, '/static/../secret/s.txt'));
    // PATH_INFO is already decoded: %2e%2e is a name like any other (here a file that exists inside the root).
    const named = await get('/static/%2e%2e');
    assert.equal(named.body.toString(), 'a file really named %2e%2e\n');
    assert.equal((await get('/static/%2e%2e/secret/s.txt')).body.toString(), 'app GET /static/%2e%2e/secret/s.txt');
  });

  test('POST and other methods, and a static-skip-ext extension, go to the app', async () => {
    for (const method of ['POST', 'PUT', 'DELETE', 'OPTIONS']) {
      const r = await uwsgiRequest(sock, { ...getVars('/static/a.css'), REQUEST_METHOD: method }, Buffer.from('x=1'));
      assert.equal(r.body.toString(), `app ${method} /static/a.css`);
    }
    assert.equal((await get('/static/skip.php')).body.toString(), 'app GET /static/skip.php');
  });

  test('If-Modified-Since: 304 with Last-Modified and no body when not older than the file; else 200', async () => {
    for (const ims of [MTIME_HTTP, 'Tue, 02 Jan 2024 03:04:06 GMT', 'Tuesday, 02-Jan-24 03:04:05 GMT', 'Tue Jan  2 03:04:05 2024']) {
      const r = await get('/static/a.css', { HTTP_IF_MODIFIED_SINCE: ims });
      assert.equal(r.statusLine, 'HTTP/1.1 304 Not Modified', ims);
      assert.deepEqual(r.headers, [['Last-Modified', MTIME_HTTP]]);
      assert.equal(r.body.length, 0);
    }
    for (const ims of ['Tue, 02 Jan 2024 03:04:04 GMT', 'not a date']) {
      const r = await get('/static/a.css', { HTTP_IF_MODIFIED_SINCE: ims });
      assert.equal(r.status, 200, ims);
      assert.equal(r.body.toString(), 'body{}');
    }
  });

  test('HEAD: the same headers as GET, no body; Range is ignored', async () => {
    const g = await get('/static/plain.txt');
    const h = await get('/static/plain.txt', { REQUEST_METHOD: 'HEAD' });
    assert.equal(h.status, 200);
    assert.deepEqual(h.headers, g.headers);
    assert.equal(h.body.length, 0);
    const range = await get('/static/plain.txt', { HTTP_RANGE: 'bytes=0-3' });
    assert.equal(range.status, 200);
    assert.equal(range.body.toString(), 'plain text\n');
  });

  test('gzip: FILE.gz with Content-Encoding when the client accepts gzip; Vary on every answer for the file', async () => {
    const gz = await get('/static/app.js', { HTTP_ACCEPT_ENCODING: 'deflate, gzip;q=0.8, br' });
    assert.equal(gz.status, 200);
    assert.equal(header(gz, 'content-encoding'), 'gzip');
    assert.equal(header(gz, 'vary'), 'Accept-Encoding');
    assert.match(header(gz, 'content-type')!, /javascript/);
    assert.equal(header(gz, 'content-length'), String(site.jsGz.length));
    assert.deepEqual(gz.body, site.jsGz);
    for (const ae of [undefined, 'gzip;q=0', 'br']) {
      const plain = await get('/static/app.js', ae === undefined ? {} : { HTTP_ACCEPT_ENCODING: ae });
      assert.equal(header(plain, 'content-encoding'), undefined, String(ae));
      assert.equal(header(plain, 'vary'), 'Accept-Encoding');
      assert.deepEqual(plain.body, site.js);
    }
    const nm = await get('/static/app.js', { HTTP_ACCEPT_ENCODING: 'gzip', HTTP_IF_MODIFIED_SINCE: MTIME_HTTP });
    assert.equal(nm.status, 304);
    assert.deepEqual(nm.headers, [['Last-Modified', MTIME_HTTP], ['Vary', 'Accept-Encoding']]);
    // A file no gzip option covers has no Vary.
    assert.equal(header(await get('/static/a.css', { HTTP_ACCEPT_ENCODING: 'gzip' }), 'vary'), undefined);
  });

  test('a 5 MB file arrives whole', async () => {
    const r = await get('/static/big.bin');
    assert.equal(header(r, 'content-length'), String(site.big.length));
    assert.equal(header(r, 'content-type'), 'application/octet-stream');
    assert.equal(r.body.length, site.big.length);
    assert.equal(sha(r.body), sha(site.big));
  });

  test('keep-alive extension (raw): files, 304, HEAD and app answers share one connection, each framed', async () => {
    const ka = (path: string, extra: Vars = {}): Vars => ({ ...getVars(path), TSGI_KEEPALIVE: '1', ...extra });
    const steps: Array<{ vars: Vars; head?: boolean }> = [
      { vars: ka('/static/a.css') },
      { vars: ka('/static/a.css', { REQUEST_METHOD: 'HEAD' }), head: true },
      { vars: ka('/static/a.css', { HTTP_IF_MODIFIED_SINCE: MTIME_HTTP }) },
      { vars: ka('/static/big.bin') },
      { vars: ka('/static/app.js', { HTTP_ACCEPT_ENCODING: 'gzip' }) },
      { vars: ka('/app-after') },
    ];
    const { responses: rs, closedAfter } = await conversation(sock, steps);
    assert.equal(closedAfter, -1, 'the connection stays open after every request');
    assert.equal(rs.length, steps.length);
    assert.deepEqual(rs.map((r) => r.headers.get('x-tsgi-keepalive')), steps.map(() => '1'));
    assert.deepEqual(rs.map((r) => r.status), [200, 200, 304, 200, 200, 200]);
    assert.equal(rs[0]!.body.toString(), 'body{}');
    assert.equal(rs[1]!.headers.get('content-length'), '6');
    assert.equal(rs[1]!.body.length, 0);
    assert.equal(rs[2]!.body.length, 0);
    assert.equal(sha(rs[3]!.body), sha(site.big));
    assert.deepEqual(rs[4]!.body, site.jsGz);
    assert.equal(rs[5]!.body.toString(), 'app GET /app-after');
  });

  // ---- the real nginx (plain uwsgi) ----------------------------------------------------------------------

  test('behind nginx: files, index, map2, check-static, 304, HEAD, gzip, POST and misses to the app, 5 MB whole', async () => {
    const css = await httpRequest(`${nginxBase}/static/a.css`);
    assert.equal(css.status, 200);
    assert.equal(css.headers['content-type'], 'text/css');
    assert.equal(css.headers['last-modified'], MTIME_HTTP);
    assert.ok(css.headers.expires, 'Expires passed on');
    assert.equal(css.body.toString(), 'body{}');
    assert.equal((await httpRequest(`${nginxBase}/static/sub/`)).body.toString(), '<p>index</p>\n');
    assert.equal((await httpRequest(`${nginxBase}/m2/x.txt`)).body.toString(), 'map2 file\n');
    assert.equal((await httpRequest(`${nginxBase}/robots.txt`)).body.toString(), 'User-agent: *\n');
    assert.equal((await httpRequest(`${nginxBase}/favicon.ico`)).body.toString(), 'ICO!');
    const nm = await httpRequest(`${nginxBase}/static/a.css`, { headers: { 'If-Modified-Since': MTIME_HTTP } });
    assert.equal(nm.status, 304);
    assert.equal(nm.body.length, 0);
    const head = await httpRequest(`${nginxBase}/static/plain.txt`, { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(head.headers['content-length'], '11');
    assert.equal(head.body.length, 0);
    const gz = await httpRequest(`${nginxBase}/static/app.js`, { headers: { 'Accept-Encoding': 'gzip' } });
    assert.equal(gz.headers['content-encoding'], 'gzip');
    assert.equal(gz.headers.vary, 'Accept-Encoding');
    assert.deepEqual(gz.body, site.jsGz);
    assert.equal((await httpRequest(`${nginxBase}/static/a.css`, { method: 'POST', body: 'x=1' })).body.toString(), 'app POST /static/a.css');
    assert.equal((await httpRequest(`${nginxBase}/static/missing.css`)).body.toString(), 'app GET /static/missing.css');
    assert.equal((await httpRequest(`${nginxBase}/static/skip.php`)).body.toString(), 'app GET /static/skip.php');
    assert.equal((await httpRequest(`${nginxBase}/static/out.txt`)).body.toString(), 'app GET /static/out.txt');
    for (const p of ['/static/%2e%2e/secret/s.txt', '/static/..%2fsecret/s.txt', '/static/sub/%2E%2E/%2e%2e/secret/s.txt']) {
      const r = await httpRequest(`${nginxBase}${p}`);
      assert.notEqual(r.body.toString(), 'SECRET', p);
    }
    const big = await httpRequest(`${nginxBase}/static/big.bin`);
    assert.equal(big.status, 200);
    assert.equal(big.body.length, site.big.length);
    assert.equal(sha(big.body), sha(site.big));
  });

  // ---- tsgi-proxy (the keep-alive extension) -------------------------------------------------------------

  test('through tsgi-proxy (upstream keepalive 8): a file, then an app request, on the same backend connection', async () => {
    // The worker's sockets while it answers: its listening socket and the connection the request came on.
    const first = await httpRequest(`${proxyBase}/sockets`);
    assert.equal(first.status, 200);
    const css = await httpRequest(`${proxyBase}/static/a.css`);
    assert.equal(css.status, 200);
    assert.equal(css.body.toString(), 'body{}');
    assert.equal(css.headers['x-tsgi-keepalive'], undefined, 'the marker stays between proxy and worker');
    const big = await httpRequest(`${proxyBase}/static/big.bin`);
    assert.equal(sha(big.body), sha(site.big));
    const nm = await httpRequest(`${proxyBase}/static/a.css`, { headers: { 'If-Modified-Since': MTIME_HTTP } });
    assert.equal(nm.status, 304);
    const head = await httpRequest(`${proxyBase}/static/a.css`, { method: 'HEAD' });
    assert.equal(head.headers['content-length'], '6');
    const last = await httpRequest(`${proxyBase}/sockets`);
    assert.equal(last.body.toString(), first.body.toString(), 'no other connection was opened: the static answers kept the one connection');
  });
});

test('mime-file replaces /etc/mime.types; without static options the worker does not even load the static module', async () => {
  const site = makeSite();
  const sock = join(site.root, 'mime.sock');
  const tsgi = await startTsgi(['-s', sock, '-p', '1', '--wsgi-file', join(site.root, 'app.py'), '--static-map', `/static=${join(site.root, 'static')}`,
    '--mime-file', join(site.root, 'extra.types'), '--offload-threads', '2'], { env: activatedEnv(sharedVenv()) });
  try {
    const type = async (p: string): Promise<string | undefined> => header(await uwsgiRequest(sock, getVars(p)), 'content-type');
    assert.equal(await type('/static/f.tsgi'), 'application/x-tsgi-test');
    assert.equal(await type('/static/a.css'), 'text/x-special');
    assert.equal(await type('/static/plain.txt'), 'application/octet-stream', 'only the mime-file is read');
    assert.equal((await uwsgiRequest(sock, getVars('/modules'))).body.toString(), 'static module loaded: True');
  } finally {
    assert.equal((await stopProcess(tsgi)).code, 0);
  }
  const plainSock = join(site.root, 'plain.sock');
  const plain = await startTsgi(['-s', plainSock, '-p', '1', '--wsgi-file', join(site.root, 'app.py')], { env: activatedEnv(sharedVenv()) });
  try {
    assert.equal((await uwsgiRequest(plainSock, getVars('/modules'))).body.toString(), 'static module loaded: False');
    assert.equal((await uwsgiRequest(plainSock, getVars('/static/a.css'))).body.toString(), 'app GET /static/a.css');
  } finally {
    assert.equal((await stopProcess(plain)).code, 0);
  }
});

test('static-map without MOUNT=PATH: one line naming the file, line and option; exit status 1', () => {
  const dir = tempDir();
  const ini = join(dir, 'bad.ini');
  writeFileSync(ini, '[uwsgi]\nsocket = :0\nstatic-map = nomount\n');
  const r = spawnSync(tsgiBin, ['--ini', ini], { encoding: 'utf8', env: { PATH: process.env.PATH, HOME: process.env.HOME } });
  assert.equal(r.status, 1);
  assert.equal(r.stderr, `tsgi: ${ini}:3: option 'static-map': bad value 'nomount': expected MOUNT=PATH (e.g. /static=/srv/app/static)\n`);
});
