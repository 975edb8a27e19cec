/**
 * HTTPS on the router and the router in front of other instances (docs/https.md): `https` with certificates
 * made here by openssl, keep-alive over TLS, a Flask POST, client certificates with uWSGI's '!CA' rule, the
 * environ of an https request compared with what the real uWSGI 2.0.21's https router gives the same app,
 * `http-to` round robin over a real uWSGI and a real tsgi (a dead address skipped, none alive: 502),
 * `http-to-https` compared with uWSGI's redirect, and the one-line refusals of bad files and values.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import tls from 'node:tls';
import http from 'node:http';
import { X509Certificate } from 'node:crypto';
import { join } from 'node:path';
import { tsgiBin } from '../helpers/paths.js';
import { activatedEnv, freePort, sharedVenv, startProcess, startTsgi, stopProcess, tempDir, type RunningProcess } from '../helpers/procs.js';

const haveOpenssl = spawnSync('openssl', ['version']).status === 0;
const haveUwsgi = spawnSync('uwsgi', ['--plugin', 'python3,http', '--version']).status === 0;

const ENV_APP = `import json
def application(environ, start_response):
    body = json.dumps({k: (v if isinstance(v, str) else repr(v)) for k, v in environ.items()}).encode()
    start_response('200 OK', [('Content-Type', 'application/json')])
    return [body]
`;
const WHO_APP = `import os
def application(environ, start_response):
    n = int(environ.get('CONTENT_LENGTH') or 0)
    data = environ['wsgi.input'].read(n) if n else b''
    start_response('200 OK', [('Content-Type', 'text/plain'), ('X-Who', os.environ['WHO'])])
    return [("%s %s %s %s %s " % (os.environ['WHO'], environ['REQUEST_METHOD'], environ['REQUEST_URI'], environ['wsgi.url_scheme'], environ.get('HTTPS'))).encode(), data]
`;
const FLASK_APP = `from flask import Flask, request
app = Flask(__name__)
@app.route('/form', methods=['POST'])
def form():
    return {'scheme': request.scheme, 'name': request.form['name'], 'url': request.url}
`;

function openssl(dir: string, ...args: string[]): void {
  const r = spawnSync('openssl', args, { cwd: dir, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`openssl ${args.join(' ')}: ${r.stderr}`);
}

/** A CA, a server certificate, a client certificate signed by the CA and one that is not. */
function makeCerts(dir: string): void {
  openssl(dir, 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '2', '-subj', '/CN=test-ca');
  openssl(dir, 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'srv.key', '-out', 'srv.crt', '-days', '2', '-subj', '/CN=localhost');
  openssl(dir, 'req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'cli.key', '-out', 'cli.csr', '-subj', '/O=Example/CN=client1');
  openssl(dir, 'x509', '-req', '-in', 'cli.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-set_serial', '7', '-out', 'cli.crt', '-days', '2');
  openssl(dir, 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'rogue.key', '-out', 'rogue.crt', '-days', '2', '-subj', '/CN=rogue');
}

function cleanEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, PYTHONHOME: '', ...extra };
  for (const k of Object.keys(env)) if (k.startsWith('UWSGI_') || k.startsWith('TSGI_')) delete env[k];
  return env;
}

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
  reused: boolean;
}

function request(url: string, opts: https.RequestOptions & { body?: string } = {}): Promise<Reply> {
  const mod = url.startsWith('https:') ? https : http;
  return new Promise((resolve, reject) => {
    const req = mod.request(url, { rejectUnauthorized: false, agent: false, ...opts }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks).toString('latin1'), reused: req.reusedSocket }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(opts.body);
  });
}

