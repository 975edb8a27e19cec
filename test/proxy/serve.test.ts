/**
 * tsgi-proxy serving in front of the real uWSGI (Debian's uwsgi + python3 plugin): the guide's app over a
 * unix socket, an echo app for what reaches the backend, HTTP proxying to uWSGI's own HTTP socket, and the
 * request-handling directives (server_name, return, rewrite, error_page, add_header, limits, access_log).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { freePort, get, haveUwsgiPython, rawRequest, readText, startProxy, startUwsgi, tempDir, waitFor, type Proc } from './helpers.js';

const HELLO = `def application(environ, start_response):
    start_response('200 OK', [('Content-Type','text/html')])
    return [b"<h1 style='color:blue'>Hello There!</h1>"]
`;

const ECHO = `def application(environ, start_response):
    body = environ['wsgi.input'].read(int(environ.get('CONTENT_LENGTH') or 0))
    keys = ['REQUEST_METHOD', 'PATH_INFO', 'QUERY_STRING', 'REQUEST_URI', 'CONTENT_LENGTH', 'SERVER_NAME', 'HTTP_HOST', 'HTTP_X_TEST', 'HTTP_X_MULTI', 'HTTP_COOKIE', 'TSGI_KEEPALIVE']
    out = ''.join('%s=%s\\n' % (k, environ.get(k, '-')) for k in keys)
    status = environ.get('HTTP_X_STATUS', '200 OK')
    start_response(status, [('Content-Type', 'text/plain'), ('X-Backend', 'echo')])
    return [out.encode('latin-1'), b'BODY=' + body]
`;

const skip = haveUwsgiPython() ? false : 'the real uWSGI with the python3 plugin is not installed (Debian uwsgi, uwsgi-plugin-python3)';

describe('tsgi-proxy in front of the real uWSGI', { skip }, () => {
  let t: ReturnType<typeof tempDir>;
  let port: number;
  let deadPort: number;
  let proxy: Proc;
  const backends: Proc[] = [];

  before(async () => {
    t = tempDir('serve');
    port = await freePort();
    deadPort = await freePort();
    writeFileSync(join(t.dir, 'hello.py'), HELLO);
    writeFileSync(join(t.dir, 'echo.py'), ECHO);
    mkdirSync(join(t.dir, 'html'));
    writeFileSync(join(t.dir, 'html', '404.html'), 'custom not found page\n');
    backends.push(await startUwsgi(t.dir, join(t.dir, 'myapp.sock'), 'hello.py'));
    backends.push(await startUwsgi(t.dir, join(t.dir, 'echo.sock'), 'echo.py'));
    // uWSGI's own HTTP socket, for proxy_pass.
    const httpSock = await freePort();
    backends.push(await startUwsgiHttp(t.dir, httpSock));
    writeFileSync(
      join(t.dir, 'nginx.conf'),
      `events {}
http {
    log_format test '$request_method $uri $status $body_bytes_sent "$http_x_test" $upstream_status';
    access_log ${t.dir}/access.log test;
    error_log ${t.dir}/error.log;
    server {
        listen 127.0.0.1:${port};
        server_name your_domain www.your_domain;
        location / {
            include uwsgi_params;
            uwsgi_pass unix:${t.dir}/myapp.sock;
        }
    }
    server {
        listen 127.0.0.1:${port};
        server_name echo.test;
        client_max_body_size 100;
        root ${t.dir}/html;
        error_page 404 /404.html;
        location / {
            include uwsgi_params;
            uwsgi_param HTTP_X_TEST from-param;
            uwsgi_pass unix:${t.dir}/echo.sock;
        }
        location /plain/ {
            include uwsgi_params;
            uwsgi_pass unix:${t.dir}/echo.sock;
        }
        location /http/ {
            proxy_pass http://127.0.0.1:${httpSock}/;
            proxy_set_header X-Test via-proxy;
        }
        location /dead {
            uwsgi_pass 127.0.0.1:${deadPort};
        }
        location = /ret { return 201 "made it"; }
        location = /moved { return 301 /elsewhere; }
        location /old/ { rewrite ^/old/(.*)$ /plain/$1?from=old last; }
        location /perm/ { rewrite ^/perm/(.*)$ /new/$1 permanent; }
        location /hdr { add_header X-Added yes; add_header X-Always yes always; return 200 ok; }
        location /missing-file { }
        location = /404.html { internal; }
    }
}
`,
    );
    proxy = await startProxy(t.dir, 'nginx.conf', port);
  });

  async function startUwsgiHttp(dir: string, p: number): Promise<Proc> {
    const { run } = await import('./helpers.js');
    const proc = run('uwsgi', ['--plugin', 'python3', '--http-socket', `127.0.0.1:${p}`, '--wsgi-file', 'echo.py', '--disable-logging', '--die-on-term'], { cwd: dir });
    const { canConnect } = await import('./helpers.js');
    await waitFor('uwsgi http socket', () => canConnect(p));
    return proc;
  }

  after(async () => {
    await proxy?.stop('SIGQUIT');
    for (const b of backends) await b.stop('SIGTERM');
    t?.cleanup();
  });

  test("the guide's hello app answers Hello There! through uwsgi_pass on a unix socket", async () => {
    const r = await get(port, '/', { Host: 'your_domain' });
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('content-type'), 'text/html');
    assert.match(r.body, /Hello There!/);
  });

  test('the uwsgi backend receives the CGI vars, headers as HTTP_*, and uwsgi_param overrides', async () => {
    const r = await get(port, '/plain/path?q=1', { Host: 'echo.test', 'X-Test': 'from-client', 'X-Multi': 'a' });
    assert.equal(r.status, 200);
    assert.match(r.body, /REQUEST_METHOD=GET\n/);
    assert.match(r.body, /PATH_INFO=\/plain\/path\n/);
    assert.match(r.body, /QUERY_STRING=q=1\n/);
    assert.match(r.body, /REQUEST_URI=\/plain\/path\?q=1\n/);
    assert.match(r.body, /SERVER_NAME=echo\.test\n/);
    assert.match(r.body, /HTTP_X_TEST=from-client\n/);
    assert.match(r.body, /TSGI_KEEPALIVE=2\n/);
    const o = await get(port, '/over', { Host: 'echo.test', 'X-Test': 'from-client' });
    assert.match(o.body, /HTTP_X_TEST=from-param\n/);
  });

  test('a POST body reaches the backend with its CONTENT_LENGTH, chunked bodies too', async () => {
    const r = await rawRequest(port, 'POST /plain/ HTTP/1.1\r\nHost: echo.test\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello');
    assert.match(r.body, /CONTENT_LENGTH=5\n/);
    assert.match(r.body, /BODY=hello$/);
    const c = await rawRequest(port, 'POST /plain/ HTTP/1.1\r\nHost: echo.test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n');
    assert.match(c.body, /CONTENT_LENGTH=5\n/);
    assert.match(c.body, /BODY=abcde$/);
  });

  test('a body over client_max_body_size is refused with 413, by header and by counting chunks', async () => {
    const r = await rawRequest(port, `POST /plain/ HTTP/1.1\r\nHost: echo.test\r\nContent-Length: 101\r\n\r\n${'x'.repeat(101)}`);
    assert.equal(r.status, 413);
    const c = await rawRequest(port, `POST /plain/ HTTP/1.1\r\nHost: echo.test\r\nTransfer-Encoding: chunked\r\n\r\n65\r\n${'x'.repeat(101)}\r\n0\r\n\r\n`);
    assert.equal(c.status, 413);
  });

  test('proxy_pass to an HTTP backend replaces the location prefix and sets proxy_set_header', async () => {
    const r = await get(port, '/http/sub?x=2', { Host: 'echo.test' });
    assert.equal(r.status, 200, r.raw);
    assert.match(r.body, /PATH_INFO=\/sub\n/);
    assert.match(r.body, /QUERY_STRING=x=2\n/);
    assert.match(r.body, /HTTP_X_TEST=via-proxy\n/);
    assert.equal(r.headers.get('x-backend'), 'echo');
  });

  test('a backend that refuses connections gives 502, a log line naming it, and the next request is served', async () => {
    const r = await get(port, '/dead', { Host: 'echo.test' });
    assert.equal(r.status, 502);
    assert.match(r.body, /502 Bad Gateway/);
    await waitFor('error log line', () => /connect\(\) failed \(ECONNREFUSED\).*upstream: "uwsgi:\/\/127\.0\.0\.1:\d+"/.test(readText(join(t.dir, 'error.log'))));
    assert.equal((await get(port, '/plain/', { Host: 'echo.test' })).status, 200);
  });

  test('return answers with a code and text, or a redirect with an absolute Location', async () => {
    const r = await get(port, '/ret', { Host: 'echo.test' });
    assert.equal(r.status, 201);
    assert.equal(r.body, 'made it');
    const m = await get(port, '/moved', { Host: 'echo.test' });
    assert.equal(m.status, 301);
    assert.equal(m.headers.get('location'), `http://echo.test:${port}/elsewhere`);
  });

  test('rewrite ... last searches locations again with new arguments; permanent redirects', async () => {
    const r = await get(port, '/old/thing?a=1', { Host: 'echo.test' });
    assert.match(r.body, /PATH_INFO=\/plain\/thing\n/);
    assert.match(r.body, /QUERY_STRING=from=old&a=1\n/);
    const p = await get(port, '/perm/x?y=1', { Host: 'echo.test' });
    assert.equal(p.status, 301);
    assert.equal(p.headers.get('location'), `http://echo.test:${port}/new/x?y=1`);
  });

  test('add_header applies to successful responses, "always" to every response', async () => {
    const r = await get(port, '/hdr', { Host: 'echo.test' });
    assert.equal(r.headers.get('x-added'), 'yes');
    assert.equal(r.headers.get('x-always'), 'yes');
  });

  test('error_page serves a custom page from an internal location with the original status', async () => {
    const r = await get(port, '/missing-file', { Host: 'echo.test' });
    assert.equal(r.status, 404);
    assert.equal(r.body, 'custom not found page\n');
    const direct = await get(port, '/404.html', { Host: 'echo.test' });
    assert.equal(direct.status, 404);
  });

  test('an unknown Host goes to the first server on the address (the default server)', async () => {
    const r = await get(port, '/', { Host: 'nobody.test' });
    assert.match(r.body, /Hello There!/);
  });

  test('a malformed request gets 400 and the connection closes; other requests are still served', async () => {
    const r = await rawRequest(port, 'GET /x HTTP/1.1\r\nHost: echo.test\r\nBad Header\r\n\r\n');
    assert.equal(r.status, 400);
    const traversal = await rawRequest(port, 'GET /../../etc/passwd HTTP/1.1\r\nHost: echo.test\r\n\r\n');
    assert.equal(traversal.status, 400);
    assert.equal((await get(port, '/', { Host: 'your_domain' })).status, 200);
  });

  test('access_log writes one line per request in the log_format given', async () => {
    await get(port, '/ret', { Host: 'echo.test', 'X-Test': 'logged "quote"' });
    await waitFor('access log line', () => readText(join(t.dir, 'access.log')).includes('GET /ret 201 7 "logged \\x22quote\\x22" -'));
    await get(port, '/plain/', { Host: 'echo.test' });
    await waitFor('upstream status in access log', () => /GET \/plain\/ 200 \d+ "-" 200\n/.test(readText(join(t.dir, 'access.log'))));
  });
});
