/**
 * Request checks and variables where tsgi-proxy was behind nginx in the nginx-tests replay, next to the real
 * nginx (Debian's 1.22.1) on one configuration: duplicate "unique" request headers, Transfer-Encoding that is
 * not chunked or comes from HTTP/1.0, a malformed chunk sent with the head to a location that does not read
 * the body, control characters in an add_header value, `if (-x ...)` on the owner's execute bit, Host names
 * nginx refuses (empty, "..", "/" in an IPv6 literal), and a body
 * larger than client_body_buffer_size ($request_body empty; $request_body_file the name of a temporary file
 * in client_body_temp_path that is not there: nginx unlinks it as soon as it is opened). Without nginx (or
 * not root) tsgi-proxy's answers are still checked against the expected ones.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { have, rawRequest, tempDir, startSideBySide, type Proc } from './helpers.js';

const withNginx = have('/usr/sbin/nginx') && process.getuid?.() === 0;

/** Temporary body file names the backend was told about. */
const told: string[] = [];

function backend(): http.Server {
  return http.createServer((req, res) => {
    let n = 0;
    req.on('data', (d: Buffer) => (n += d.length));
    req.on('end', () => {
      const f = req.headers['x-file'] as string | undefined;
      let file = '-';
      if (f) {
        told.push(f);
        file = existsSync(f) ? `${readFileSync(f).length} bytes` : 'missing';
      }
      res.writeHead(200, { 'Content-Type': 'text/plain' });
      res.end(`got ${n} file ${file}\n`);
    });
  });
}

const conf = (dir: string, port: number, who: string, back: number): string => `events {}
http {
  access_log off;
  default_type text/plain;
  client_body_temp_path ${dir}/${who}-body;
  server {
    listen 127.0.0.1:${port};
    location /d { return 204; }
    location /u { add_header X-URI "x $uri x"; add_header X-Again "$sent_http_x_uri"; return 204; }
    location /x { if (-x ${dir}/$arg_f) { return 204; } return 200 "no\\n"; }
    location /b {
      client_body_buffer_size 1k;
      add_header X-Body "$request_body";
      proxy_set_header X-File $request_body_file;
      proxy_pass http://127.0.0.1:${back};
    }
  }
}
`;

const LONG = '0123456789'.repeat(500);
const CASES: string[] = [
  'GET /d HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n',
  'GET /d HTTP/1.1\r\nHost: a\r\nAuthorization: Basic eDp5\r\nauthorization: Basic eDp5\r\n\r\n',
  'GET /d HTTP/1.1\r\nHost: a\r\nIf-Modified-Since: x\r\nIf-Modified-Since: x\r\n\r\n',
  'GET /d HTTP/1.1\r\nHost: a\r\nIf-None-Match: "a"\r\nIf-None-Match: "b"\r\n\r\n',
  'GET /d HTTP/1.1\r\nHost: a\r\nExpect: foo\r\nExpect: bar\r\n\r\n',
  // Headers nginx 1.22 lets repeat: served.
  'GET /d HTTP/1.1\r\nHost: a\r\nAccept: a\r\nAccept: b\r\nX-Foo: 1\r\nX-Foo: 2\r\n\r\n',
  'GET /d HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n',
  'GET /d HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n',
  'GET /d HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: foo\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
  'GET /d HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
  'GET /d HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nTOO-LONG\r\n0\r\n\r\n',
  'GET /d HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nGOOD\r\n0\r\n\r\n',
  'GET /u%01%7f HTTP/1.1\r\nHost: a\r\n\r\n',
  'GET /x?f=owner HTTP/1.1\r\nHost: a\r\n\r\n',
  'GET /x?f=group HTTP/1.1\r\nHost: a\r\n\r\n',
  'GET /x?f=none HTTP/1.1\r\nHost: a\r\n\r\n',
  `POST /b HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n${LONG.slice(0, 10)}`,
  `POST /b HTTP/1.1\r\nHost: a\r\nContent-Length: ${LONG.length}\r\n\r\n${LONG}`,
  `POST /b HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n${LONG.length.toString(16)}\r\n${LONG}\r\n0\r\n\r\n`,
  // Host names nginx refuses (HTTP/1.0: the connection closes after the answer).
  'GET /d HTTP/1.0\r\nHost: \r\n\r\n',
  'GET /d HTTP/1.0\r\nHost: .\r\n\r\n',
  'GET http:///d HTTP/1.0\r\n\r\n',
  'GET http://a.b..:/d HTTP/1.0\r\n\r\n',
  'GET http://[ab..cd::1]/d HTTP/1.0\r\n\r\n',
  'GET /d HTTP/1.0\r\nHost: [ab::e/:1]\r\n\r\n',
  // and ones it takes.
  'GET /d HTTP/1.0\r\nHost: Example.COM.\r\n\r\n',
  'GET /d HTTP/1.0\r\nHost: [::1]:80\r\n\r\n',
  'GET /d HTTP/1.0\r\n\r\n',
];

