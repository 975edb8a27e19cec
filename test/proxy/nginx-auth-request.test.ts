/**
 * auth_request and auth_request_set next to the real nginx (Debian's 1.22.1), with a small Node auth service
 * in the test: the service's answer (2xx, 401 with a challenge, 403, 500, a redirect) decides; the same
 * requests go to tsgi-proxy and nginx and get the same status, WWW-Authenticate, variables copied with
 * auth_request_set, and body. What the auth service received (method, URI, headers, no body) is compared too.
 * A second part puts the auth service on the real uWSGI behind uwsgi_pass.
 * Without nginx (or not root) the tsgi-proxy answers are still checked against the expected ones.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort, have, haveUwsgiPython, proxySync, rawRequest, tempDir, startSideBySide, startUwsgi, type Proc } from './helpers.js';

const withNginx = have('/usr/sbin/nginx') && process.getuid?.() === 0;

/** What the auth service saw last: method, URI, the token, X-Original-URI, Content-Length, body bytes. */
let seen = '';

function authService(): http.Server {
  return http.createServer((req, res) => {
    let body = 0;
    req.on('data', (d: Buffer) => (body += d.length));
    req.on('end', () => {
      if (req.url!.startsWith('/app/')) {
        res.writeHead(200, { 'Content-Type': 'text/plain' });
        res.end(`app ${req.method} ${req.url} user=${req.headers['x-user'] ?? '-'} body=${body}\n`);
        return;
      }
      const token = req.headers['x-token'];
      seen = `${req.method} ${req.url} token=${token ?? '-'} orig=${req.headers['x-original-uri'] ?? '-'} cl=${req.headers['content-length'] ?? '-'} body=${body}`;
      switch (token) {
        case undefined:
          res.writeHead(401, { 'WWW-Authenticate': 'Bearer realm="t"', 'X-User': 'nobody' });
          break;
        case 'ok':
          res.writeHead(200, { 'X-User': 'alice', 'X-Group': 'admin' });
          break;
        case 't204':
          res.writeHead(204, { 'X-User': 'bob' });
          break;
        case 'no':
          res.writeHead(403, { 'X-User': 'mallory' });
          break;
        case 'two':
          res.setHeader('WWW-Authenticate', ['Bearer realm="one"', 'Basic realm="two"']);
          res.writeHead(401);
          break;
        case 'redir':
          res.writeHead(302, { Location: 'http://example.com/' });
          break;
        default:
          res.writeHead(500);
      }
      res.end('auth body\n');
    });
  });
}

const conf = (dir: string, port: number, auth: number): string => `events {}
http {
  access_log off;
  default_type text/plain;
  server {
    listen 127.0.0.1:${port};
    server_name main;
    location = /auth {
      internal;
      proxy_pass http://127.0.0.1:${auth}/check;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Original-URI $request_uri;
    }
    location /f/ {
      auth_request /auth;
      auth_request_set $user $upstream_http_x_user;
      auth_request_set $grp "g=$upstream_http_x_group";
      add_header X-User $user;
      add_header X-Group $grp;
      alias ${dir}/d/;
    }
    location /app/ {
      auth_request /auth;
      auth_request_set $user $upstream_http_x_user;
      proxy_set_header X-User $user;
      proxy_pass http://127.0.0.1:${auth};
    }
    location /off/ {
      auth_request /auth;
      alias ${dir}/d/;
      location /off/open { auth_request off; alias ${dir}/d/open; }
    }
    location /ret/ { auth_request /ret-auth; alias ${dir}/d/; }
    location = /ret-auth { internal; return 204; }
    location /deny/ { auth_request /deny-auth; alias ${dir}/d/; }
    location = /deny-auth { internal; return 403; }
    location /ep/ {
      auth_request /auth;
      auth_request_set $user $upstream_http_x_user;
      error_page 403 /e.txt;
      alias ${dir}/d/;
    }
    location = /e.txt { add_header X-E "e=$user" always; root ${dir}; }
    location /anyok/ { satisfy any; allow 127.0.0.1; auth_request /auth; alias ${dir}/d/; }
    location /anyno/ { satisfy any; deny all; auth_request /auth; alias ${dir}/d/; }
    location /basic/ { auth_basic "B"; auth_basic_user_file ${dir}/users; auth_request /auth; alias ${dir}/d/; }
    location /basicany/ { satisfy any; auth_basic "B"; auth_basic_user_file ${dir}/users; auth_request /auth; alias ${dir}/d/; }
  }
  server {
    listen 127.0.0.1:${port};
    server_name whole;
    auth_request /auth;
    location = /auth { internal; proxy_pass http://127.0.0.1:${auth}/check; proxy_set_header Content-Length ""; proxy_pass_request_body off; }
    location / { alias ${dir}/d/; }
  }
}
`;