describe('https on the router', { skip: haveOpenssl ? false : 'openssl is not installed' }, () => {
  let dir: string;
  let port: number;
  let mtlsPort: number;
  let optPort: number;
  let tsgi: RunningProcess;
  const c = (name: string): string => join(dir, name);

  before(async () => {
    dir = tempDir();
    makeCerts(dir);
    writeFileSync(c('env_app.py'), ENV_APP);
    port = await freePort();
    mtlsPort = await freePort();
    optPort = await freePort();
    tsgi = await startTsgi([
      '--https', `127.0.0.1:${port},${c('srv.crt')},${c('srv.key')},HIGH`,
      '--https', `127.0.0.1:${mtlsPort},${c('srv.crt')},${c('srv.key')},HIGH,!${c('ca.crt')}`,
      '--https-socket', `127.0.0.1:${optPort},${c('srv.crt')},${c('srv.key')},,${c('ca.crt')}`,
      '--https-export-cert', '--wsgi-file', c('env_app.py'), '--master',
    ], { env: cleanEnv(), cwd: dir });
  });

  after(async () => {
    if (tsgi) await stopProcess(tsgi);
  });

  test('hello over https: wsgi.url_scheme https, HTTPS=on; the connection is kept alive over TLS', async () => {
    const agent = new https.Agent({ keepAlive: true, maxSockets: 1, rejectUnauthorized: false });
    try {
      const a = await request(`https://127.0.0.1:${port}/a?x=1`, { agent });
      const b = await request(`https://127.0.0.1:${port}/b`, { agent, method: 'POST', body: 'hello', headers: { 'Content-Type': 'text/plain' } });
      assert.equal(a.status, 200);
      const env = JSON.parse(a.body) as Record<string, string>;
      assert.equal(env['wsgi.url_scheme'], 'https');
      assert.equal(env.HTTPS, 'on');
      assert.equal(env.QUERY_STRING, 'x=1');
      assert.equal(env.HTTPS_DN, undefined, 'no client certificate on a listener without a CA');
      assert.equal(b.status, 200);
      assert.equal(b.reused, true, 'the second request went over the same TLS connection');
      assert.equal((JSON.parse(b.body) as Record<string, string>).CONTENT_LENGTH, '5');
    } finally {
      agent.destroy();
    }
  });

  test('plain HTTP to an https listener gets no answer from the app', async () => {
    await assert.rejects(request(`http://127.0.0.1:${port}/`));
  });

  test("!CA: a client without a certificate is refused at the handshake; with one signed by the CA it is served", async () => {
    await assert.rejects(request(`https://127.0.0.1:${mtlsPort}/`), /socket hang up|ECONNRESET|alert|certificate/i);
    await assert.rejects(request(`https://127.0.0.1:${mtlsPort}/`, { cert: readFileSync(c('rogue.crt')), key: readFileSync(c('rogue.key')) }));
    const r = await request(`https://127.0.0.1:${mtlsPort}/`, { cert: readFileSync(c('cli.crt')), key: readFileSync(c('cli.key')) });
    assert.equal(r.status, 200);
    const env = JSON.parse(r.body) as Record<string, string>;
    const x509 = new X509Certificate(readFileSync(c('cli.crt')));
    assert.equal(env.HTTPS_DN, '/O=Example/CN=client1');
    assert.equal(env.HTTPS_CLIENT_CERTIFICATE, x509.raw.toString('latin1'));
    assert.equal(env.HTTPS_CC, x509.toString(), 'https-export-cert: the PEM');
  });

  test('CA without !: a client may come without a certificate; one that does not verify is refused', async () => {
    const anon = await request(`https://127.0.0.1:${optPort}/`);
    assert.equal(anon.status, 200);
    assert.equal((JSON.parse(anon.body) as Record<string, string>).HTTPS_DN, undefined);
    const withCert = await request(`https://127.0.0.1:${optPort}/`, { cert: readFileSync(c('cli.crt')), key: readFileSync(c('cli.key')) });
    assert.equal((JSON.parse(withCert.body) as Record<string, string>).HTTPS_DN, '/O=Example/CN=client1');
    await assert.rejects(request(`https://127.0.0.1:${optPort}/`, { cert: readFileSync(c('rogue.crt')), key: readFileSync(c('rogue.key')) }));
    await tsgi.waitFor(/client .* sent a certificate that does not verify/);
  });
});

