/**
 * autoindex_format html, json, jsonp (with and without a callback, and a callback nginx refuses) and xml next
 * to the real nginx (Debian's 1.22.1): the same Content-Type and the same bytes, for a directory with a
 * subdirectory, a name that needs escaping and a UTF-8 name. Without nginx (or root) only tsgi-proxy's
 * answers are checked against what nginx answered.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { have, rawRequest, tempDir, startSideBySide, type Proc } from './helpers.js';

const withNginx = have('/usr/sbin/nginx') && process.getuid?.() === 0;

const conf = (port: number, dir: string): string => `events {}
http {
  access_log off;
  server {
    listen 127.0.0.1:${port};
    location /h/ { alias ${dir}/d/; autoindex on; }
    location /j/ { alias ${dir}/d/; autoindex on; autoindex_format json; }
    location /jp/ { alias ${dir}/d/; autoindex on; autoindex_format jsonp; }
    location /x/ { alias ${dir}/d/; autoindex on; autoindex_format xml; }
  }
}
`;

const PATHS = ['/h/', '/j/', '/jp/', '/jp/?callback=cb', '/jp/?callback=my.fn_2', '/jp/?callback=a%20b', '/jp/?callback=a$b', '/x/'];

async function answer(port: number, path: string): Promise<string> {
  const r = await rawRequest(port, `GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
  return `${r.status} ${r.headers.get('content-type')}\n${r.body.replace(/<hr><center>[^<]*<\/center>/, '<hr><center>SERVER</center>')}`;
}

describe('autoindex formats next to nginx', () => {
  let t: ReturnType<typeof tempDir>;
  let proxy: Proc;
  let nginx: Proc | undefined;
  let ports: { proxy: number; nginx: number };
  before(async () => {
    t = tempDir('autoindex');
    const d = join(t.dir, 'd');
    mkdirSync(join(d, 'sub'), { recursive: true });
    writeFileSync(join(d, 'a.txt'), 'hi\n');
    writeFileSync(join(d, 'b&<>"\'.txt'), 'x\n');
    writeFileSync(join(d, 'é.txt'), '');
    writeFileSync(join(d, 'x!#$%()*+,-.:;=?@[\\]^_`{|}~ .txt'), '');
    const when = new Date('2026-01-02T03:04:05Z');
    for (const f of ['sub', 'a.txt', 'b&<>"\'.txt', 'é.txt', 'x!#$%()*+,-.:;=?@[\\]^_`{|}~ .txt']) utimesSync(join(d, f), when, when);
    ({ proxy, nginx, ports } = await startSideBySide(t.dir, (port) => conf(port, t.dir), withNginx));
  });
  after(async () => {
    await proxy?.stop('SIGQUIT');
    await nginx?.stop('SIGQUIT');
    t.cleanup();
  });

  test('the same type and bytes as nginx for every format', async (ctx) => {
    if (!withNginx) return ctx.skip('nginx is not installed or the test is not root');
    for (const p of PATHS) assert.equal(await answer(ports.proxy, p), await answer(ports.nginx, p), p);
  });

  test('what nginx answered: xml, jsonp with a callback, a refused callback', async () => {
    assert.equal(await answer(ports.proxy, '/x/'), '200 text/xml; charset=utf-8\n<?xml version="1.0"?>\r\n<list>\r\n' +
      '<directory mtime="2026-01-02T03:04:05Z">sub</directory>\r\n<file mtime="2026-01-02T03:04:05Z" size="3">a.txt</file>\r\n' +
      '<file mtime="2026-01-02T03:04:05Z" size="2">b&amp;&lt;&gt;&quot;\'.txt</file>\r\n' +
      '<file mtime="2026-01-02T03:04:05Z" size="0">x!#$%()*+,-.:;=?@[\\]^_`{|}~ .txt</file>\r\n<file mtime="2026-01-02T03:04:05Z" size="0">\u00c3\u00a9.txt</file>\r\n</list>\r\n');
    assert.match(await answer(ports.proxy, '/h/'), /<a href="x%21%23%24%25%28%29%2A%2B%2C-\.%3A%3B%3D%3F%40%5B%5C%5D%5E_%60%7B%7C%7D~%20\.txt">/);
    const jp = await answer(ports.proxy, '/jp/?callback=cb');
    assert.match(jp, /^200 application\/javascript\n\/\* callback \*\/\r\ncb\(\[\r\n\{ "name":"sub", "type":"directory", "mtime":"Fri, 02 Jan 2026 03:04:05 GMT" \},\r\n/);
    assert.match(jp, /\}\r\n\]\);$/);
    assert.match(await answer(ports.proxy, '/jp/'), /^200 application\/json\n\[\r\n/);
    assert.match(await answer(ports.proxy, '/jp/?callback=a%20b'), /^400 /);
  });
});