/** Request line, X-Token, body, basic credentials. */
const CASES: Array<[string, string, string?, string?]> = [
  ['GET /f/x', ''],
  ['GET /f/x', 'ok'],
  ['GET /f/x', 't204'],
  ['GET /f/x', 'no'],
  ['GET /f/x', 'boom'],
  ['GET /f/x', 'redir'],
  ['GET /f/x', 'two'],
  ['HEAD /f/x', 'ok'],
  ['POST /app/x?a=1', 'ok', 'hello'],
  ['POST /app/x?a=1', 'no', 'hello'],
  ['GET /off/x', ''],
  ['GET /off/open', ''],
  ['GET /ret/x', ''],
  ['GET /deny/x', ''],
  ['GET /ep/x', 'no'],
  ['GET /auth', 'ok'],
  ['GET /anyok/x', ''],
  ['GET /anyno/x', ''],
  ['GET /anyno/x', 'ok'],
  ['GET /anyno/x', 'no'],
  ['GET /basic/x', ''],
  ['GET /basic/x', 'ok'],
  ['GET /basic/x', 'ok', undefined, 'u:p'],
  ['GET /basic/x', 'no', undefined, 'u:p'],
  ['GET /basicany/x', ''],
  ['GET /basicany/x', 'ok'],
  ['GET /basicany/x', 'no'],
  ['GET /basicany/x', '', undefined, 'u:p'],
  ['GET /basicany/x', 'no', undefined, 'u:bad'],
  ['GET /whole', ''],
  ['GET /whole', 'ok'],
];

async function answers(port: number): Promise<string[]> {
  const out: string[] = [];
  for (const [line, token, body, cred] of CASES) {
    seen = '-';
    const host = line.includes('/whole') ? 'whole' : 'main';
    const h = `${line} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n${token ? `X-Token: ${token}\r\n` : ''}${cred ? `Authorization: Basic ${Buffer.from(cred).toString('base64')}\r\n` : ''}${body !== undefined ? `Content-Length: ${body.length}\r\n` : ''}\r\n${body ?? ''}`;
    const r = await rawRequest(port, h);
    // Every WWW-Authenticate line, in order (there may be two).
    const hd = (n: string): string => (n === 'www-authenticate' ? [...r.raw.matchAll(/^WWW-Authenticate: (.*?)\r$/gim)].map((m) => m[1]).join(' + ') || '-' : (r.headers.get(n) ?? '-'));
    out.push(`${line} ${token}${cred ? ` ${cred}` : ''}: ${r.status} auth=${hd('www-authenticate')} user=${hd('x-user')} grp=${hd('x-group')} e=${hd('x-e')} | ${r.body.trim().split(/\r?\n/)[0]} | seen: ${seen}`);
  }
  return out;
}