describe('the environ of an https request, compared with the real uWSGI', { skip: !haveOpenssl ? 'openssl is not installed' : !haveUwsgi ? 'uwsgi with its python3 and http plugins is not installed' : false }, () => {
  let dir: string;
  let uwsgi: RunningProcess;
  let tsgi: RunningProcess;
  let uPort: number;
  let tPort: number;

  before(async () => {
    dir = tempDir();
    makeCerts(dir);
    writeFileSync(join(dir, 'env_app.py'), ENV_APP);
    uPort = await freePort();
    tPort = await freePort();
    const common = (p: number): string[] => ['--https', `127.0.0.1:${p},srv.crt,srv.key,HIGH,!ca.crt`, '--https-export-cert', '--wsgi-file', 'env_app.py', '--master'];
    uwsgi = startProcess('uwsgi', ['--plugin', 'python3,http', ...common(uPort)], { env: cleanEnv(), cwd: dir });
    await uwsgi.waitFor(/spawned uWSGI http 1/);
    await uwsgi.waitFor(/spawned uWSGI worker 1/);
    tsgi = await startTsgi(common(tPort), { env: cleanEnv(), cwd: dir });
  });

  after(async () => {
    await Promise.all([uwsgi && stopProcess(uwsgi, 'SIGINT'), tsgi && stopProcess(tsgi)]);
  });

  test('the same keys and values, but for what only one of them has', async () => {
    const opts = { cert: readFileSync(join(dir, 'cli.crt')), key: readFileSync(join(dir, 'cli.key')), method: 'POST', body: 'a=1', headers: { 'Content-Type': 'application/x-www-form-urlencoded', 'X-Thing': 'v' } };
    const u = JSON.parse((await request(`https://127.0.0.1:${uPort}/p/q?z=2`, opts)).body) as Record<string, string>;
    const t = JSON.parse((await request(`https://127.0.0.1:${tPort}/p/q?z=2`, opts)).body) as Record<string, string>;
    // uWSGI's own keys (its router's name, its module's node and version), the Connection header uWSGI passes
    // on (tsgi's router keeps hop-by-hop headers from the app) and tsgi's REQUEST_SCHEME (nginx's uwsgi_params
    // send it) are the documented differences of the router in general, not of https.
    const onlyUwsgi = new Set(['UWSGI_ROUTER', 'uwsgi.node', 'uwsgi.version', 'HTTP_CONNECTION']);
    const onlyTsgi = new Set(['REQUEST_SCHEME']);
    assert.deepEqual(Object.keys(u).filter((k) => !onlyUwsgi.has(k)).sort(), Object.keys(t).filter((k) => !onlyTsgi.has(k)).sort());
    // Ports differ (two servers), SERVER_NAME is uWSGI's hostname and tsgi's Host, the wsgi.* objects are reprs.
    const differ = new Set(['REMOTE_PORT', 'SERVER_PORT', 'HTTP_HOST', 'SERVER_NAME', 'wsgi.errors', 'wsgi.input', 'wsgi.file_wrapper', ...onlyUwsgi]);
    for (const k of Object.keys(u)) if (!differ.has(k)) assert.equal(t[k], u[k], k);
    assert.equal(u.HTTPS, 'on');
    assert.equal(u['wsgi.url_scheme'], 'https');
    assert.ok(u.HTTPS_CC?.startsWith('-----BEGIN CERTIFICATE-----'), 'uWSGI exported the certificate (the comparison is not vacuous)');
  });
});

describe('a Flask app over https', { skip: haveOpenssl ? false : 'openssl is not installed' }, () => {
  test('POST a form: Flask sees https', async () => {
    const dir = tempDir();
    makeCerts(dir);
    writeFileSync(join(dir, 'flask_app.py'), FLASK_APP);
    const port = await freePort();
    const tsgi = await startTsgi(['--https', `127.0.0.1:${port},srv.crt,srv.key`, '--module', 'flask_app:app', '--master'], { env: activatedEnv(sharedVenv()), cwd: dir });
    try {
      const r = await request(`https://127.0.0.1:${port}/form`, { method: 'POST', body: 'name=ada', headers: { 'Content-Type': 'application/x-www-form-urlencoded', Host: 'example.test' } });
      assert.equal(r.status, 200);
      assert.deepEqual(JSON.parse(r.body), { scheme: 'https', name: 'ada', url: 'https://example.test/form' });
    } finally {
      await stopProcess(tsgi);
    }
  });
});

