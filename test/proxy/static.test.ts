/**
 * Static files: root, alias, index, try_files, autoindex, types, conditional requests, byte ranges on a
 * 1 GB (sparse) file, 10k small files, and path traversal attempts — the latter compared with the real nginx
 * serving the same tree with the same config.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, symlinkSync, writeFileSync, openSync, ftruncateSync, closeSync, writeSync, utimesSync } from 'node:fs';
import http from 'node:http';
import { gunzipSync } from 'node:zlib';
import { join } from 'node:path';
import { freePort, get, have, rawRequest, run, startProxy, tempDir, waitFor, canConnect, type Proc } from './helpers.js';

const GB = 1024 * 1024 * 1024;

/** A GET whose body is kept as bytes (chunked framing removed). */
function rawBytes(port: number, path: string, headers: Record<string, string>): Promise<{ headers: Map<string, string>; body: Buffer }> {
  return new Promise((res, rej) => {
    const req = http.get({ host: '127.0.0.1', port, path, headers, agent: false }, (r) => {
      const parts: Buffer[] = [];
      r.on('data', (c: Buffer) => parts.push(c));
      r.on('end', () => {
        const h = new Map<string, string>();
        for (const [k, v] of Object.entries(r.headers)) h.set(k, String(v));
        res({ headers: h, body: Buffer.concat(parts) });
      });
    });
    req.on('error', rej);
  });
}

