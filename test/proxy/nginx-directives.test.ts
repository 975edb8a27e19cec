/**
 * Directives that tsgi-proxy gained to load nginx's own test vectors, checked next to the real nginx (Debian's
 * 1.22.1) serving the same tree with the same configuration: expires, the charset module (charset_map
 * recoding), max_ranges and nginx's Range parsing, proxy_method, add_trailer, limit_except/allow/deny,
 * limit_req/limit_conn, limit_rate, keepalive_time, client_body_in_file_only, and their `-t` errors.
 * What is compared is what a client sees; times are compared as max-age and as Expires minus Date.
 * Without nginx (or without root, which its workers need here) the comparisons are skipped and the tsgi-proxy
 * side is still checked against the answers nginx was seen to give.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, writeFileSync, utimesSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import http from 'node:http';
import { connect } from 'node:net';
import { join } from 'node:path';
import { have, proxySync, rawRequest, tempDir, type Proc, type RawResponse, startSideBySide } from './helpers.js';

let round = 0;
const withNginx = have('/usr/sbin/nginx') && process.getuid?.() === 0;
const nginxSkip = withNginx ? false : 'needs /usr/sbin/nginx and root (nginx workers run as root here)';

function req(port: number, path: string, opts: { method?: string; headers?: string; version?: string; body?: string } = {}): Promise<RawResponse> {
  const v = opts.version ?? '1.1';
  const body = opts.body ?? '';
  const head = `${opts.method ?? 'GET'} ${path} HTTP/${v}\r\nHost: localhost\r\nConnection: close\r\n${opts.headers ?? ''}${body ? `Content-Length: ${body.length}\r\n` : ''}\r\n`;
  return rawRequest(port, Buffer.from(head + body, 'latin1'));
}

/** Status, Content-Type, Content-Length and body: what the charset and range cases compare. */
function shape(r: RawResponse): string {
  return `${r.status} ${r.headers.get('content-type') ?? '-'} ${r.headers.get('content-length') ?? '-'} ${JSON.stringify(r.body)}`;
}

/** Expires and Cache-Control, with Expires as seconds after Date when it is near now. */
function expiresShape(r: RawResponse): string {
  const e = r.headers.get('expires');
  const d = r.headers.get('date');
  let exp = e ?? '-';
  if (e && d && Math.abs(Date.parse(e) - Date.parse(d)) < 2 * 86400000) exp = `Date+${Math.round((Date.parse(e) - Date.parse(d)) / 1000)}s`;
  return `${r.status} Expires: ${exp}; Cache-Control: ${r.headers.get('cache-control') ?? '-'}`;
}

