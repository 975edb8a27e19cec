/**
 * sub_filter next to the real nginx (Debian's 1.22.1): static files and proxied responses (from a backend in
 * this test that sends its body in pieces, a match split across them), several sub_filter directives (earliest
 * match, then the first written), sub_filter_once on and off, variables in both strings, ASCII-only case
 * folding, sub_filter_types, sub_filter_last_modified (Last-Modified and ETag dropped, or kept with a weak
 * ETag), Content-Length dropped, Range on a filtered static file, HEAD, HTTP/1.0, error pages, a backend
 * response with Content-Encoding, gzip compressing the replaced body. Same status, headers (Date, Server, Connection aside) and body from both.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync, utimesSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { freePort, have, rawRequest, tempDir, startSideBySide, type Proc, confErrorDiffs } from './helpers.js';

const withNginx = have('/usr/sbin/nginx') && process.getuid?.() === 0;

const conf = (dir: string, port: number, back: number): string => `events {}
http {
  access_log off;
  types { text/html html; text/plain txt; text/css css; }
  root ${dir}/html;
  server {
    listen 127.0.0.1:${port};
    server_name localhost;
    location / { sub_filter hello "[$host]"; sub_filter world W; }
    location /many/ { alias ${dir}/html/; sub_filter hello X; sub_filter_once off; sub_filter_last_modified on; sub_filter_types text/plain; }
    location /order/ { alias ${dir}/html/; sub_filter bc 1; sub_filter abc 2; sub_filter ab 3; }
    location /var/ { alias ${dir}/html/; sub_filter $arg_p "<$arg_r>"; sub_filter_once off; }
    location /up/ { proxy_pass http://127.0.0.1:${back}/; sub_filter hello X; sub_filter_once off; sub_filter_last_modified on; }
    location /up2/ { proxy_pass http://127.0.0.1:${back}/; sub_filter hello X; sub_filter_types *; }
    location /gzsub/ { alias ${dir}/html/; gzip on; gzip_min_length 1; sub_filter hello X; sub_filter_once off; }
    location /err { sub_filter "Not Found" "Lost"; return 404; }
    location /ret { sub_filter hello X; return 200 "hello there\\n"; }
  }
}
`;

const CASES: Array<[string, string]> = [
  ['GET /a.html HTTP/1.1', ''],
  ['GET /a.html HTTP/1.1', 'Range: bytes=0-5'],
  ['HEAD /a.html HTTP/1.1', ''],
  ['GET /a.html HTTP/1.0', ''],
  ['GET /t.txt HTTP/1.1', ''],
  ['GET /many/a.html HTTP/1.1', ''],
  ['GET /many/t.txt HTTP/1.1', ''],
  ['GET /many/c.css HTTP/1.1', ''],
  ['GET /order/o.html HTTP/1.1', ''],
  ['GET /var/a.html?p=WORLD&r=$ HTTP/1.1', ''],
  ['GET /var/a.html?p=&r=x HTTP/1.1', ''],
  ['GET /var/e.html?p=%C3%A9&r=x HTTP/1.1', ''],
  ['GET /up/split HTTP/1.1', ''],
  ['GET /up/len HTTP/1.1', ''],
  ['GET /up/gz HTTP/1.1', ''],
  ['GET /up/plain HTTP/1.1', ''],
  ['GET /up2/plain HTTP/1.1', ''],
  ['GET /up/empty HTTP/1.1', ''],
  ['GET /gzsub/a.html HTTP/1.1', 'Accept-Encoding: gzip'],
  ['GET /err HTTP/1.1', ''],
  ['GET /ret HTTP/1.1', ''],
];

async function answers(port: number): Promise<string[]> {
  const out: string[] = [];
  for (const [line, extra] of CASES) {
    const r = await rawRequest(port, `${line}\r\nHost: localhost\r\n${extra}${extra ? '\r\n' : ''}Connection: close\r\n\r\n`);
    // node:http writes Transfer-Encoding last, nginx before the other headers of the list: its place is left aside.
    const head = r.raw.slice(0, r.raw.indexOf('\r\n\r\n')).split('\r\n').filter((h) => !/^(date|server|connection|transfer-encoding):/i.test(h));
    if (/chunked/i.test(r.headers.get('transfer-encoding') ?? '')) head.push('(chunked)');
    // A compressed body is compared once inflated (the two zlib streams need not be the same bytes).
    // (The backend's /gz says gzip without being it: only what tsgi-proxy or nginx compressed is inflated.)
    const body = line.includes('/gzsub/') ? gunzipSync(Buffer.from(r.body, 'latin1')).toString('latin1') : r.body;
    out.push(`${line} ${extra} => ${head.join(' | ')} | body ${body.replace(/nginx\/1\.22\.1|tsgi-proxy\/0\.1\.0/g, 'PRODUCT')}`);
  }
  return out;
}

describe('sub_filter next to nginx', () => {
  let t: ReturnType<typeof tempDir>;
  let proxy: Proc;
  let nginx: Proc | undefined;
  let backend: Server;
  const ports = { proxy: 0, nginx: 0 };

  before(async () => {
    t = tempDir('sub');
    const html = join(t.dir, 'html');
    mkdirSync(html);
    writeFileSync(join(html, 'a.html'), '<html><body>Hello World hello WORLD nginx foo</body></html>\n');
    writeFileSync(join(html, 't.txt'), 'Hello text hello\n');
    writeFileSync(join(html, 'c.css'), 'hello css\n');
    writeFileSync(join(html, 'o.html'), 'abcd abcd abcd\n');
    writeFileSync(join(html, 'e.html'), Buffer.from('\xe9\xc9 caf\xe9\n', 'latin1'));
    const when = new Date('2020-01-02T03:04:05Z');
    for (const f of ['a.html', 't.txt', 'c.css', 'o.html', 'e.html']) utimesSync(join(html, f), when, when);
    // The backend: a body in pieces, with a match split between them.
    backend = createServer((req, res) => {
      const pieces = (type: string, parts: string[], extra: Record<string, string> = {}): void => {
        res.writeHead(200, { 'Content-Type': type, ...extra });
        let i = 0;
        const next = (): void => {
          if (i === parts.length) {
            res.end();
            return;
          }
          res.write(parts[i++]);
          setTimeout(next, 40);
        };
        next();
      };
      if (req.url === '/split') pieces('text/html; charset=utf-8', ['aaa hel', 'lo wor', 'ld HEL', 'L', 'O he', 'llo\n']);
      else if (req.url === '/len') {
        const body = 'hello len hello\n';
        res.writeHead(200, { 'Content-Type': 'text/html', 'Content-Length': String(body.length), ETag: '"abc"', 'Last-Modified': 'Thu, 02 Jan 2020 03:04:05 GMT' });
        res.end(body);
      } else if (req.url === '/gz') pieces('text/html', ['hello gz\n'], { 'Content-Encoding': 'gzip' });
      else if (req.url === '/empty') {
        res.writeHead(200, { 'Content-Type': 'text/html', 'Content-Length': '0' });
        res.end();
      } else pieces('text/plain', ['hello plain\n']);
    });
    const back = await freePort();
    await new Promise<void>((res) => backend.listen(back, '127.0.0.1', res));
    const both = await startSideBySide(t.dir, (port) => conf(t.dir, port, back), withNginx);
    ({ proxy, nginx } = both);
    Object.assign(ports, both.ports);
  });

  after(async () => {
    await proxy?.stop('SIGQUIT');
    await nginx?.stop('SIGQUIT');
    backend?.close();
    t?.cleanup();
  });

  test('same answers as nginx', async () => {
    const ours = await answers(ports.proxy);
    if (process.env.SHOW) console.log(ours.join('\n'));
    if (nginx) assert.deepEqual(ours, await answers(ports.nginx));
    assert.match(ours[0]!, /=> HTTP\/1.1 200 OK \| Content-Type: text\/html \| \(chunked\) \| body <html><body>\[localhost\] W hello WORLD/);
    assert.match(ours[12]!, /body aaa X world X X\n$/);
  });

  test('-t errors as nginx words them, with file:line', () => {
    const cases: Array<[string, string]> = [
      ['sub_filter "" x;', 'empty search pattern'],
      ['sub_filter a;', 'invalid number of arguments in "sub_filter" directive'],
      ['sub_filter_once maybe;', 'invalid value "maybe" in "sub_filter_once" directive, it must be "on" or "off"'],
      ['server { location / { if ($args) { sub_filter a b; } } }', '"sub_filter" directive is not allowed here'],
    ];
    const dir = join(t.dir, 'bad');
    const diffs = confErrorDiffs(dir, cases, withNginx);
    assert.deepEqual(diffs, []);
  });
});