describe('http-to: the router in front of other instances', { skip: haveUwsgi ? false : 'uwsgi with its python3 and http plugins is not installed' }, () => {
  let dir: string;
  let backendU: RunningProcess;
  let backendT: RunningProcess;
  let front: RunningProcess;
  let frontPort: number;

  before(async () => {
    dir = tempDir();
    writeFileSync(join(dir, 'who.py'), WHO_APP);
    if (haveOpenssl) makeCerts(dir);
    backendU = startProcess('uwsgi', ['--plugin', 'python3', '--socket', join(dir, 'u.sock'), '--wsgi-file', 'who.py', '--master'], { env: cleanEnv({ WHO: 'uwsgi' }), cwd: dir });
    await backendU.waitFor(/spawned uWSGI worker 1/);
    backendT = await startTsgi(['--socket', join(dir, 't.sock'), '--wsgi-file', 'who.py'], { env: cleanEnv({ WHO: 'tsgi' }), cwd: dir });
    frontPort = await freePort();
    // No app: the router alone (uWSGI's no-workers mode), a dead address between the two live ones.
    front = startProcess(tsgiBin, ['--http', `127.0.0.1:${frontPort}`, '--http-to', join(dir, 'u.sock'), '--http-to', join(dir, 'dead.sock'), '--http-to', join(dir, 't.sock')], { env: cleanEnv(), cwd: dir });
    await front.waitFor(/ready: 0 worker\(s\) serving, router listening/);
  });

  after(async () => {
    await Promise.all([backendU && stopProcess(backendU, 'SIGINT'), backendT && stopProcess(backendT), front && stopProcess(front)]);
  });

  test('round robin over a real uWSGI and a real tsgi; the dead address is skipped', async () => {
    const who: string[] = [];
    for (let i = 0; i < 6; i++) {
      const r = await request(`http://127.0.0.1:${frontPort}/r${i}`, { method: 'POST', body: `b${i}` });
      assert.equal(r.status, 200);
      assert.equal(r.body, `${r.headers['x-who']} POST /r${i} http None b${i}`);
      who.push(String(r.headers['x-who']));
    }
    // 0 → uwsgi, 1 → dead → tsgi, 2 → tsgi, 3 → uwsgi, ...
    assert.deepEqual(who, ['uwsgi', 'tsgi', 'tsgi', 'uwsgi', 'tsgi', 'tsgi']);
    assert.match(front.output(), /http-to .*dead\.sock: ENOENT; the request goes to the next address/);
  });

  test('keep-alive with the client, a plain uwsgi connection per request to the backends', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const a = await request(`http://127.0.0.1:${frontPort}/k1`, { agent });
      const b = await request(`http://127.0.0.1:${frontPort}/k2`, { agent });
      assert.equal(a.status, 200);
      assert.equal(b.status, 200);
      assert.equal(b.reused, true);
    } finally {
      agent.destroy();
    }
  });

  test('a reload of the router alone completes (no worker to wait for) and it goes on serving', async () => {
    front.kill('SIGHUP');
    await front.waitFor(/graceful reload done: generation 2 serving/);
    assert.equal((await request(`http://127.0.0.1:${frontPort}/after-reload`)).status, 200);
  });

  test("uWSGI's own router, for comparison, drops the request that lands on a dead address (tsgi skips it)", async () => {
    const port = await freePort();
    const u = startProcess('uwsgi', ['--plugin', 'http', '--http', `127.0.0.1:${port}`, '--http-to', join(dir, 'u.sock'), '--http-to', join(dir, 'dead.sock'), '--master'], { env: cleanEnv(), cwd: dir });
    try {
      await u.waitFor(/spawned uWSGI http 1/);
      assert.equal((await request(`http://127.0.0.1:${port}/one`)).status, 200);
      await assert.rejects(request(`http://127.0.0.1:${port}/two`), /socket hang up|ECONNRESET/);
    } finally {
      await stopProcess(u, 'SIGINT');
    }
  });

  test('every address down: 502 and a log line', async () => {
    const port = await freePort();
    const p = startProcess(tsgiBin, ['--http', `127.0.0.1:${port}`, '--http-to', join(dir, 'none1.sock'), '--http-to', join(dir, 'none2.sock')], { env: cleanEnv(), cwd: dir });
    try {
      await p.waitFor(/router listening/);
      const r = await request(`http://127.0.0.1:${port}/x`);
      assert.equal(r.status, 502);
      await p.waitFor(/http-to: no backend took the request .*none1\.sock.*none2\.sock.*; answered 502/);
    } finally {
      await stopProcess(p);
    }
  });

  test('https in front: the backends see wsgi.url_scheme https', { skip: haveOpenssl ? false : 'openssl is not installed' }, async () => {
    const port = await freePort();
    const p = startProcess(tsgiBin, ['--https', `127.0.0.1:${port},srv.crt,srv.key`, '--http-to', join(dir, 'u.sock')], { env: cleanEnv(), cwd: dir });
    try {
      await p.waitFor(/router listening/);
      const r = await request(`https://127.0.0.1:${port}/s`);
      assert.equal(r.body, 'uwsgi GET /s https on ');
    } finally {
      await stopProcess(p);
    }
  });

  test('a backend answers as it answers uWSGI\'s own router in front of it', async () => {
    const port = await freePort();
    const u = startProcess('uwsgi', ['--plugin', 'http', '--http', `127.0.0.1:${port}`, '--http-to', join(dir, 'u.sock'), '--master'], { env: cleanEnv(), cwd: dir });
    try {
      await u.waitFor(/spawned uWSGI http 1/);
      const viaUwsgi = await request(`http://127.0.0.1:${port}/same?q=1`, { method: 'POST', body: 'xyz' });
      // Two requests on tsgi's front: one reaches uwsgi (round robin), as the one above did.
      let viaTsgi: Reply;
      do viaTsgi = await request(`http://127.0.0.1:${frontPort}/same?q=1`, { method: 'POST', body: 'xyz' });
      while (viaTsgi.headers['x-who'] !== 'uwsgi');
      assert.equal(viaTsgi.status, viaUwsgi.status);
      assert.equal(viaTsgi.body, viaUwsgi.body);
      assert.equal(viaTsgi.headers['content-type'], viaUwsgi.headers['content-type']);
    } finally {
      await stopProcess(u, 'SIGINT');
    }
  });
});