const conf = (dir: string, www: string, port: number, backend: number): string => `events {}
http {
  access_log off;
  root ${www};
  client_body_temp_path ${dir}/cbt-${port};
  proxy_temp_path ${dir}/pt;
  types { text/html html; text/plain txt; }
  charset_map B A { 58 59; E4 E5; }
  limit_req_zone $arg_k zone=rq:1m rate=60r/m;
  limit_conn_zone $binary_remote_addr zone=cn:1m;
  server {
    listen 127.0.0.1:${port};
    location /e/epoch { expires epoch; alias ${www}/f.html; }
    location /e/max { expires max; alias ${www}/f.html; }
    location /e/off { expires off; alias ${www}/f.html; }
    location /e/hour { expires 1h; alias ${www}/f.html; }
    location /e/zero { expires 0; alias ${www}/f.html; }
    location /e/neg { expires -30; alias ${www}/f.html; }
    location /e/mod { expires modified 1d; alias ${www}/f.html; }
    location /e/modneg { expires modified -1h; alias ${www}/f.html; }
    location /e/var { expires $arg_e; alias ${www}/f.html; }
    location /e/varmod { expires modified $arg_e; alias ${www}/f.html; }
    location /e/missing { expires 1h; }
    location /e/proxied { expires 30; proxy_pass http://127.0.0.1:${backend}/cc; }
    location /c/utf/ { charset utf-8; alias ${www}/; }
    location /c/ab/ { charset A; source_charset B; alias ${www}/; }
    location /c/ba/ { charset B; source_charset A; alias ${www}/; }
    location /c/types/ { charset utf-8; charset_types text/plain; alias ${www}/; }
    location /c/ret { charset A; source_charset B; return 200 "XYX"; }
    location /c/err { charset utf-8; return 404; }
    location /c/up { charset utf-8; proxy_pass http://127.0.0.1:${backend}/latin1; }
    location /c/upover { charset utf-8; override_charset on; proxy_pass http://127.0.0.1:${backend}/latin1; }
    location /c/upplain { charset utf-8; proxy_pass http://127.0.0.1:${backend}/plain; }
    location /r/two { max_ranges 2; alias ${www}/r.txt; }
    location /r/zero { max_ranges 0; alias ${www}/r.txt; }
    location /m/ { proxy_method $arg_m; proxy_pass http://127.0.0.1:${backend}/method; }
    location /m/post { proxy_method POST; proxy_pass http://127.0.0.1:${backend}/method; }
    location /t/ { alias ${www}/; add_trailer X-T $uri; add_trailer X-Always a always; add_trailer X-Empty ""; add_trailer X-Again $sent_trailer_x_t; }
    location /le/deny { limit_except GET { deny all; } alias ${www}/f.html; }
    location /le/allow { limit_except GET { allow 127.0.0.1; deny all; } alias ${www}/f.html; }
    location /le/return { limit_except GET { deny all; } return 200 "returned"; }
    location /acl/net { allow 10.0.0.0/8; deny all; alias ${www}/f.html; }
    location /acl/local { deny 10.0.0.0/8; allow 127.0.0.0/8; deny all; alias ${www}/f.html; }
    location /lr/ { limit_req zone=rq burst=2 nodelay; limit_req_status 429; add_header X-S $limit_req_status; alias ${www}/; }
    location /lr/dry/ { limit_req zone=rq; limit_req_dry_run on; add_header X-S $limit_req_status; alias ${www}/; }
    location /lc/ { limit_conn cn 1; limit_rate 2000; alias ${www}/; }
    location /rate/ { limit_rate 1000; limit_rate_after 1000; alias ${www}/; }
    location /kt/ { keepalive_time 1s; alias ${www}/; }
    location /cap/ { rewrite ^(.*)$ $1?c=$1; return 200 "args:$args"; }
    location /body/ { client_body_in_file_only on; add_header X-File $request_body_file; add_header X-Body "[$request_body]"; proxy_pass http://127.0.0.1:${backend}/; }
  }
}
`;

