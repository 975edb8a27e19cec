/**
 * `proxy_pass https://` next to the real nginx (Debian's 1.22.1): an https backend made here (a CA, a
 * certificate for backend.test, a client certificate, made with openssl) answers with what it saw — SNI,
 * protocol, the client certificate's CN, whether the TLS session was resumed, and which request of its
 * connection this is. Both proxies get the same requests in the same order; answers, statuses and the
 * error-log lines of the failures must be the same. Without nginx (or root) tsgi-proxy is checked alone
 * against what nginx answered.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:https';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import { canConnect, freePort, have, haveUwsgiPython, proxySync, run, rawRequest, startSideBySide, tempDir, waitFor, type Proc } from './helpers.js';

const withNginx = have('/usr/sbin/nginx') && process.getuid?.() === 0;
const withOpenssl = have('openssl');

function makeCerts(dir: string): void {
  const ssl = (...args: string[]): void => {
    const r = spawnSync('openssl', args, { cwd: dir, encoding: 'latin1' });
    if (r.status !== 0) throw new Error(`openssl ${args.join(' ')}: ${r.stderr}`);
  };
  ssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '30', '-subj', '/CN=Test CA');
  writeFileSync(join(dir, 'ext'), 'subjectAltName=DNS:backend.test\n');
  for (const [name, cn, ext] of [['srv', 'backend.test', true], ['cli', 'client', false]] as const) {
    ssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`);
    ssl('x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.crt`, '-days', '30', ...(ext ? ['-extfile', 'ext'] : []));
  }
}

const conf = (port: number, dir: string, back: number): string => `events {}
http {
  access_log off;
  upstream ka { server 127.0.0.1:${back}; keepalive 4; }
  server {
    listen 127.0.0.1:${port};
    location /sni { proxy_ssl_session_reuse off; proxy_pass https://127.0.0.1:${back}; proxy_ssl_server_name on; proxy_ssl_name backend.test; }
    location /ipname { proxy_ssl_session_reuse off; proxy_pass https://127.0.0.1:${back}; proxy_ssl_server_name on; }
    location /ok { proxy_ssl_session_reuse off; proxy_pass https://127.0.0.1:${back}; proxy_ssl_verify on; proxy_ssl_trusted_certificate ${dir}/ca.crt; proxy_ssl_name backend.test; }
    location /depth0 { proxy_ssl_session_reuse off; proxy_pass https://127.0.0.1:${back}; proxy_ssl_verify on; proxy_ssl_verify_depth 0; proxy_ssl_trusted_certificate ${dir}/ca.crt; proxy_ssl_name backend.test; }
    location /wrongname { proxy_ssl_session_reuse off; proxy_pass https://127.0.0.1:${back}; proxy_ssl_verify on; proxy_ssl_trusted_certificate ${dir}/ca.crt; }
    location /untrusted { proxy_ssl_session_reuse off; proxy_pass https://127.0.0.1:${back}; proxy_ssl_verify on; proxy_ssl_trusted_certificate ${dir}/cli.crt; proxy_ssl_name backend.test; }
    location /client { proxy_ssl_session_reuse off; proxy_pass https://127.0.0.1:${back}; proxy_ssl_certificate ${dir}/cli.crt; proxy_ssl_certificate_key ${dir}/cli.key; }
    location /v13 { proxy_ssl_session_reuse off; proxy_pass https://127.0.0.1:${back}; proxy_ssl_protocols TLSv1.3; }
    location /plain { proxy_pass https://127.0.0.1:${back}; }
    location /post { proxy_pass https://127.0.0.1:${back}; }
    location /ka { proxy_pass https://ka; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
`;

const PATHS = ['/sni', '/ipname', '/ok', '/depth0', '/wrongname', '/untrusted', '/client', '/v13', '/plain', '/plain', '/ka', '/ka', '/post'];

/** What nginx 1.22.1 answered, in the order of PATHS. */
const SEEN = [
  'sni=backend.test proto=TLSv1.2 cn=- resumed=false req=1 host=127.0.0.1:B uri=/sni',
  'sni=- proto=TLSv1.2 cn=- resumed=false req=1 host=127.0.0.1:B uri=/ipname',
  'sni=- proto=TLSv1.2 cn=- resumed=false req=1 host=127.0.0.1:B uri=/ok',
  // Depth 0: the certificate is signed by the trusted one itself (no intermediate).
  'sni=- proto=TLSv1.2 cn=- resumed=false req=1 host=127.0.0.1:B uri=/depth0',
  '502',
  '502',
  'sni=- proto=TLSv1.2 cn=client resumed=false req=1 host=127.0.0.1:B uri=/client',
  'sni=- proto=TLSv1.3 cn=- resumed=false req=1 host=127.0.0.1:B uri=/v13',
  'sni=- proto=TLSv1.2 cn=- resumed=false req=1 host=127.0.0.1:B uri=/plain',
  'sni=- proto=TLSv1.2 cn=- resumed=true req=1 host=127.0.0.1:B uri=/plain',
  'sni=- proto=TLSv1.2 cn=- resumed=false req=1 host=ka uri=/ka',
  'sni=- proto=TLSv1.2 cn=- resumed=false req=2 host=ka uri=/ka',
  'sni=- proto=TLSv1.2 cn=- resumed=true req=1 host=127.0.0.1:B uri=/post body=hello',
];