describe('auth_request next to nginx', () => {
  let t: ReturnType<typeof tempDir>;
  let proxy: Proc;
  let nginx: Proc | undefined;
  let svc: http.Server;
  const ports = { proxy: 0, nginx: 0 };

  before(async () => {
    t = tempDir('authreq');
    mkdirSync(join(t.dir, 'd'));
    for (const f of ['x', 'open', 'whole']) writeFileSync(join(t.dir, 'd', f), 'file\n');
    writeFileSync(join(t.dir, 'e.txt'), 'error page\n');
    writeFileSync(join(t.dir, 'users'), 'u:{PLAIN}p\n');
    svc = authService();
    await new Promise<void>((res) => svc.listen(0, '127.0.0.1', res));
    const auth = (svc.address() as AddressInfo).port;
    const both = await startSideBySide(t.dir, (port) => conf(t.dir, port, auth), withNginx);
    ({ proxy, nginx } = both);
    Object.assign(ports, both.ports);
  });

  after(async () => {
    await proxy?.stop('SIGQUIT');
    await nginx?.stop('SIGQUIT');
    svc?.close();
    t?.cleanup();
  });

  test('same answers as nginx', async () => {
    const ours = await answers(ports.proxy);
    if (nginx) assert.deepEqual(ours, await answers(ports.nginx));
    const at = (line: string, token: string): string => ours[CASES.findIndex((c) => c[0] === line && c[1] === token)]!;
    // Expected answers (as nginx gives them), so the test means something without nginx too.
    assert.match(at('GET /f/x', ''), /^GET \/f\/x : 401 auth=Bearer realm="t" user=- .* seen: GET \/check token=- orig=\/f\/x cl=- body=0$/);
    assert.match(at('GET /f/x', 'ok'), /: 200 auth=- user=alice grp=g=admin .*\| file \|/);
    assert.match(at('GET /f/x', 't204'), /: 200 auth=- user=bob grp=g= /);
    assert.match(at('GET /f/x', 'no'), /: 403 auth=- /);
    assert.match(at('GET /f/x', 'boom'), /: 500 /);
    assert.match(at('GET /f/x', 'redir'), /: 500 /);
    // The subrequest is a GET without the client's body; the request itself goes on with it.
    assert.match(at('POST /app/x?a=1', 'ok'), /: 200 .*\| app POST \/app\/x\?a=1 user=alice body=5 \| seen: GET \/check token=ok orig=\/app\/x\?a=1 cl=- body=0$/);
    assert.match(at('GET /off/open', ''), /: 200 .*\| file \| seen: -$/);
    assert.match(at('GET /ret/x', ''), /: 200 .*\| file \| seen: -$/);
    assert.match(at('GET /deny/x', ''), /: 403 /);
    // auth_request_set applies whatever the status: the error page sees the user the 403 named.
    assert.match(at('GET /ep/x', 'no'), /: 403 .* e=e=mallory \| error page \|/);
    assert.match(at('GET /auth', 'ok'), /: 404 .* seen: -$/);
    assert.match(at('GET /anyok/x', ''), /: 200 .* seen: -$/);
    assert.match(at('GET /anyno/x', ''), /: 401 auth=Bearer/);
    assert.match(at('GET /anyno/x', 'ok'), /: 200 /);
    // The first of the auth service's challenges is passed on (nginx 1.22 passes one).
    assert.match(at('GET /f/x', 'two'), /: 401 auth=Bearer realm="one" user/);
    // satisfy all: failed basic credentials end it before the subrequest; both must pass.
    assert.match(at('GET /basic/x', 'ok'), /: 401 auth=Basic realm="B" .* seen: -$/);
    assert.match(ours[CASES.findIndex((c) => c[0] === 'GET /basic/x' && c[3] === 'u:p')]!, /: 200 .*\| file \|/);
    // satisfy any: either passes; both refusing with 401 offer both challenges.
    assert.match(at('GET /basicany/x', ''), /: 401 auth=Basic realm="B" \+ Bearer realm="t" /);
    assert.match(at('GET /basicany/x', 'ok'), /: 200 /);
    // auth_request at server level: the auth location inherits it, and its subrequest is not checked again.
    assert.match(at('GET /whole', 'ok'), /: 200 .*\| file \|/);
  });

  test('bad auth_request_set is refused at -t with file and line', () => {
    writeFileSync(join(t.dir, 'bad.conf'), `events {}\nhttp {\n  server {\n    auth_request_set user $upstream_http_x_user;\n  }\n}\n`);
    const r = proxySync(['-t', '-q', '-p', t.dir + '/', '-c', 'bad.conf', '-e', 'stderr']);
    assert.equal(r.code, 1);
    assert.match(r.stderr.split('\n')[0]!, /invalid variable name "user" in .*bad\.conf:4$/);
    writeFileSync(join(t.dir, 'bad.conf'), `events {}\nhttp {\n  auth_request /a;\n  auth_request /b;\n}\n`);
    assert.match(proxySync(['-t', '-q', '-p', t.dir + '/', '-c', 'bad.conf', '-e', 'stderr']).stderr.split('\n')[0]!, /"auth_request" directive is duplicate in .*bad\.conf:4$/);
  });
});