describe('nginx directives next to nginx', () => {
  let t: ReturnType<typeof tempDir>;
  let www: string;
  const ports = { proxy: 0, nginx: 0 };
  let backend: http.Server;
  let proxy: Proc;
  let nginx: Proc | undefined;

  before(async () => {
    t = tempDir('ngxdir');
    www = join(t.dir, 'www');
    mkdirSync(www, { recursive: true });
    writeFileSync(join(www, 'f.html'), Buffer.from('X1\xe4Z\xe6.', 'latin1'));
    writeFileSync(join(www, 'f.txt'), 'plain\n');
    writeFileSync(join(www, 'r.txt'), '0123456789'.repeat(100));
    writeFileSync(join(www, 'big.bin'), Buffer.alloc(3000, 97));
    for (const f of ['f.html', 'f.txt', 'r.txt']) utimesSync(join(www, f), new Date('2021-03-04T05:06:07Z'), new Date('2021-03-04T05:06:07Z'));
    backend = http.createServer((rq, res) => {
      if (rq.url === '/cc') {
        res.writeHead(200, [['Cache-Control', 'private'], ['Content-Type', 'text/plain'], ['Cache-Control', 'no-store'], ['Expires', 'never'], ['Content-Length', '2']] as unknown as http.OutgoingHttpHeaders);
        res.end('ok');
      } else if (rq.url === '/latin1') {
        res.writeHead(200, { 'Content-Type': 'text/html; charset=iso-8859-1', 'Content-Length': '3' });
        res.end('XYX');
      } else if (rq.url === '/plain') {
        res.writeHead(200, { 'Content-Type': 'text/html', 'Content-Length': '3' });
        res.end('XYX');
      } else {
        let body = '';
        rq.on('data', (c: Buffer) => (body += c.toString('latin1')));
        rq.on('end', () => {
          const text = `${rq.method} ${body}`;
          res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': String(text.length) });
          res.end(text);
        });
      }
    });
    await new Promise<void>((res) => backend.listen(0, '127.0.0.1', res));
    const bport = (backend.address() as { port: number }).port;
    const both = await startSideBySide(t.dir, (port) => conf(t.dir, www, port, bport), withNginx);
    ({ proxy, nginx } = both);
    Object.assign(ports, both.ports);
  });

  after(async () => {
    await proxy?.stop('SIGQUIT');
    await nginx?.stop('SIGQUIT');
    await new Promise((res) => backend?.close(res));
    t?.cleanup();
  });

  /** Runs `cases` against a port; each gives one line. Each run has its own limit_req keys (`round`). */
  async function lines(port: number, cases: Array<[string, (port: number) => Promise<string>]>): Promise<string[]> {
    round++;
    const out: string[] = [];
    for (const [name, f] of cases) out.push(`${name}: ${await f(port)}`);
    return out;
  }

  const EXPIRES: Array<[string, (p: number) => Promise<string>]> = [
    ['epoch', async (p) => expiresShape(await req(p, '/e/epoch'))],
    ['max', async (p) => expiresShape(await req(p, '/e/max'))],
    ['off', async (p) => expiresShape(await req(p, '/e/off'))],
    ['1h', async (p) => expiresShape(await req(p, '/e/hour'))],
    ['0', async (p) => expiresShape(await req(p, '/e/zero'))],
    ['-30', async (p) => expiresShape(await req(p, '/e/neg'))],
    ['modified 1d (a 2021 file: in the past)', async (p) => expiresShape(await req(p, '/e/mod'))],
    ['modified -1h', async (p) => expiresShape(await req(p, '/e/modneg'))],
    ['$arg_e=epoch', async (p) => expiresShape(await req(p, '/e/var?e=epoch'))],
    ['$arg_e=2048', async (p) => expiresShape(await req(p, '/e/var?e=2048'))],
    ['$arg_e=-5', async (p) => expiresShape(await req(p, '/e/var?e=-5'))],
    ['$arg_e=bad', async (p) => expiresShape(await req(p, '/e/var?e=bad'))],
    ['$arg_e empty', async (p) => expiresShape(await req(p, '/e/var'))],
    ['modified $arg_e=max (invalid together)', async (p) => expiresShape(await req(p, '/e/varmod?e=max'))],
    ['modified $arg_e=1h', async (p) => expiresShape(await req(p, '/e/varmod?e=1h'))],
    ['a 404', async (p) => expiresShape(await req(p, '/e/missing'))],
    ['a backend\'s Cache-Control and Expires replaced', async (p) => {
      const r = await req(p, '/e/proxied');
      return `${expiresShape(r)}; ${(r.raw.match(/^(Cache-Control|Expires):/gim) ?? []).join(',')}`;
    }],
  ];
  const EXPIRES_SEEN = [
    '200 Expires: Thu, 01 Jan 1970 00:00:01 GMT; Cache-Control: no-cache',
    '200 Expires: Thu, 31 Dec 2037 23:55:55 GMT; Cache-Control: max-age=315360000',
    '200 Expires: -; Cache-Control: -',
    '200 Expires: Date+3600s; Cache-Control: max-age=3600',
    '200 Expires: Date+0s; Cache-Control: max-age=0',
    '200 Expires: Date+-30s; Cache-Control: no-cache',
    '200 Expires: Fri, 05 Mar 2021 05:06:07 GMT; Cache-Control: no-cache',
    '200 Expires: Thu, 04 Mar 2021 04:06:07 GMT; Cache-Control: no-cache',
    '200 Expires: Thu, 01 Jan 1970 00:00:01 GMT; Cache-Control: no-cache',
    '200 Expires: Date+2048s; Cache-Control: max-age=2048',
    '200 Expires: Date+-5s; Cache-Control: no-cache',
    '200 Expires: -; Cache-Control: -',
    '200 Expires: -; Cache-Control: -',
    '200 Expires: -; Cache-Control: -',
    '200 Expires: Thu, 04 Mar 2021 06:06:07 GMT; Cache-Control: no-cache',
    '404 Expires: -; Cache-Control: -',
    '200 Expires: Date+30s; Cache-Control: max-age=30; Cache-Control:,Expires:',
  ];

  const CHARSET: Array<[string, (p: number) => Promise<string>]> = [
    ['charset utf-8 on html', async (p) => shape(await req(p, '/c/utf/f.html'))],
    ['charset_types without text/html: it is always one', async (p) => shape(await req(p, '/c/types/f.html'))],
    ['charset_types text/plain', async (p) => shape(await req(p, '/c/types/f.txt'))],
    ['B to A through the map', async (p) => shape(await req(p, '/c/ab/f.html'))],
    ['A to B: the map reversed, unmapped 8-bit bytes become "?"', async (p) => shape(await req(p, '/c/ba/f.html'))],
    ['a range of a recoded file', async (p) => shape(await req(p, '/c/ab/f.html', { headers: 'Range: bytes=0-1\r\n' }))],
    ['return text recoded', async (p) => shape(await req(p, '/c/ret'))],
    ['an error page', async (p) => `${(await req(p, '/c/err')).headers.get('content-type')}`],
    ['a backend\'s own charset is kept', async (p) => shape(await req(p, '/c/up'))],
    ['override_charset without a map', async (p) => shape(await req(p, '/c/upover'))],
    ['a backend without charset gets one', async (p) => shape(await req(p, '/c/upplain'))],
  ];
  const CHARSET_SEEN = [
    '200 text/html; charset=utf-8 6 "X1äZæ."',
    '200 text/html; charset=utf-8 6 "X1äZæ."',
    '200 text/plain; charset=utf-8 6 "plain\\n"',
    '200 text/html; charset=A 6 "Y1åZ?."',
    '200 text/html; charset=B 6 "X1?Z?."',
    '206 text/html; charset=A 2 "Y1"',
    '200 text/plain; charset=A 3 "YYY"',
    'text/html; charset=utf-8',
    '200 text/html; charset=iso-8859-1 3 "XYX"',
    '200 text/html; charset=iso-8859-1 3 "XYX"',
    '200 text/html; charset=utf-8 3 "XYX"',
  ];

  const RANGES = ['bytes=5-3', 'bytes=5-3,1-2', 'items=1-2', 'bytes=0-0,-0', 'bytes=-0', 'bytes= 1 - 2 , 4-5', 'bytes=1-2,,3-4', 'bytes=1-2;', 'bytes=1-2,3-4,5-6', 'bytes=0-999,0-0', 'bytes=alpha', 'bytes=10'];
  const RANGE_CASES: Array<[string, (p: number) => Promise<string>]> = RANGES.flatMap((rg): Array<[string, (p: number) => Promise<string>]> => [
    [`${rg}`, async (p) => String((await req(p, '/r.txt', { headers: `Range: ${rg}\r\n` })).status)],
    [`${rg} max_ranges 2`, async (p) => String((await req(p, '/r/two', { headers: `Range: ${rg}\r\n` })).status)],
    [`${rg} max_ranges 0`, async (p) => String((await req(p, '/r/zero', { headers: `Range: ${rg}\r\n` })).status)],
  ]);
  const RANGE_SEEN = ['416', '416', '200', '206', '206', '200', '200', '200', '200', '206', '206', '200', '416', '416', '200', '206', '206', '200', '416', '416', '200', '416', '416', '200', '206', '200', '200', '200', '200', '200', '416', '416', '200', '416', '416', '200'];

  const METHODS: Array<[string, (p: number) => Promise<string>]> = [
    ['proxy_method POST on a GET', async (p) => (await req(p, '/m/post')).body],
    ['proxy_method $arg_m=PUT', async (p) => (await req(p, '/m/x?m=PUT')).body],
    ...(['GET', 'HEAD', 'POST', 'DELETE'] as const).flatMap((m): Array<[string, (p: number) => Promise<string>]> => [
      [`${m} limit_except GET deny all`, async (p) => String((await req(p, '/le/deny', { method: m })).status)],
      [`${m} limit_except GET allow 127.0.0.1`, async (p) => String((await req(p, '/le/allow', { method: m })).status)],
      [`${m} limit_except skips the location's return`, async (p) => String((await req(p, '/le/return', { method: m })).status)],
    ]),
    ['allow 10.0.0.0/8; deny all', async (p) => String((await req(p, '/acl/net')).status)],
    ['deny 10/8; allow 127/8', async (p) => String((await req(p, '/acl/local')).status)],
    ['POST to a static file', async (p) => String((await req(p, '/f.html', { method: 'POST', body: 'x' })).status)],
    ['POST to a missing file', async (p) => String((await req(p, '/nope.html', { method: 'POST', body: 'x' })).status)],
  ];
  const METHODS_SEEN = [
    'POST ', 'PUT ',
    '200', '200', '200', '200', '200', '200', '403', '405', '403', '403', '405', '403',
    '403', '200',
    '405', '404',
  ];

  const TRAILERS: Array<[string, (p: number) => Promise<string>]> = [
    ['HTTP/1.1', async (p) => {
      const r = await req(p, '/t/f.txt');
      const tail = r.raw.slice(r.raw.indexOf('\r\n0\r\n') + 5);
      return `${r.headers.get('transfer-encoding')} ${r.headers.get('content-length') ?? '-'} ${JSON.stringify(r.body)} ${JSON.stringify(tail)}`;
    }],
    ['HTTP/1.0: no trailers', async (p) => {
      const r = await req(p, '/t/f.txt', { version: '1.0' });
      return `${r.headers.get('content-length')} ${JSON.stringify(r.body)}`;
    }],
    ['a 404: the always one', async (p) => {
      const r = await req(p, '/t/none.txt');
      return JSON.stringify(r.raw.slice(r.raw.indexOf('\r\n0\r\n') + 5));
    }],
  ];
  const TRAILERS_SEEN = ['chunked - "plain\\n" "X-T: /t/f.txt\\r\\nX-Always: a\\r\\nX-Again: /t/f.txt\\r\\n\\r\\n"', '6 "plain\\n"', '"X-Always: a\\r\\n\\r\\n"'];

  const LIMITS: Array<[string, (p: number) => Promise<string>]> = [
    ['limit_req burst=2 nodelay, 4 at once', async (p) => {
      const key = `k${round}`;
      const out: string[] = [];
      for (let i = 0; i < 4; i++) {
        const r = await req(p, `/lr/f.txt?k=${key}`);
        out.push(`${r.status}:${r.headers.get('x-s') ?? '-'}`);
      }
      return out.join(' ');
    }],
    ['limit_req with an empty key', async (p) => {
      const r = await req(p, '/lr/f.txt');
      return `${r.status}:${r.headers.get('x-s') ?? '-'}`;
    }],
    ['limit_req_dry_run', async (p) => {
      const out: string[] = [];
      for (let i = 0; i < 2; i++) {
        const r = await req(p, `/lr/dry/f.txt?k=d${round}`);
        out.push(`${r.status}:${r.headers.get('x-s') ?? '-'}`);
      }
      return out.join(' ');
    }],
    ['limit_conn 1 while a paced response runs', async (p) => {
      const slow = req(p, '/lc/big.bin');
      await new Promise((res) => setTimeout(res, 300));
      const during = (await req(p, '/lc/f.txt')).status;
      const first = await slow;
      const afterwards = (await req(p, '/lc/f.txt')).status;
      return `${first.status} ${first.body.length} ${during} ${afterwards}`;
    }],
  ];
  const LIMITS_SEEN = ['200:PASSED 200:PASSED 200:PASSED 429:-', '200:-', '200:PASSED 200:REJECTED_DRY_RUN', '200 3000 503 200'];

  test('expires: the same headers as nginx', { skip: nginxSkip }, async () => {
    assert.deepEqual(await lines(ports.proxy, EXPIRES), await lines(ports.nginx!, EXPIRES));
  });
  test('expires: what nginx was seen to send', async () => {
    assert.deepEqual(await lines(ports.proxy, EXPIRES), EXPIRES.map(([n], i) => `${n}: ${EXPIRES_SEEN[i]}`));
  });
  test('charset, source_charset, charset_map, charset_types, override_charset: the same as nginx', { skip: nginxSkip }, async () => {
    assert.deepEqual(await lines(ports.proxy, CHARSET), await lines(ports.nginx!, CHARSET));
  });
  test('charset: what nginx was seen to send', async () => {
    assert.deepEqual(await lines(ports.proxy, CHARSET), CHARSET.map(([n], i) => `${n}: ${CHARSET_SEEN[i]}`));
  });
  test('Range headers and max_ranges: the same statuses as nginx', { skip: nginxSkip }, async () => {
    assert.deepEqual(await lines(ports.proxy, RANGE_CASES), await lines(ports.nginx!, RANGE_CASES));
  });
  test('Range headers and max_ranges: what nginx was seen to answer', async () => {
    assert.deepEqual(await lines(ports.proxy, RANGE_CASES), RANGE_CASES.map(([n], i) => `${n}: ${RANGE_SEEN[i]}`));
  });
  test('proxy_method, limit_except, allow/deny: the same as nginx', { skip: nginxSkip }, async () => {
    assert.deepEqual(await lines(ports.proxy, METHODS), await lines(ports.nginx!, METHODS));
  });
  test('proxy_method, limit_except, allow/deny: what nginx was seen to answer', async () => {
    assert.deepEqual(await lines(ports.proxy, METHODS), METHODS.map(([n], i) => `${n}: ${METHODS_SEEN[i]}`));
  });
  test('add_trailer: the same as nginx', { skip: nginxSkip }, async () => {
    assert.deepEqual(await lines(ports.proxy, TRAILERS), await lines(ports.nginx!, TRAILERS));
  });
  test('add_trailer: what nginx was seen to send', async () => {
    assert.deepEqual(await lines(ports.proxy, TRAILERS), TRAILERS.map(([n], i) => `${n}: ${TRAILERS_SEEN[i]}`));
  });
  test('limit_req and limit_conn: the same answers as nginx', { skip: nginxSkip }, async () => {
    assert.deepEqual(await lines(ports.proxy, LIMITS), await lines(ports.nginx!, LIMITS));
  });
  test('limit_req and limit_conn: what nginx was seen to answer', async () => {
    assert.deepEqual(await lines(ports.proxy, LIMITS), LIMITS.map(([n], i) => `${n}: ${LIMITS_SEEN[i]}`));
  });

  const CAPTURES: Array<[string, (p: number) => Promise<string>]> = ['/cap/%25?a=b', '/cap/a+b', '/cap/x%26y', '/cap/x&y', '/cap/plain', '/cap/%C3%A9'].map((u): [string, (p: number) => Promise<string>] => [u, async (p) => (await req(p, u)).body]);
  const CAPTURES_SEEN = ['args:c=/cap/%25&a=b', 'args:c=/cap/a%2Bb', 'args:c=/cap/x%26y', 'args:c=/cap/x&y', 'args:c=/cap/plain', 'args:c=/cap/%C3%A9'];
  test('rewrite: captures in the new arguments are escaped when the URI had escapes, as nginx', { skip: nginxSkip }, async () => {
    assert.deepEqual(await lines(ports.proxy, CAPTURES), await lines(ports.nginx!, CAPTURES));
  });
  test('rewrite: captures in the new arguments, as nginx was seen to make them', async () => {
    assert.deepEqual(await lines(ports.proxy, CAPTURES), CAPTURES.map(([n], i) => `${n}: ${CAPTURES_SEEN[i]}`));
  });

  test('proxy_method that comes out empty keeps the client\'s method (nginx would send an empty one)', async () => {
    assert.equal((await req(ports.proxy, '/m/x', { method: 'POST', body: 'b' })).body, 'POST b');
  });

  test('limit_rate and limit_rate_after pace the body as nginx does (3000 bytes: 1000 at once, then 1000/s)', async () => {
    const ports2 = withNginx ? [ports.proxy, ports.nginx] : [ports.proxy];
    for (const p of ports2) {
      const t0 = Date.now();
      const r = await req(p, '/rate/big.bin');
      const ms = Date.now() - t0;
      assert.equal(r.body.length, 3000);
      assert.ok(ms >= 1700 && ms < 3800, `port ${p}: ${ms} ms`);
    }
  });

  test('keepalive_time: the first request after it closes the connection, as nginx', async () => {
    const ports2 = withNginx ? [ports.proxy, ports.nginx] : [ports.proxy];
    const got: string[] = [];
    for (const p of ports2) {
      const heads = await new Promise<string>((resolve) => {
        const s = connect(p, '127.0.0.1');
        let buf = '';
        s.on('data', (d: Buffer) => (buf += d.toString('latin1')));
        s.on('close', () => resolve((buf.match(/Connection: \S+/g) ?? []).join(' ')));
        s.write('GET /kt/f.txt HTTP/1.1\r\nHost: x\r\n\r\n');
        setTimeout(() => s.write('GET /kt/f.txt HTTP/1.1\r\nHost: x\r\n\r\n'), 1300);
        setTimeout(() => s.destroy(), 3000);
      });
      got.push(heads);
    }
    for (const g of got) assert.equal(g, 'Connection: keep-alive Connection: close');
  });

  test('client_body_in_file_only on: the body is in a file of its own, $request_body is empty, as nginx', async () => {
    const ports2 = withNginx ? [ports.proxy, ports.nginx] : [ports.proxy];
    for (const p of ports2) {
      const r = await req(p, '/body/x', { method: 'POST', body: 'hello body' });
      assert.equal(r.body, 'POST hello body');
      assert.equal(r.headers.get('x-body'), '[]');
      const file = r.headers.get('x-file') ?? '';
      assert.ok(file.startsWith(`${t.dir}/cbt-${p}/`), `X-File: ${file}`);
      assert.equal(readFileSync(file, 'latin1'), 'hello body');
    }
  });

  test('-t refuses bad values with nginx\'s message and file:line', async () => {
    // nginx names no file:line for the last checks made at start (charset_map, zones); tsgi-proxy does.
    const noPos = new Set(['charset A; source_charset B;', 'limit_req zone=nope;', 'limit_conn nope 1;']);
    const cases: Array<[string, string]> = [
      ['expires modified max;', '"expires" directive invalid value'],
      ['expires @25h;', '"expires" directive daily time value must be less than 24 hours'],
      ['expires modified @1h;', '"expires" directive daily time cannot be used with "modified" parameter'],
      ['charset A; source_charset B;', 'no "charset_map" between the charsets "B" and "A"'],
      ['limit_req zone=nope;', 'zero size shared memory zone "nope"'],
      ['limit_req burst=3;', '"limit_req" must have "zone" parameter'],
      ['limit_conn nope 1;', 'zero size shared memory zone "nope"'],
      ['limit_req_status 200;', 'value must be between 400 and 599'],
      ['limit_except FOO { deny all; }', 'invalid method "FOO"'],
      ['allow 1.2.3.4/40;', 'invalid parameter "1.2.3.4/40"'],
      ['proxy_method;', 'invalid number of arguments in "proxy_method" directive'],
    ];
    const diffs: string[] = [];
    for (const [directive, message] of cases) {
      const dir = join(t.dir, 'bad');
      mkdirSync(dir, { recursive: true });
      const text = `events {}\nhttp {\n  server {\n    location / {\n      ${directive}\n    }\n  }\n}\n`;
      writeFileSync(join(dir, 'bad.conf'), text);
      const ours = proxySync(['-t', '-q', '-p', dir + '/', '-c', 'bad.conf', '-e', 'stderr']);
      const line = ours.stderr.split('\n')[0] ?? '';
      const want = `${message} in ${join(dir, 'bad.conf')}:5`;
      if (ours.code !== 1 || !line.endsWith(want)) diffs.push(`${directive}: tsgi-proxy said "${line}", want "... ${want}"`);
      if (withNginx) {
        writeFileSync(join(dir, 'n.conf'), `pid ${dir}/n.pid;\n` + text);
        const n = spawnSync('/usr/sbin/nginx', ['-t', '-q', '-p', dir, '-c', join(dir, 'n.conf'), '-e', join(dir, 'n-error.log')], { encoding: 'latin1' });
        const nline = (n.stderr.split('\n').find((l) => l.includes('[emerg]')) ?? '').replace(/^.*\[emerg\] /, '');
        if (nline !== (noPos.has(directive) ? message : `${message} in ${join(dir, 'n.conf')}:6`)) diffs.push(`${directive}: nginx said "${nline}"`);
      }
    }
    assert.deepEqual(diffs, []);
    assert.ok(existsSync(join(t.dir, 'bad')));
  });
});
