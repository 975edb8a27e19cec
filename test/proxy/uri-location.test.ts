import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { normalizePath, normalizeHost, percentDecode, splitTarget } from '../../src/proxy/uri.js';
import { findLocation } from '../../src/proxy/location.js';
import { findServer } from '../../src/proxy/listen.js';
import { DiskFs } from '../../src/proxy/conf/fs.js';
import { loadConf, type LoadedConf } from '../../src/proxy/conf/load.js';
import { tempDir } from './helpers.js';

test('paths are percent-decoded, dot segments resolved and slashes merged', () => {
  assert.equal(normalizePath('/a//b/./c/../d', true), '/a/b/d');
  assert.equal(normalizePath('/a//b', false), '/a//b');
  assert.equal(normalizePath('/a%2Fb/%2e%2e/c', true), '/a/c');
  assert.equal(normalizePath('/dir/..', true), '/');
  assert.equal(normalizePath('/x/.', true), '/x/');
  assert.equal(normalizePath('/caf%C3%A9', true), '/caf\xc3\xa9');
});

test('paths that climb above the root, bad escapes or an encoded NUL are refused', () => {
  for (const p of ['/..', '/../etc/passwd', '/a/../../b', '/%2e%2e/x', '/a/%2E%2E/%2e%2e/b', '/x%zz', '/x%00.html', '/x%', 'relative']) {
    assert.equal(normalizePath(p, true), null, p);
  }
  assert.equal(percentDecode('%41%4a'), 'AJ');
});

test('fuzz: a normalised path never contains a dot segment and never escapes the root', () => {
  const alphabet = ['/', '.', '..', '%2e', '%2f', 'a', '%2E%2E', '//', '%00', '%'];
  for (let i = 0; i < 20000; i++) {
    let p = '/';
    const n = (i % 9) + 1;
    for (let j = 0; j < n; j++) p += alphabet[(i * 7 + j * 13 + ((i >> j) & 7)) % alphabet.length];
    const r = normalizePath(p, i % 2 === 0);
    if (r === null) continue;
    assert.ok(r.startsWith('/'), p);
    assert.ok(!r.split('/').includes('..'), `${p} -> ${r}`);
    assert.ok(!r.includes('\0'), p);
  }
});

test('request targets: origin form, absolute form, query and fragment', () => {
  assert.deepEqual(splitTarget('/a?b=1'), { path: '/a', query: 'b=1', host: undefined });
  assert.deepEqual(splitTarget('http://Example.com:8080/x?y'), { path: '/x', query: 'y', host: 'Example.com:8080' });
  assert.deepEqual(splitTarget('http://h'), { path: '/', query: '', host: 'h' });
  assert.deepEqual(splitTarget('http://h?a=1#frag'), { path: '/', query: 'a=1', host: 'h' });
  assert.deepEqual(splitTarget('/p?x#f'), { path: '/p', query: 'x', host: undefined });
  assert.equal(splitTarget('*'), null);
});

test('Host values are lowercased, lose their port and reject path characters', () => {
  assert.equal(normalizeHost('Example.COM:80'), 'example.com');
  assert.equal(normalizeHost('example.com.'), 'example.com');
  assert.equal(normalizeHost('[::1]:80'), '[::1]');
  assert.equal(normalizeHost('a/b'), null);
  assert.equal(normalizeHost('..'), null);
  assert.equal(normalizeHost('h:x'), null);
});

async function conf(text: string): Promise<LoadedConf> {
  const t = tempDir('loc');
  try {
    writeFileSync(join(t.dir, 'nginx.conf'), text);
    return await loadConf({ confFile: join(t.dir, 'nginx.conf'), prefix: t.dir + '/', fs: new DiskFs() });
  } finally {
    t.cleanup();
  }
}

test("locations are chosen in nginx's order: exact, ^~ prefix, regex in order, longest prefix", async () => {
  const c = await conf(`http { server {
    location = / { return 200 exact; }
    location / { return 200 root; }
    location /documents/ { return 200 documents; }
    location ^~ /images/ { return 200 images; }
    location ~* \\.(gif|jpg|jpeg)$ { return 200 regex; }
    location /a/ { location /a/b/ { } location ~ \\.php$ { } }
    location ~ \\.php$ { }
    location /app/ { uwsgi_pass 127.0.0.1:9; }
  } }`);
  const locs = c.http!.servers[0]!.locations;
  const name = (uri: string) => {
    const f = findLocation(locs, uri);
    return f.redirectSlash ? `301 ${f.location!.name}` : `${f.location!.kind} ${f.location!.name}`;
  };
  assert.equal(name('/'), 'exact /');
  assert.equal(name('/index.html'), 'prefix /');
  assert.equal(name('/documents/document.html'), 'prefix /documents/');
  assert.equal(name('/images/1.gif'), 'noregex /images/');
  assert.equal(name('/documents/1.jpg'), 'regex \\.(gif|jpg|jpeg)$');
  assert.equal(name('/a/b/c'), 'prefix /a/b/');
  // The nested regex is tried before the outer one.
  assert.ok(findLocation(locs, '/a/x.php').location!.parent?.name === '/a/');
  assert.equal(findLocation(locs, '/x.php').location!.parent, undefined);
  // A pass location's name without its slash redirects.
  assert.equal(name('/app'), '301 /app/');
  assert.equal(name('/documents'), 'prefix /');
});

test('server names: exact, then longest leading wildcard, trailing wildcard, regex, else the default server', async () => {
  const c = await conf(`http {
    server { listen 127.0.0.1:8000; server_name _; }
    server { listen 127.0.0.1:8000; server_name example.org www.example.org; }
    server { listen 127.0.0.1:8000; server_name *.example.org; }
    server { listen 127.0.0.1:8000; server_name *.mail.example.org; }
    server { listen 127.0.0.1:8000; server_name mail.*; }
    server { listen 127.0.0.1:8000 default_server; server_name ~^(?<user>.+)\\.example\\.net$; }
  }`);
  const g = c.bindings[0]!.main;
  const idx = (h: string) => c.http!.servers.indexOf(findServer(g, h).server);
  assert.equal(idx('www.example.org'), 1);
  assert.equal(idx('foo.example.org'), 2);
  assert.equal(idx('a.mail.example.org'), 3);
  assert.equal(idx('mail.example.com'), 4);
  assert.equal(idx('joe.example.net'), 5);
  assert.equal(findServer(g, 'joe.example.net').captures!.groups!.user, 'joe');
  assert.equal(idx('unknown.test'), 5);
  assert.equal(idx(''), 5);
});
