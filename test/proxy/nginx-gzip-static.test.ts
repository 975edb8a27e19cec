/**
 * gzip_static next to the real nginx (Debian's 1.22.1): the same files, the same requests, the same status,
 * headers (Date and Server aside, Connection's place aside) and body bytes — `on` with and without a client that
 * accepts gzip (q=0, "*", HTTP/1.0, Via, gzip_disable), gzip_vary on the .gz and on the plain file, `always`,
 * a file with no .gz, Range (not applied to a .gz), If-None-Match with the .gz's ETag, HEAD and POST.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync, utimesSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { gzipSync } from 'node:zlib';
import { join } from 'node:path';
import { have, proxySync, rawRequest, tempDir, startSideBySide, type Proc } from './helpers.js';

const withNginx = have('/usr/sbin/nginx') && process.getuid?.() === 0;

const conf = (dir: string, port: number): string => `events {}
http {
  access_log off;
  types { text/html html; text/css css; text/plain txt; }
  root ${dir}/html;
  server {
    listen 127.0.0.1:${port};
    location / { gzip_static on; }
    location /v/ { alias ${dir}/html/; gzip_static on; gzip_vary on; }
    location /al/ { alias ${dir}/html/; gzip_static always; gzip_vary on; }
    location /d/ { alias ${dir}/html/; gzip_static on; gzip_disable "Bot"; gzip_http_version 1.0; }
    location /off/ { alias ${dir}/html/; gzip_static off; }
  }
}
`;

const CASES: Array<[string, string]> = [
  ['GET /a.html HTTP/1.1', 'Accept-Encoding: gzip'],
  ['GET /a.html HTTP/1.1', ''],
  ['GET /a.html HTTP/1.1', 'Accept-Encoding: *'],
  ['GET /a.html HTTP/1.1', 'Accept-Encoding: gzip;q=0'],
  ['GET /a.html HTTP/1.1', 'Accept-Encoding: deflate, GZIP;q=0.5'],
  ['GET /a.html HTTP/1.1', 'Accept-Encoding: x-gzip'],
  ['GET /a.html HTTP/1.1', 'Accept-Encoding: gzip\r\nVia: 1.1 proxy'],
  ['GET /a.html HTTP/1.0', 'Accept-Encoding: gzip'],
  ['GET /a.html HTTP/1.1', 'Accept-Encoding: gzip\r\nRange: bytes=0-9'],
  ['GET /a.html HTTP/1.1', 'Range: bytes=0-9'],
  ['GET /a.html HTTP/1.1', 'Accept-Encoding: gzip\r\nIf-None-Match: "GZETAG"'],
  ['HEAD /a.html HTTP/1.1', 'Accept-Encoding: gzip'],
  ['POST /a.html HTTP/1.1', 'Accept-Encoding: gzip\r\nContent-Length: 0'],
  ['GET /b.txt HTTP/1.1', 'Accept-Encoding: gzip'],
  ['GET /c.css HTTP/1.1', 'Accept-Encoding: gzip'],
  ['GET /v/a.html HTTP/1.1', ''],
  ['GET /v/a.html HTTP/1.1', 'Accept-Encoding: gzip'],
  ['GET /v/b.txt HTTP/1.1', ''],
  ['GET /al/a.html HTTP/1.1', ''],
  ['GET /al/b.txt HTTP/1.1', ''],
  ['GET /d/a.html HTTP/1.0', 'Accept-Encoding: gzip'],
  ['GET /d/a.html HTTP/1.1', 'Accept-Encoding: gzip\r\nUser-Agent: SomeBot/1'],
  ['GET /off/a.html HTTP/1.1', 'Accept-Encoding: gzip'],
];

async function answers(port: number, gzEtag: string): Promise<string[]> {
  const out: string[] = [];
  for (const [line, extra] of CASES) {
    const r = await rawRequest(port, `${line}\r\nHost: x\r\n${extra.replace('GZETAG', gzEtag)}${extra ? '\r\n' : ''}Connection: close\r\n\r\n`);
    const head = r.raw.slice(0, r.raw.indexOf('\r\n\r\n')).split('\r\n')
      // An error page's length differs by the product name it shows.
      .filter((h) => !/^(date|server|connection):/i.test(h) && !(r.status === 405 && /^content-length:/i.test(h)));
    const body = Buffer.from(r.raw.slice(r.raw.indexOf('\r\n\r\n') + 4), 'latin1');
    out.push(`${line} ${extra.replace(/\r\n/g, ' | ')} => ${head.join(' | ')} | body ${r.status === 405 ? '' : body.toString('base64')}`);
  }
  return out;
}

describe('gzip_static next to nginx', () => {
  let t: ReturnType<typeof tempDir>;
  let proxy: Proc;
  let nginx: Proc | undefined;
  const ports = { proxy: 0, nginx: 0 };
  let gzEtag = '';

  before(async () => {
    t = tempDir('gzs');
    const html = join(t.dir, 'html');
    mkdirSync(html);
    const a = Buffer.from('<p>hello world ' + 'x'.repeat(200) + '</p>\n');
    writeFileSync(join(html, 'a.html'), a);
    writeFileSync(join(html, 'a.html.gz'), gzipSync(a));
    writeFileSync(join(html, 'b.txt'), 'plain only\n');
    const c = Buffer.from('body{}\n'.repeat(50));
    writeFileSync(join(html, 'c.css'), c);
    writeFileSync(join(html, 'c.css.gz'), gzipSync(c));
    const when = new Date('2020-01-02T03:04:05Z');
    utimesSync(join(html, 'a.html.gz'), when, when);
    gzEtag = `${(when.getTime() / 1000).toString(16)}-${gzipSync(a).length.toString(16)}`;
    const both = await startSideBySide(t.dir, (port) => conf(t.dir, port), withNginx);
    ({ proxy, nginx } = both);
    Object.assign(ports, both.ports);
  });

  after(async () => {
    await proxy?.stop('SIGQUIT');
    await nginx?.stop('SIGQUIT');
    t?.cleanup();
  });

  test('same answers as nginx', async () => {
    const ours = await answers(ports.proxy, gzEtag);
    if (nginx) assert.deepEqual(ours, await answers(ports.nginx, gzEtag));
    // Without nginx: the points nginx showed, checked on their own.
    assert.match(ours[0]!, /Content-Length: \d+ \| Last-Modified: Thu, 02 Jan 2020 03:04:05 GMT \| ETag: "5e0d5da5-[0-9a-f]+" \| Content-Encoding: gzip/);
    assert.match(ours[1]!, /Accept-Ranges: bytes/);
    assert.doesNotMatch(ours[2]!, /Content-Encoding/);
    assert.match(ours[8]!, /^GET[^>]*=> HTTP\/1.1 200 OK .*Content-Encoding: gzip/);
    assert.match(ours[10]!, /=> HTTP\/1.1 304/);
    assert.match(ours[15]!, /Vary: Accept-Encoding \| ETag: "[^"]+" \| Accept-Ranges/);
    assert.doesNotMatch(ours[17]!, /Vary/);
    assert.match(ours[18]!, /Content-Encoding: gzip/);
    assert.doesNotMatch(ours[18]!, /Vary/);
  });

  test('a bad value is refused with file:line, as nginx words it', () => {
    const dir = join(t.dir, 'bad');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'bad.conf'), 'events {}\nhttp {\n  gzip_static maybe;\n}\n');
    const ours = proxySync(['-t', '-q', '-p', dir + '/', '-c', 'bad.conf', '-e', 'stderr']);
    assert.equal(ours.code, 1);
    assert.match(ours.stderr, new RegExp(`invalid value "maybe" in ${join(dir, 'bad.conf')}:3`));
    if (withNginx) {
      writeFileSync(join(dir, 'n.conf'), `pid ${dir}/n.pid;\nevents {}\nhttp {\n  gzip_static maybe;\n}\n`);
      const n = spawnSync('/usr/sbin/nginx', ['-t', '-q', '-p', dir, '-c', join(dir, 'n.conf'), '-e', join(dir, 'n-error.log')], { encoding: 'latin1' });
      assert.match(n.stderr, new RegExp(`invalid value "maybe" in ${join(dir, 'n.conf')}:4`));
    }
  });
});