describe('http-to-https, compared with the real uWSGI', { skip: haveUwsgi ? false : 'uwsgi with its http plugin is not installed' }, () => {
  test('a 301 to the same URI over https, on the host without its port', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'who.py'), WHO_APP);
    const [uPort, tPort] = [await freePort(), await freePort()];
    const u = startProcess('uwsgi', ['--plugin', 'python3,http', '--http-to-https', `127.0.0.1:${uPort}`, '--wsgi-file', 'who.py', '--master'], { env: cleanEnv({ WHO: 'x' }), cwd: dir });
    const t = await startTsgi(['--http-to-https', `127.0.0.1:${tPort}`, '--wsgi-file', 'who.py'], { env: cleanEnv({ WHO: 'x' }), cwd: dir });
    try {
      await u.waitFor(/spawned uWSGI http 1/);
      for (const headers of [{ Host: 'example.com:8080' }, { Host: 'example.com' }, {}]) {
        const [a, b] = [await request(`http://127.0.0.1:${uPort}/a/b?x=1`, { headers }), await request(`http://127.0.0.1:${tPort}/a/b?x=1`, { headers })];
        assert.equal(a.status, 301);
        assert.equal(b.status, a.status, JSON.stringify(headers));
        // Without a Host header node sends 127.0.0.1:PORT, so the two differ by nothing but the port, which goes.
        assert.equal(b.headers.location, a.headers.location, JSON.stringify(headers));
      }
    } finally {
      await Promise.all([stopProcess(u, 'SIGINT'), stopProcess(t)]);
    }
  });
});

