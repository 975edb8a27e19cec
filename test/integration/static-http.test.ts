/**
 * uWSGI's static-map family on tsgi's HTTP router (docs/static-files.md): files the router sends itself,
 * what goes to the app instead, and that nothing outside a mount's directory is ever sent.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { repoRoot } from '../helpers/paths.js';
import { activatedEnv, freePort, httpRequest, sharedVenv, startNginx, startTsgi, stopProcess, tempDir, writeFiles, type RunningProcess } from '../helpers/procs.js';
import { parseResponses, rawHttp } from '../helpers/http-raw.js';

const env = activatedEnv(sharedVenv());

const APP = `def application(environ, start_response):
    start_response('200 OK', [('Content-Type', 'text/plain')])
    return [('APP %s %s' % (environ['REQUEST_METHOD'], environ['PATH_INFO'])).encode('latin-1')]
`;

describe('static-map and friends on the HTTP router', () => {
  let tsgi: RunningProcess;
  let port: number;
  let dir: string;
  const big = randomBytes(5 * 1024 * 1024);
  const MTIME = new Date('2026-01-02T03:04:05Z');

  before(async () => {
    dir = tempDir();
    writeFiles(dir, {
      'app.py': APP,
      'www/a.css': 'body { color: blue }\n',
      'www/page.html': '<p>page</p>\n',
      'www/sub/index.html': '<h1>index</h1>\n',
      'www/emptydir/.keep': '',
      'www/x.php': '<?php ?>\n',
      'www/app.js': 'console.log(1)\n',
      'whole/files/f.txt': 'from static-map2\n',
      'docroot/robots.txt': 'User-agent: *\n',
      'favicon.ico': 'ICO',
      'outside/secret.txt': 'secret\n',
      'safe/shared.txt': 'shared through static-safe\n',
    });
    writeFileSync(join(dir, 'www/app.js.gz'), gzipSync('console.log(1)\n'));
    writeFileSync(join(dir, 'www/big.bin'), big);
    utimesSync(join(dir, 'www/a.css'), MTIME, MTIME);
    symlinkSync(join(dir, 'outside/secret.txt'), join(dir, 'www/secret.txt'));
    symlinkSync(join(dir, 'safe/shared.txt'), join(dir, 'www/shared.txt'));
    mkdirSync(join(dir, 'www/emptydir/sub'), { recursive: true });
    port = await freePort();
    tsgi = await startTsgi([
      '--http-socket', `127.0.0.1:${port}`, '-p', '1', '--wsgi-file', 'app.py', '--chdir', dir,
      '--static-map', '/static=www', '--static-map', '/slash/=www/', '--static-map', '/favicon.ico=favicon.ico', '--static-map2', '/files=whole',
      '--check-static', 'docroot', '--static-index', 'index.html', '--static-skip-ext', '.php',
      '--static-safe', 'safe', '--static-expires-type', 'text/css=3600', '--static-expires', '\\.html$ 60',
      '--static-gzip-ext', '.js',
    ], { cwd: dir, env });
  });
  after(async () => {
    assert.equal((await stopProcess(tsgi)).code, 0, tsgi.output());
  });

  const get = (path: string, headers: Record<string, string> = {}, method = 'GET') =>
    httpRequest(`http://127.0.0.1:${port}${path}`, { method, headers });

  test('a mapped file: its bytes, type, length, Last-Modified and the Expires of its type', async () => {
    const r = await get('/static/a.css');
    assert.equal(r.status, 200);
    assert.equal(r.body.toString(), 'body { color: blue }\n');
    assert.equal(r.headers['content-type'], 'text/css');
    assert.equal(r.headers['content-length'], '21');
    assert.equal(r.headers['last-modified'], MTIME.toUTCString());
    const expires = Date.parse(String(r.headers.expires));
    assert.ok(Math.abs(expires - (Date.now() + 3600_000)) < 120_000, `Expires ${r.headers.expires} is about an hour from now`);
    assert.ok(r.headers.date, 'a Date header');
    assert.equal(r.headers.vary, undefined, 'no gzip option covers .css');
  });

  test('static-expires by file name', async () => {
    const r = await get('/static/page.html');
    assert.equal(r.status, 200);
    const expires = Date.parse(String(r.headers.expires));
    assert.ok(Math.abs(expires - (Date.now() + 60_000)) < 60_000, `Expires ${r.headers.expires} is about a minute from now`);
  });

  test('a missing file, the bare mount and a prefix that is not the mount go to the app', async () => {
    for (const path of ['/static/missing.css', '/staticx/a.css', '/static/emptydir', '/other']) {
      const r = await get(path);
      assert.equal(r.body.toString(), `APP GET ${path}`, path);
    }
  });

  test('a directory serves its static-index file', async () => {
    for (const path of ['/static/sub', '/static/sub/']) {
      const r = await get(path);
      assert.equal(r.body.toString(), '<h1>index</h1>\n', path);
      assert.equal(r.headers['content-type'], 'text/html');
    }
  });

  test('static-map2 appends the whole path; check-static serves any path; a mount of one file', async () => {
    assert.equal((await get('/files/f.txt')).body.toString(), 'from static-map2\n');
    assert.equal((await get('/robots.txt')).body.toString(), 'User-agent: *\n');
    const ico = await get('/favicon.ico');
    assert.equal(ico.body.toString(), 'ICO');
    assert.equal((await get('/favicon.ico/x')).body.toString(), 'APP GET /favicon.ico/x');
    assert.equal((await get('/slash/a.css')).body.toString(), 'body { color: blue }\n', 'a mount written with a trailing slash');
  });

  test('only GET and HEAD; skipped extensions go to the app', async () => {
    assert.equal((await get('/static/a.css', {}, 'POST')).body.toString(), 'APP POST /static/a.css');
    assert.equal((await get('/static/x.php')).body.toString(), 'APP GET /static/x.php');
    const head = await get('/static/a.css', {}, 'HEAD');
    assert.equal(head.status, 200);
    assert.equal(head.headers['content-length'], '21');
    assert.equal(head.body.length, 0);
  });

  test('If-Modified-Since: 304 without a body when the file is not newer, 200 when it is', async () => {
    const same = await get('/static/a.css', { 'If-Modified-Since': MTIME.toUTCString() });
    assert.equal(same.status, 304);
    assert.equal(same.body.length, 0);
    const older = await get('/static/a.css', { 'If-Modified-Since': new Date(MTIME.getTime() - 1000).toUTCString() });
    assert.equal(older.status, 200);
  });

  test('gzip: FILE.gz for a client that accepts it, with Vary; the plain file otherwise', async () => {
    const gz = await get('/static/app.js', { 'Accept-Encoding': 'gzip, br' });
    assert.equal(gz.headers['content-encoding'], 'gzip');
    assert.equal(gz.headers.vary, 'Accept-Encoding');
    assert.equal(gz.headers['content-type'], 'text/javascript');
    assert.deepEqual(gz.body, gzipSync('console.log(1)\n'));
    for (const ae of [undefined, 'gzip;q=0', 'br']) {
      const plain = await get('/static/app.js', ae ? { 'Accept-Encoding': ae } : {});
      assert.equal(plain.headers['content-encoding'], undefined, String(ae));
      assert.equal(plain.headers.vary, 'Accept-Encoding');
      assert.equal(plain.body.toString(), 'console.log(1)\n');
    }
  });

  test('never outside the mount: symlinks out and dot segments go to the app, static-safe allows a directory', async () => {
    assert.equal((await get('/static/secret.txt')).body.toString(), 'APP GET /static/secret.txt');
    assert.match(tsgi.output(), /static file \S+\/www\/secret\.txt is outside \S+\/www and every static-safe directory; passed to the app/);
    assert.equal((await get('/static/shared.txt')).body.toString(), 'shared through static-safe\n');
    for (const path of ['/static/../outside/secret.txt', '/static/%2e%2e/outside/secret.txt', '/static/..%2foutside%2fsecret.txt', '/files/../outside/secret.txt']) {
      const { bytes } = await rawHttp(port, `GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
      const [r] = parseResponses(bytes);
      assert.ok(r, path);
      assert.doesNotMatch(r.body.toString(), /secret\n/, `${path} must not send the file`);
    }
  });

  test('a 5 MB file arrives whole, and the connection serves the next request', async () => {
    const r = await get('/static/big.bin');
    assert.equal(r.status, 200);
    assert.equal(r.body.length, big.length);
    assert.equal(createHash('sha256').update(r.body).digest('hex'), createHash('sha256').update(big).digest('hex'));
    const curl = spawnSync('curl', ['-s', '-o', '/dev/null', '-o', '/dev/null', '-w', '%{http_code} %{size_download} %{num_connects}\n',
      `http://127.0.0.1:${port}/static/big.bin`, `http://127.0.0.1:${port}/hello`], { encoding: 'utf8' });
    assert.equal(curl.stdout, `200 ${big.length} 1\n200 14 0\n`, 'the second request reuses the connection');
  });

  test('pipelined static and app requests are answered in order', async () => {
    const paths = ['/static/a.css', '/app/1', '/static/sub/', '/static/missing', '/robots.txt', '/app/2'];
    const reqs = paths.map((p) => `GET ${p} HTTP/1.1\r\nHost: x\r\n\r\n`).join('') + 'GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n';
    const { bytes } = await rawHttp(port, reqs);
    const rs = parseResponses(bytes);
    assert.deepEqual(rs.map((r) => r.body.toString()), [
      'body { color: blue }\n', 'APP GET /app/1', '<h1>index</h1>\n', 'APP GET /static/missing', 'User-agent: *\n', 'APP GET /app/2', 'APP GET /last',
    ]);
  });

  test('the request log has a line for a file the router sent', async () => {
    await get('/robots.txt?logged=1');
    const line = /\] GET \/robots\.txt\?logged=1 => generated 14 bytes in \d+ msecs \(HTTP\/1\.1 200\) static file/;
    // The line goes through the router's log pipe, which the test reads on its own schedule.
    for (let i = 0; i < 100 && !line.test(tsgi.output()); i++) await new Promise((r) => setTimeout(r, 50));
    assert.match(tsgi.output(), line);
  });
});

describe('static-map configuration errors', () => {
  const tsgiBin = join(repoRoot, 'bin/tsgi');

  test('a static-map without MOUNT=PATH: one line naming the file, line and option, exit non-zero', () => {
    const dir = tempDir();
    writeFiles(dir, { 'app.ini': '[uwsgi]\nhttp-socket = 127.0.0.1:0\nwsgi-file = app.py\nstatic-map = /static\n', 'app.py': APP });
    const r = spawnSync(process.execPath, [tsgiBin, '--ini', join(dir, 'app.ini')], { cwd: dir, env, encoding: 'utf8' });
    assert.notEqual(r.status, 0);
    const lines = r.stderr.trim().split('\n');
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0]!, /app\.ini:4: option 'static-map': bad value '\/static': expected MOUNT=PATH/);
  });

  test('a bad static-expires regular expression is refused the same way', () => {
    const dir = tempDir();
    writeFiles(dir, { 'app.ini': '[uwsgi]\nhttp-socket = 127.0.0.1:0\nwsgi-file = app.py\nstatic-map = /s=.\nstatic-expires = ([ 60\n', 'app.py': APP });
    const r = spawnSync(process.execPath, [tsgiBin, '--ini', join(dir, 'app.ini')], { cwd: dir, env, encoding: 'utf8' });
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /app\.ini:5: option 'static-expires': bad regular expression '\(\['/);
  });

});

describe('static-map with a Node app: the worker sends the files, over HTTP and over uwsgi from nginx', () => {
  let tsgi: RunningProcess;
  let nginx: RunningProcess;
  let httpPort: number;
  let nginxPort: number;

  before(async () => {
    const dir = tempDir();
    writeFiles(dir, {
      'app.mjs': 'export default (req, res) => { res.setHeader("Content-Type", "text/plain"); res.end(`NODE ${req.method} ${req.url}`); };\n',
      'www/a.css': 'body { color: red }\n',
      'www/sub/index.html': '<h1>node index</h1>\n',
      'outside.txt': 'secret\n',
    });
    writeFileSync(join(dir, 'www/big.bin'), randomBytes(3 * 1024 * 1024));
    symlinkSync(join(dir, 'outside.txt'), join(dir, 'www/out.txt'));
    httpPort = await freePort();
    const uwsgiPort = await freePort();
    nginxPort = await freePort();
    tsgi = await startTsgi(['--http-socket', `127.0.0.1:${httpPort}`, '--socket', `127.0.0.1:${uwsgiPort}`, '-p', '2', '--wsgi-file', 'app.mjs', '--app-contract', 'listener',
      '--static-map', '/static=www', '--static-index', 'index.html'], { cwd: dir, env });
    nginx = await startNginx(`server { listen 127.0.0.1:${nginxPort}; location / { include /etc/nginx/uwsgi_params; uwsgi_pass 127.0.0.1:${uwsgiPort}; } }`, nginxPort);
  });
  after(async () => {
    if (nginx) await stopProcess(nginx);
    if (tsgi) assert.equal((await stopProcess(tsgi)).code, 0, tsgi.output());
  });

  for (const via of ['HTTP', 'nginx → uwsgi'] as const) {
    test(`${via}: a file, an index, a missing file and a symlink out of the mount`, async () => {
      const port = via === 'HTTP' ? httpPort : nginxPort;
      const css = await httpRequest(`http://127.0.0.1:${port}/static/a.css`);
      assert.equal(css.status, 200);
      assert.equal(css.body.toString(), 'body { color: red }\n');
      assert.equal(css.headers['content-type'], 'text/css');
      assert.ok(css.headers['last-modified']);
      assert.equal((await httpRequest(`http://127.0.0.1:${port}/static/sub/`)).body.toString(), '<h1>node index</h1>\n');
      assert.equal((await httpRequest(`http://127.0.0.1:${port}/static/nope?x=1`)).body.toString(), 'NODE GET /static/nope?x=1');
      assert.equal((await httpRequest(`http://127.0.0.1:${port}/static/out.txt`)).body.toString(), 'NODE GET /static/out.txt');
      const big = await httpRequest(`http://127.0.0.1:${port}/static/big.bin`);
      assert.equal(big.body.length, 3 * 1024 * 1024);
      const head = await httpRequest(`http://127.0.0.1:${port}/static/a.css`, { method: 'HEAD' });
      assert.equal(head.headers['content-length'], '20');
      assert.equal(head.body.length, 0);
    });
  }

  test('static responses are logged like app responses', async () => {
    await httpRequest(`http://127.0.0.1:${httpPort}/static/a.css?logline`);
    const line = /GET \/static\/a\.css\?logline => generated 20 bytes in \d+ msecs \(HTTP\/1\.1 200\)/;
    for (let i = 0; i < 100 && !line.test(tsgi.output()); i++) await new Promise((r) => setTimeout(r, 50));
    assert.match(tsgi.output(), line);
  });
});