describe('proxy_pass https:// next to nginx', { skip: withOpenssl ? false : 'openssl is not installed' }, () => {
  let t: ReturnType<typeof tempDir>;
  let proxy: Proc;
  let nginx: Proc | undefined;
  let backend: Server;
  let back = 0;
  const ports = { proxy: 0, nginx: 0 };

  before(async () => {
    t = tempDir('upstream-tls');
    makeCerts(t.dir);
    const c = (f: string): Buffer => readFileSync(join(t.dir, f));
    back = await freePort();
    const perConn = new WeakMap<object, number>();
    backend = createServer({ key: c('srv.key'), cert: c('srv.crt'), ca: c('ca.crt'), requestCert: true, rejectUnauthorized: false }, (req, res) => {
      const s = req.socket as TLSSocket;
      const n = (perConn.get(s) ?? 0) + 1;
      perConn.set(s, n);
      const cert = s.getPeerCertificate();
      let body = '';
      req.on('data', (d: Buffer) => (body += d.toString('latin1')));
      req.on('end', () => {
        res.end(`sni=${(s as TLSSocket & { servername?: string | false }).servername || '-'} proto=${s.getProtocol()} cn=${cert?.subject?.CN ?? '-'} resumed=${s.isSessionReused()} req=${n} host=${req.headers.host} uri=${req.url}${body ? ` body=${body}` : ''}\n`);
      });
    }).listen(back, '127.0.0.1');
    const both = await startSideBySide(t.dir, (port) => conf(port, t.dir, back), withNginx);
    ({ proxy, nginx } = both);
    Object.assign(ports, both.ports);
  });

  after(async () => {
    await proxy?.stop('SIGQUIT');
    await nginx?.stop('SIGQUIT');
    backend?.close();
    t?.cleanup();
  });

  const answers = async (port: number): Promise<string[]> => {
    const out: string[] = [];
    for (const p of PATHS) {
      const req = p === '/post' ? `POST /post HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello` : `GET ${p} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`;
      const r = await rawRequest(port, req);
      out.push(r.status === 200 ? r.body.trimEnd().replace(`127.0.0.1:${back}`, '127.0.0.1:B') : String(r.status));
    }
    return out;
  };

  const logLines = (file: string): string[] =>
    readFileSync(file, 'latin1').split('\n').filter((l) => l.includes('SSL')).map((l) => l.replace(/^.*\*\d+ /, '').replace(/, (client|upstream):.*$/, ''));

  test('same answers and error-log lines as nginx', async () => {
    assert.deepEqual(await answers(ports.proxy), SEEN, 'tsgi-proxy');
    const want = [
      'upstream SSL certificate does not match "127.0.0.1" while SSL handshaking to upstream',
      'upstream SSL certificate verify error: (19:self-signed certificate in certificate chain) while SSL handshaking to upstream',
    ];
    await waitFor('the error log', () => logLines(join(t.dir, 'error.log')).length >= 2, 3000);
    assert.deepEqual(logLines(join(t.dir, 'error.log')), want);
    if (nginx) {
      assert.deepEqual(await answers(ports.nginx), SEEN, 'nginx');
      assert.deepEqual(logLines(join(t.dir, 'nginx-error.log')), want);
    }
  });

  test('-t errors with file:line', () => {
    const cases: Array<[string, string]> = [
      ['proxy_pass https://127.0.0.1:1; proxy_ssl_verify on;', 'no proxy_ssl_trusted_certificate for proxy_ssl_verify'],
      [`proxy_pass https://127.0.0.1:1; proxy_ssl_certificate ${t.dir}/cli.crt;`, `no "proxy_ssl_certificate_key" is defined for certificate "${t.dir}/cli.crt"`],
      ['proxy_pass https://127.0.0.1:1; proxy_ssl_protocols TLSv9;', 'invalid value "TLSv9"'],
      ['proxy_pass https://127.0.0.1:1; proxy_ssl_password_file /x;', '"proxy_ssl_password_file" directive is not supported by tsgi-proxy'],
    ];
    const diffs: string[] = [];
    const dir = join(t.dir, 'bad');
    mkdirSync(dir, { recursive: true });
    for (const [directives, message] of cases) {
      const text = `events {}\nhttp {\n server {\n  location / { ${directives} }\n }\n}\n`;
      writeFileSync(join(dir, 'bad.conf'), text);
      const ours = proxySync(['-t', '-q', '-p', dir + '/', '-c', 'bad.conf', '-e', 'stderr']);
      const line = ours.stderr.split('\n')[0] ?? '';
      if (ours.code !== 1 || !line.includes(message) || !line.includes(`${join(dir, 'bad.conf')}:4`)) diffs.push(`${directives}: tsgi-proxy said "${line}"`);
    }
    assert.deepEqual(diffs, []);
  });

  test('uwsgi_pass suwsgi:// to the real uWSGI (--ssl-socket), verified, as nginx', { skip: haveUwsgiPython() ? false : 'uWSGI with the python3 plugin is not installed' }, async () => {
    writeFileSync(join(t.dir, 'app.py'), [
      'def application(env, start):',
      "    start('200 OK', [('Content-Type', 'text/plain')])",
      "    return [('uri=%s method=%s body=%s\\n' % (env['REQUEST_URI'], env['REQUEST_METHOD'], env['wsgi.input'].read().decode())).encode()]",
      '',
    ].join('\n'));
    const up = await freePort();
    const uwsgi = run('uwsgi', ['--plugin', 'python3', '--ssl-socket', `127.0.0.1:${up},${t.dir}/srv.crt,${t.dir}/srv.key`, '--wsgi-file', join(t.dir, 'app.py'), '--disable-logging', '--die-on-term'], { cwd: t.dir });
    const dir = join(t.dir, 'suwsgi');
    mkdirSync(dir, { recursive: true });
    let pair: Awaited<ReturnType<typeof startSideBySide>> | undefined;
    try {
      await waitFor('uwsgi', () => canConnect(up));
      pair = await startSideBySide(dir, (port) => `events {}
http {
  access_log off;
  server {
    listen 127.0.0.1:${port};
    location / { uwsgi_param REQUEST_URI $request_uri; uwsgi_param REQUEST_METHOD $request_method; uwsgi_param CONTENT_LENGTH $content_length; uwsgi_pass suwsgi://127.0.0.1:${up}; uwsgi_ssl_verify on; uwsgi_ssl_trusted_certificate ${t.dir}/ca.crt; uwsgi_ssl_name backend.test; }
    location /bad { uwsgi_param REQUEST_METHOD $request_method; uwsgi_pass suwsgi://127.0.0.1:${up}; uwsgi_ssl_verify on; uwsgi_ssl_trusted_certificate ${t.dir}/ca.crt; }
  }
}
`, withNginx);
      const ask = async (port: number): Promise<string[]> => [
        (await rawRequest(port, 'GET /x?y=1 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n')).body.trimEnd(),
        (await rawRequest(port, 'POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc')).body.trimEnd(),
        String((await rawRequest(port, 'GET /bad HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n')).status),
      ];
      const want = ['uri=/x?y=1 method=GET body=', 'uri=/p method=POST body=abc', '502'];
      assert.deepEqual(await ask(pair.ports.proxy), want, 'tsgi-proxy');
      if (pair.nginx) assert.deepEqual(await ask(pair.ports.nginx), want, 'nginx');
    } finally {
      await pair?.proxy.stop('SIGQUIT');
      await pair?.nginx?.stop('SIGQUIT');
      await uwsgi.stop('SIGTERM');
    }
  });
});