const UWSGI_AUTH = `def application(env, start):
    tok = env.get('HTTP_X_TOKEN')
    seen = '%s %s cl=%s' % (env['REQUEST_METHOD'], env.get('REQUEST_URI'), env.get('CONTENT_LENGTH') or '-')
    if tok == 'ok':
        start('200 OK', [('X-User', 'ursula'), ('X-Seen', seen)])
    elif tok is None:
        start('401 Unauthorized', [('WWW-Authenticate', 'Basic realm="u"'), ('X-Seen', seen)])
    else:
        start('403 Forbidden', [('X-Seen', seen)])
    return [b'no']
`;

describe('auth_request to a uwsgi_pass auth service (the real uWSGI) next to nginx', { skip: haveUwsgiPython() ? false : 'needs the real uWSGI with python3' }, () => {
  let t: ReturnType<typeof tempDir>;
  let proxy: Proc;
  let nginx: Proc | undefined;
  let uwsgi: Proc;
  const ports = { proxy: 0, nginx: 0 };

  before(async () => {
    t = tempDir('authreq-uwsgi');
    mkdirSync(join(t.dir, 'd'));
    writeFileSync(join(t.dir, 'd', 'x'), 'file\n');
    writeFileSync(join(t.dir, 'auth.py'), UWSGI_AUTH);
    const up = await freePort();
    uwsgi = await startUwsgi(t.dir, `127.0.0.1:${up}`, join(t.dir, 'auth.py'));
    const both = await startSideBySide(t.dir, (port) => `events {}
http {
  access_log off;
  server {
    listen 127.0.0.1:${port};
    location = /uauth {
      internal;
      include /etc/nginx/uwsgi_params;
      uwsgi_pass 127.0.0.1:${up};
      uwsgi_pass_request_body off;
      uwsgi_param CONTENT_LENGTH "";
    }
    location /u/ {
      auth_request /uauth;
      auth_request_set $user $upstream_http_x_user;
      auth_request_set $seen $upstream_http_x_seen;
      add_header X-User $user always;
      add_header X-Seen $seen always;
      alias ${t.dir}/d/;
    }
  }
}
`, withNginx);
    ({ proxy, nginx } = both);
    Object.assign(ports, both.ports);
  });

  after(async () => {
    await proxy?.stop('SIGQUIT');
    await nginx?.stop('SIGQUIT');
    await uwsgi?.stop('SIGTERM');
    t?.cleanup();
  });

  test('same answers as nginx', async () => {
    const ask = async (port: number): Promise<string[]> => {
      const out: string[] = [];
      for (const token of ['', 'ok', 'no']) {
        const r = await rawRequest(port, `GET /u/x?q=1 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n${token ? `X-Token: ${token}\r\n` : ''}Content-Length: 3\r\n\r\nabc`);
        out.push(`${token}: ${r.status} ${r.headers.get('www-authenticate') ?? '-'} user=${r.headers.get('x-user') ?? '-'} seen=${r.headers.get('x-seen') ?? '-'} ${r.status === 200 ? r.body.trim() : ''}`);
      }
      return out;
    };
    const ours = await ask(ports.proxy);
    if (nginx) assert.deepEqual(ours, await ask(ports.nginx));
    assert.deepEqual(ours, [
      ': 401 Basic realm="u" user=- seen=GET /u/x?q=1 cl=- ',
      'ok: 200 - user=ursula seen=GET /u/x?q=1 cl=- file',
      'no: 403 - user=- seen=GET /u/x?q=1 cl=- ',
    ]);
  });
});