describe('bad https values stop tsgi with one line', { skip: haveOpenssl ? false : 'openssl is not installed' }, () => {
  let dir: string;
  before(() => {
    dir = tempDir();
    makeCerts(dir);
    writeFileSync(join(dir, 'app.py'), WHO_APP);
    writeFileSync(join(dir, 'app.mjs'), 'export default { fetch() { return new Response("x"); } };\n');
  });
  const run = (ini: string): { status: number | null; stderr: string; file: string } => {
    const file = join(dir, `t${Math.random().toString(36).slice(2)}.ini`);
    writeFileSync(file, `[uwsgi]\n${ini}\n`);
    const r = spawnSync(tsgiBin, ['--ini', file], { encoding: 'utf8', env: cleanEnv({ WHO: 'x' }), cwd: dir, timeout: 30_000 });
    return { status: r.status, stderr: r.stderr, file };
  };
  const expectLine = (ini: string, re: RegExp, line = 2): void => {
    const r = run(ini);
    assert.equal(r.status, 1, r.stderr);
    const lines = r.stderr.trim().split('\n');
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0]!, re);
    assert.ok(lines[0]!.includes(`${r.file}:${line}`), `names file:line: ${lines[0]}`);
  };

  test('a missing certificate, a missing key, a key of another certificate, a bad cipher list, a missing CA', () => {
    expectLine('https = 127.0.0.1:0,nope.crt,srv.key\nwsgi-file = app.py', /option 'https': certificate nope\.crt: cannot read \(no such file\)/);
    expectLine('https = 127.0.0.1:0,srv.crt,nope.key\nwsgi-file = app.py', /option 'https': key nope\.key: cannot read \(no such file\)/);
    expectLine('https = 127.0.0.1:0,srv.crt,cli.key\nwsgi-file = app.py', /option 'https': key cli\.key does not match certificate srv\.crt/);
    expectLine('https = 127.0.0.1:0,srv.key,srv.key\nwsgi-file = app.py', /option 'https': certificate srv\.key is not a PEM certificate/);
    expectLine('https-socket = 127.0.0.1:0,srv.crt,srv.key,NOT-A-CIPHER\nwsgi-file = app.py', /option 'https-socket': cipher list 'NOT-A-CIPHER' is not one OpenSSL knows/);
    expectLine('https = 127.0.0.1:0,srv.crt,srv.key,,!nope.crt\nwsgi-file = app.py', /option 'https': client CA nope\.crt: cannot read/);
    expectLine('https = 127.0.0.1:0,srv.crt\nwsgi-file = app.py', /option 'https': .*expected ADDR,CERT,KEY/);
    expectLine('https = =0,srv.crt,srv.key\nwsgi-file = app.py', /option 'https': .*shared-socket/);
  });

  test('http-processes other than 1, http-to without a listener, http-to for a Node app', () => {
    expectLine('http = 127.0.0.1:0\nhttp-processes = 8\nwsgi-file = app.py', /option 'http-processes': 8: tsgi runs one HTTP router process/, 3);
    expectLine('socket = 127.0.0.1:0\nhttp-to = /tmp/x.sock', /option 'http-to': forwards the requests of the HTTP router/, 3);
    expectLine('http = 127.0.0.1:0\nhttp-to = /tmp/x.sock\nwsgi-file = app.mjs', /option 'http-to': is done by tsgi's HTTP router, which runs for Python apps/, 3);
    expectLine('https = 127.0.0.1:0,nope.crt,srv.key\nwsgi-file = app.mjs', /option 'https': certificate nope\.crt: cannot read \(no such file\)/);
  });

  test('http-processes = 1 (and http-workers) is accepted', async () => {
    const port = await freePort();
    const t = await startTsgi(['--http', `127.0.0.1:${port}`, '--http-workers', '1', '--wsgi-file', 'app.py'], { env: cleanEnv({ WHO: 'x' }), cwd: dir });
    try {
      assert.equal((await request(`http://127.0.0.1:${port}/`)).status, 200);
    } finally {
      await stopProcess(t);
    }
  });

  test('the key is read by the master before it drops privileges (a key only root can read)', { skip: process.getuid?.() === 0 ? false : 'needs root' }, async () => {
    const key = join(dir, 'root-only.key');
    writeFileSync(key, readFileSync(join(dir, 'srv.key')));
    chmodSync(key, 0o600);
    const port = await freePort();
    const t = await startTsgi(['--https', `127.0.0.1:${port},srv.crt,${key}`, '--uid', 'nobody', '--gid', 'nogroup', '--wsgi-file', 'app.py'], { env: cleanEnv({ WHO: 'x' }), cwd: dir });
    try {
      const r = await request(`https://127.0.0.1:${port}/`);
      assert.equal(r.status, 200);
    } finally {
      await stopProcess(t);
    }
  });
});