describe('static files', () => {
  let t: ReturnType<typeof tempDir>;
  let port: number;
  let nginxPort: number;
  let proxy: Proc;
  let nginx: Proc | undefined;

  before(async () => {
    t = tempDir('static');
    const www = join(t.dir, 'www');
    mkdirSync(join(www, 'dir', 'sub'), { recursive: true });
    mkdirSync(join(www, 'noindex'));
    mkdirSync(join(www, 'many'));
    mkdirSync(join(t.dir, 'secret'));
    writeFileSync(join(t.dir, 'secret', 'passwd'), 'SECRET\n');
    writeFileSync(join(www, 'index.html'), '<p>index</p>\n');
    writeFileSync(join(www, 'hello.txt'), 'hello world\n');
    writeFileSync(join(www, 'style.css'), 'body{}\n');
    writeFileSync(join(www, 'dir', 'index.html'), 'dir index\n');
    writeFileSync(join(www, 'dir', 'a b.txt'), 'spaced\n');
    writeFileSync(join(www, 'noindex', 'x.txt'), 'x\n');
    writeFileSync(join(www, 'noindex', '<b>.txt'), 'html name\n');
    utimesSync(join(www, 'hello.txt'), new Date('2020-01-02T03:04:05Z'), new Date('2020-01-02T03:04:05Z'));
    symlinkSync(join(t.dir, 'secret', 'passwd'), join(www, 'link-out'));
    for (let i = 0; i < 10000; i++) writeFileSync(join(www, 'many', `f${i}.txt`), `file ${i}\n`);
    // A 1 GB file that takes no disk space: sparse, with a marker at its end.
    const fd = openSync(join(www, 'big.bin'), 'w');
    ftruncateSync(fd, GB);
    writeSync(fd, 'END!', GB - 4);
    closeSync(fd);
    writeFileSync(join(t.dir, 'alias.txt'), 'aliased\n');
    writeFileSync(join(www, 'large.txt'), 'line of text\n'.repeat(30000));
    port = await freePort();
    nginxPort = await freePort();
    const server = (p: number) => `
    server {
      listen 127.0.0.1:${p};
      root ${www};
      location / { }
      location /files/ { alias ${t.dir}/; }
      location /noindex/ { autoindex on; }
      location /json/ { alias ${www}/noindex/; autoindex on; autoindex_format json; }
      location /try/ { try_files $uri /hello.txt; }
      location /try404/ { try_files $uri =404; }
      location /named/ { try_files $uri @fallback; }
      location @fallback { return 200 "fallback"; }
      location /gz/ { alias ${www}/; gzip on; gzip_types text/plain; gzip_vary on; gzip_min_length 5; }
      location /types/ { types { text/x-special txt; } default_type application/x-other; alias ${www}/; }
    }`;
    const conf = (p: number) => `events {}\nhttp {\n  include mime.types;\n  access_log off;\n  error_log ${t.dir}/error-${p}.log;\n${server(p)}\n}\n`;
    writeFileSync(join(t.dir, 'proxy.conf'), conf(port));
    writeFileSync(join(t.dir, 'nginx.conf'), `pid ${t.dir}/nginx.pid;\n` + conf(nginxPort).replace('include mime.types;', 'include /etc/nginx/mime.types;'));
    proxy = await startProxy(t.dir, 'proxy.conf', port);
    if (have('/usr/sbin/nginx') && process.getuid?.() === 0) {
      nginx = run('/usr/sbin/nginx', ['-p', t.dir, '-c', join(t.dir, 'nginx.conf'), '-e', join(t.dir, 'nginx-error.log'), '-g', 'daemon off; user root;']);
      await waitFor('nginx', () => canConnect(nginxPort));
    }
  });

  after(async () => {
    await proxy?.stop('SIGQUIT');
    await nginx?.stop('SIGQUIT');
    t?.cleanup();
  });

  test('a file is served with its type, length, Last-Modified, ETag and Accept-Ranges', async () => {
    const r = await get(port, '/hello.txt');
    assert.equal(r.status, 200);
    assert.equal(r.body, 'hello world\n');
    assert.equal(r.headers.get('content-type'), 'text/plain');
    assert.equal(r.headers.get('content-length'), '12');
    assert.equal(r.headers.get('last-modified'), 'Thu, 02 Jan 2020 03:04:05 GMT');
    assert.match(r.headers.get('etag') ?? '', /^"[0-9a-f]+-c"$/);
    assert.equal(r.headers.get('accept-ranges'), 'bytes');
    assert.equal((await get(port, '/style.css')).headers.get('content-type'), 'text/css');
  });

  test('a file changed on disk is served fresh, even with the same size', async () => {
    const f = join(t.dir, 'www', 'changing.txt');
    writeFileSync(f, 'version 1\n');
    assert.equal((await get(port, '/changing.txt')).body, 'version 1\n');
    writeFileSync(f, 'version 2\n');
    utimesSync(f, new Date(), new Date(Date.now() + 5000));
    assert.equal((await get(port, '/changing.txt')).body, 'version 2\n');
  });

  test('gzip: a client that accepts it gets the file compressed, with a weak ETag and Vary; others get it plain', async () => {
    const gz = await rawBytes(port, '/gz/large.txt', { 'Accept-Encoding': 'gzip, deflate' });
    assert.equal(gz.headers.get('content-encoding'), 'gzip');
    assert.equal(gz.headers.get('vary'), 'Accept-Encoding');
    assert.equal(gz.headers.has('content-length'), false);
    assert.match(gz.headers.get('etag') ?? '', /^W\//);
    assert.equal(gunzipSync(gz.body).toString('latin1'), 'line of text\n'.repeat(30000));
    const small = await rawBytes(port, '/gz/hello.txt', { 'Accept-Encoding': 'gzip' });
    assert.equal(gunzipSync(small.body).toString(), 'hello world\n');
    const plain = await get(port, '/gz/hello.txt');
    assert.equal(plain.headers.has('content-encoding'), false);
    assert.equal(plain.body, 'hello world\n');
    const css = await get(port, '/gz/style.css', { 'Accept-Encoding': 'gzip' });
    assert.equal(css.headers.has('content-encoding'), false, 'text/css is not in gzip_types here');
  });

  test('HEAD gets the headers without the body', async () => {
    const r = await get(port, '/hello.txt', {}, 'HEAD');
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('content-length'), '12');
    assert.equal(r.body, '');
  });

  test('a HEAD or a Range request does not read a small file into the memory cache; a GET does', async () => {
    // Rewriting a file with the same size, inode and mtime is invisible to the cache's stat check: a
    // request that filled the cache shows in the next GET answering the old content.
    const when = new Date('2022-02-02T02:02:02Z');
    const rewrite = (f: string, text: string) => {
      writeFileSync(f, text);
      utimesSync(f, when, when);
    };
    const f = (name: string) => join(t.dir, 'www', name);
    rewrite(f('cache-get.txt'), 'old content\n');
    rewrite(f('cache-head.txt'), 'old content\n');
    rewrite(f('cache-range.txt'), 'old content\n');
    assert.equal((await get(port, '/cache-get.txt')).body, 'old content\n');
    const head = await get(port, '/cache-head.txt', {}, 'HEAD');
    assert.equal(head.status, 200);
    assert.equal(head.headers.get('content-length'), '12');
    assert.equal(head.headers.get('last-modified'), when.toUTCString());
    assert.equal(head.body, '');
    const range = await get(port, '/cache-range.txt', { Range: 'bytes=4-6' });
    assert.equal(range.status, 206);
    assert.equal(range.body, 'con');
    assert.equal(range.headers.get('content-range'), 'bytes 4-6/12');
    assert.equal(range.headers.get('etag'), head.headers.get('etag'));
    for (const name of ['cache-get.txt', 'cache-head.txt', 'cache-range.txt']) rewrite(f(name), 'new content\n');
    assert.equal((await get(port, '/cache-get.txt')).body, 'old content\n', 'the GET filled the cache (the check sees no change)');
    assert.equal((await get(port, '/cache-head.txt')).body, 'new content\n', 'the HEAD left the cache alone');
    assert.equal((await get(port, '/cache-range.txt')).body, 'new content\n', 'the Range request left the cache alone');
    // That GET cached it: a Range is now cut from the cached copy.
    assert.equal((await get(port, '/cache-head.txt', { Range: 'bytes=0-2' })).body, 'new');
  });

  test('If-None-Match and If-Modified-Since answer 304; If-Match mismatch answers 412', async () => {
    const etag = (await get(port, '/hello.txt')).headers.get('etag')!;
    assert.equal((await get(port, '/hello.txt', { 'If-None-Match': etag })).status, 304);
    assert.equal((await get(port, '/hello.txt', { 'If-Modified-Since': 'Thu, 02 Jan 2020 03:04:05 GMT' })).status, 304);
    assert.equal((await get(port, '/hello.txt', { 'If-Modified-Since': 'Thu, 02 Jan 2020 03:04:06 GMT' })).status, 200);
    assert.equal((await get(port, '/hello.txt', { 'If-Match': '"nope"' })).status, 412);
  });

  test('Range: 206 with Content-Range, suffix ranges, multipart for several, 416 past the end', async () => {
    const r = await get(port, '/hello.txt', { Range: 'bytes=0-4' });
    assert.equal(r.status, 206);
    assert.equal(r.body, 'hello');
    assert.equal(r.headers.get('content-range'), 'bytes 0-4/12');
    const s = await get(port, '/hello.txt', { Range: 'bytes=-6' });
    assert.equal(s.body, 'world\n');
    const m = await get(port, '/hello.txt', { Range: 'bytes=0-0,6-6' });
    assert.equal(m.status, 206);
    assert.match(m.headers.get('content-type')!, /^multipart\/byteranges; boundary=/);
    assert.match(m.body, /Content-Range: bytes 0-0\/12\r\n\r\nh\r\n/);
    const bad = await get(port, '/hello.txt', { Range: 'bytes=100-' });
    assert.equal(bad.status, 416);
    assert.equal(bad.headers.get('content-range'), 'bytes */12');
  });

  test('a 1 GB file: a Range at its end is 206 with the right bytes, a full HEAD says 1073741824', async () => {
    const r = await get(port, '/big.bin', { Range: `bytes=${GB - 4}-` });
    assert.equal(r.status, 206);
    assert.equal(r.body, 'END!');
    assert.equal(r.headers.get('content-range'), `bytes ${GB - 4}-${GB - 1}/${GB}`);
    const mid = await get(port, '/big.bin', { Range: 'bytes=536870912-536870919' });
    assert.equal(mid.body, '\0'.repeat(8));
    assert.equal((await get(port, '/big.bin', {}, 'HEAD')).headers.get('content-length'), String(GB));
  });

  test('index files, the directory redirect, and 403 for a directory without index', async () => {
    assert.equal((await get(port, '/')).body, '<p>index</p>\n');
    assert.equal((await get(port, '/dir/')).body, 'dir index\n');
    const d = await get(port, '/dir');
    assert.equal(d.status, 301);
    assert.equal(d.headers.get('location'), `http://localhost:${port}/dir/`);
    assert.equal((await get(port, '/dir/sub/')).status, 403);
    assert.equal((await get(port, '/dir/a%20b.txt')).body, 'spaced\n');
  });

  test('alias maps the location prefix to another directory', async () => {
    assert.equal((await get(port, '/files/alias.txt')).body, 'aliased\n');
  });

  test('autoindex lists a directory, escaping names, as HTML and as JSON', async () => {
    const r = await get(port, '/noindex/');
    assert.equal(r.status, 200);
    assert.match(r.body, /<a href="x\.txt">x\.txt<\/a>/);
    assert.match(r.body, /<a href="%3Cb%3E\.txt">&lt;b&gt;\.txt<\/a>/);
    const j = await get(port, '/json/');
    assert.equal(j.headers.get('content-type'), 'application/json');
    const list = JSON.parse(j.body) as Array<{ name: string; type: string; size: number }>;
    assert.deepEqual(list.map((e) => e.name).sort(), ['<b>.txt', 'x.txt']);
  });

  test('try_files: the first existing file, a fallback URI, =404, and a named location', async () => {
    assert.equal((await get(port, '/try/nothing')).body, 'hello world\n');
    assert.equal((await get(port, '/try404/nothing')).status, 404);
    assert.equal((await get(port, '/named/nothing')).body, 'fallback');
  });

  test('types {} in a location replaces the type map; unknown extensions get default_type', async () => {
    assert.equal((await get(port, '/types/hello.txt')).headers.get('content-type'), 'text/x-special');
    assert.equal((await get(port, '/types/style.css')).headers.get('content-type'), 'application/x-other');
  });

  test('10k small files are all served with the right content', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
    let bad = 0;
    const one = (i: number) =>
      new Promise<void>((res, rej) => {
        http
          .get({ host: '127.0.0.1', port, path: `/many/f${i}.txt`, agent }, (r) => {
            let b = '';
            r.setEncoding('latin1');
            r.on('data', (c) => (b += c));
            r.on('end', () => {
              if (r.statusCode !== 200 || b !== `file ${i}\n`) bad++;
              res();
            });
          })
          .on('error', rej);
      });
    for (let i = 0; i < 10000; i += 100) await Promise.all(Array.from({ length: 100 }, (_, k) => one(i + k)));
    agent.destroy();
    assert.equal(bad, 0);
  });

  const ATTACKS = [
    '/../secret/passwd',
    '/%2e%2e/secret/passwd',
    '/..%2fsecret/passwd',
    '/%2e%2e%2fsecret%2fpasswd',
    '/dir/../../secret/passwd',
    '/dir/%2e%2e/%2e%2e/secret/passwd',
    '/.%2e/secret/passwd',
    '//../secret/passwd',
    '/..\\secret\\passwd',
    '/%5c..%5csecret/passwd',
    '/hello.txt%00.html',
    '/dir/..%00/hello.txt',
    '/files/../secret/passwd',
    '/files/..%2fsecret/passwd',
    '/./.././secret/passwd',
  ];

  test('path traversal attempts never leave the root: each answer is 400, 403 or 404', async () => {
    for (const a of ATTACKS) {
      const r = await rawRequest(port, `GET ${a} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`);
      assert.ok([400, 403, 404].includes(r.status), `${a}: ${r.status}`);
      assert.ok(!r.body.includes('SECRET'), a);
    }
  });

  test('path traversal attempts get the same status from tsgi-proxy as from nginx', { skip: !have('/usr/sbin/nginx') || process.getuid?.() !== 0 ? 'needs /usr/sbin/nginx and root (nginx workers run as root here)' : false }, async () => {
    const diffs: string[] = [];
    for (const a of [...ATTACKS, '/link-out', '/dir', '/dir/sub/', '/nothing']) {
      const req = `GET ${a} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`;
      const [ours, theirs] = await Promise.all([rawRequest(port, req), rawRequest(nginxPort, req)]);
      if (ours.status !== theirs.status) diffs.push(`${a}: tsgi-proxy ${ours.status}, nginx ${theirs.status}`);
    }
    assert.deepEqual(diffs, []);
  });
});