async function answers(port: number): Promise<string[]> {
  const out: string[] = [];
  for (const c of CASES) {
    const r = await rawRequest(port, c.replace('\r\nHost: a\r\n', '\r\nHost: a\r\nConnection: close\r\n'));
    const body = r.status === 200 ? r.body.trim() : '';
    out.push(`${c.split('\r\n')[0]}: ${r.status} uri=${JSON.stringify(r.headers.get('x-uri') ?? '-')} again=${JSON.stringify(r.headers.get('x-again') ?? '-')} body-var=${(r.headers.get('x-body') ?? '-').length} ${body}`);
  }
  return out;
}

describe('nginx-tests gaps next to nginx', () => {
  let t: ReturnType<typeof tempDir>;
  let proxy: Proc;
  let nginx: Proc | undefined;
  let back: http.Server;
  const ports = { proxy: 0, nginx: 0 };

  before(async () => {
    t = tempDir('gaps');
    for (const [f, mode] of [['owner', 0o744], ['group', 0o654], ['none', 0o644]] as const) {
      writeFileSync(join(t.dir, f), 'x\n');
      chmodSync(join(t.dir, f), mode);
    }
    back = backend();
    await new Promise<void>((res) => back.listen(0, '127.0.0.1', res));
    const bp = (back.address() as AddressInfo).port;
    const both = await startSideBySide(t.dir, (port, who) => conf(t.dir, port, who, bp), withNginx);
    ({ proxy, nginx } = both);
    Object.assign(ports, both.ports);
  });

  after(async () => {
    await proxy?.stop('SIGQUIT');
    await nginx?.stop('SIGQUIT');
    back?.close();
    t?.cleanup();
  });

  test('same answers as nginx', async () => {
    told.length = 0;
    const ours = await answers(ports.proxy);
    const ourFiles = told.splice(0);
    if (nginx) assert.deepEqual(ours, await answers(ports.nginx));
    const expected = [
      ...Array(5).fill(400),
      204, 501, 501, 400, 400, 400, 204, 204,
      204, 200, 200,
      200, 200, 200,
      400, 400, 400, 400, 400, 400,
      204, 204, 204,
    ];
    assert.deepEqual(ours.map((l) => Number(/: (\d{3}) /.exec(l)![1])), expected);
    // Control characters other than CR, LF and NUL are sent as they are, as nginx does.
    assert.match(ours[12]!, /uri="x \/u\\u0001\u007f x" again="x \/u\\u0001\u007f x"/);
    assert.match(ours[13]!, /: 204 /);
    assert.match(ours[14]!, /: 200 .* no$/);
    // A small body is in $request_body; a larger one is not, and gets a temporary file's name instead.
    assert.match(ours[16]!, /body-var=10 got 10 file -$/);
    assert.match(ours[17]!, /body-var=1 got 5000 file missing$/);
    assert.match(ours[18]!, /body-var=1 got 5000 file missing$/);
    assert.equal(ourFiles.length, 2);
    assert.notEqual(ourFiles[0], ourFiles[1]);
    assert.ok(ourFiles.every((f) => f.startsWith(join(t.dir, 'proxy-body') + '/')), ourFiles.join(' '));
  });

  test('a CR or LF in an add_header value leaves the header out (nginx would send it: a response split)', async () => {
    const r = await rawRequest(ports.proxy, 'GET /u%0d%0aX-Inj:%201 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n');
    assert.equal(r.status, 204);
    assert.equal(r.headers.get('x-uri'), undefined);
    assert.equal(r.headers.get('x-inj'), undefined);
  });
});