describe('ssl-verify-depth, compared with the real uWSGI', { skip: !haveOpenssl ? 'openssl is not installed' : !haveUwsgi ? 'uwsgi with its python3 and http plugins is not installed' : false }, () => {
  test('a client chain with one or two intermediate CAs: served or refused as uWSGI does, at the default depth (1) and at 2', async () => {
    const dir = tempDir();
    makeCerts(dir);
    writeFileSync(join(dir, 'who.py'), WHO_APP);
    writeFileSync(join(dir, 'ext.cnf'), '[v3_ca]\nbasicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n');
    const ca = (name: string, issuer: string, serial: string): void => {
      openssl(dir, 'req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`);
      openssl(dir, 'x509', '-req', '-in', `${name}.csr`, '-CA', `${issuer}.crt`, '-CAkey', `${issuer}.key`, '-set_serial', serial, '-out', `${name}.crt`, '-days', '2', '-extfile', 'ext.cnf', '-extensions', 'v3_ca');
    };
    const leaf = (name: string, issuer: string, serial: string): void => {
      openssl(dir, 'req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`);
      openssl(dir, 'x509', '-req', '-in', `${name}.csr`, '-CA', `${issuer}.crt`, '-CAkey', `${issuer}.key`, '-set_serial', serial, '-out', `${name}.crt`, '-days', '2');
    };
    ca('int1', 'ca', '11');
    ca('int2', 'int1', '12');
    leaf('leaf1', 'int1', '13');
    leaf('leaf2', 'int2', '14');
    const chain = (...names: string[]): Buffer => Buffer.concat(names.map((n) => readFileSync(join(dir, `${n}.crt`))));
    const clients = [
      { cert: chain('leaf1', 'int1'), key: readFileSync(join(dir, 'leaf1.key')) },
      { cert: chain('leaf2', 'int2', 'int1'), key: readFileSync(join(dir, 'leaf2.key')) },
    ];
    const outcomes = async (port: number): Promise<string[]> => {
      const r: string[] = [];
      for (const cl of clients) r.push(await request(`https://127.0.0.1:${port}/`, cl).then((x) => String(x.status), () => 'refused'));
      return r;
    };
    for (const depth of [undefined, 2]) {
      // uWSGI builds its TLS context while it reads `https`: ssl-verify-depth counts only before it.
      const ini = (port: number): string => {
        const file = join(dir, `d${depth ?? 'default'}-${port}.ini`);
        writeFileSync(file, `[uwsgi]\n${depth === undefined ? '' : `ssl-verify-depth = ${depth}\n`}https = 127.0.0.1:${port},srv.crt,srv.key,,!ca.crt\nwsgi-file = who.py\nmaster = true\n`);
        return file;
      };
      const [uPort, tPort] = [await freePort(), await freePort()];
      const u = startProcess('uwsgi', ['--plugin', 'python3,http', '--ini', ini(uPort)], { env: cleanEnv({ WHO: 'x' }), cwd: dir });
      const t = await startTsgi(['--ini', ini(tPort)], { env: cleanEnv({ WHO: 'x' }), cwd: dir });
      try {
        await u.waitFor(/spawned uWSGI http 1/);
        await u.waitFor(/spawned uWSGI worker 1/);
        const expected = await outcomes(uPort);
        assert.deepEqual(expected, depth === undefined ? ['200', 'refused'] : ['200', '200'], 'uWSGI (the expectation is not vacuous)');
        assert.deepEqual(await outcomes(tPort), expected, `ssl-verify-depth ${depth ?? 'default'}`);
      } finally {
        await Promise.all([stopProcess(u, 'SIGINT'), stopProcess(t)]);
      }
    }
  });
});

describe('a Node app over https (node:https in its workers)', { skip: haveOpenssl ? false : 'openssl is not installed' }, () => {
  let dir: string;
  let port: number;
  let mtlsPort: number;
  let redirectPort: number;
  let tsgi: RunningProcess;

  before(async () => {
    dir = tempDir();
    makeCerts(dir);
    writeFileSync(join(dir, 'app.mjs'), `export function application(environ, start_response) {
  start_response('200 OK', [['Content-Type', 'application/json']]);
  const o = {};
  for (const k of Object.keys(environ)) if (typeof environ[k] === 'string') o[k] = environ[k];
  return [JSON.stringify(o)];
}
`);
    [port, mtlsPort, redirectPort] = [await freePort(), await freePort(), await freePort()];
    tsgi = await startTsgi([
      '--https', `127.0.0.1:${port},srv.crt,srv.key`,
      '--https', `127.0.0.1:${mtlsPort},srv.crt,srv.key,HIGH,!ca.crt`,
      '--http-to-https', `127.0.0.1:${redirectPort}`,
      '--https-export-cert', '--wsgi-file', 'app.mjs',
    ], { env: cleanEnv(), cwd: dir });
  });

  after(async () => {
    if (tsgi) await stopProcess(tsgi);
  });

  test('hello over https with keep-alive: the environ says https', async () => {
    const agent = new https.Agent({ keepAlive: true, maxSockets: 1, rejectUnauthorized: false });
    try {
      const a = await request(`https://127.0.0.1:${port}/a`, { agent });
      const b = await request(`https://127.0.0.1:${port}/b`, { agent, method: 'POST', body: 'xyz' });
      const env = JSON.parse(a.body) as Record<string, string>;
      assert.equal(env['wsgi.url_scheme'], 'https');
      assert.equal(env.HTTPS, 'on');
      assert.equal(b.status, 200);
      assert.equal(b.reused, true);
    } finally {
      agent.destroy();
    }
  });

  test('!CA: no certificate refused, a certificate of the CA served with HTTPS_DN and HTTPS_CC', async () => {
    await assert.rejects(request(`https://127.0.0.1:${mtlsPort}/`));
    const r = await request(`https://127.0.0.1:${mtlsPort}/`, { cert: readFileSync(join(dir, 'cli.crt')), key: readFileSync(join(dir, 'cli.key')) });
    // The app's JSON is a JS string, sent as UTF-8 (the Python app's json.dumps escapes to ASCII).
    const env = JSON.parse(Buffer.from(r.body, 'latin1').toString('utf8')) as Record<string, string>;
    const x509 = new X509Certificate(readFileSync(join(dir, 'cli.crt')));
    assert.equal(env.HTTPS_DN, '/O=Example/CN=client1');
    assert.equal(env.HTTPS_CC, x509.toString());
    assert.equal(env.HTTPS_CLIENT_CERTIFICATE, x509.raw.toString('latin1'));
  });

  test('http-to-https: a 301 to https', async () => {
    const r = await request(`http://127.0.0.1:${redirectPort}/p?q=1`, { headers: { Host: 'example.com:8080' } });
    assert.equal(r.status, 301);
    assert.equal(r.headers.location, 'https://example.com/p?q=1');
  });
});

describe('TLS sessions', { skip: haveOpenssl ? false : 'openssl is not installed' }, () => {
  /** Two connections, the second offering the first one's session (ticket) after `waitMs`: was it resumed? */
  async function resumed(port: number, waitMs: number): Promise<boolean> {
    const once = (session?: Buffer): Promise<{ reused: boolean; session: Buffer | undefined }> => new Promise((resolve, reject) => {
      const s = tls.connect({ port, host: '127.0.0.1', rejectUnauthorized: false, session }, () => {
        s.write('GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
      });
      let got: Buffer | undefined;
      s.on('session', (x: Buffer) => {
        got = x;
      });
      s.on('data', () => undefined);
      s.on('end', () => resolve({ reused: s.isSessionReused(), session: got }));
      s.on('error', reject);
    });
    const first = await once();
    assert.ok(first.session, 'the server gave a session to resume');
    await new Promise((r) => setTimeout(r, waitMs));
    return (await once(first.session)).reused;
  }

  test('sessions resume; ssl-sessions-timeout ends them (ssl-sessions-use-cache and https-session-context are accepted)', async () => {
    const dir = tempDir();
    makeCerts(dir);
    writeFileSync(join(dir, 'who.py'), WHO_APP);
    const [p1, p2] = [await freePort(), await freePort()];
    const short = await startTsgi(['--https', `127.0.0.1:${p1},srv.crt,srv.key`, '--ssl-sessions-timeout', '1', '--wsgi-file', 'who.py'], { env: cleanEnv({ WHO: 'x' }), cwd: dir });
    const usual = await startTsgi(['--https', `127.0.0.1:${p2},srv.crt,srv.key`, '--ssl-sessions-use-cache', '--https-session-context', 'foobar', '--wsgi-file', 'who.py'], { env: cleanEnv({ WHO: 'x' }), cwd: dir });
    try {
      assert.equal(await resumed(p1, 0), true, 'resumed at once');
      // A 1 s lifetime, 2.5 s later: gone. The default (300 s): still there.
      assert.equal(await resumed(p1, 2500), false, 'ssl-sessions-timeout 1: expired');
      assert.equal(await resumed(p2, 2500), true, 'default timeout: resumed');
    } finally {
      await Promise.all([stopProcess(short), stopProcess(usual)]);
    }
  });
});
