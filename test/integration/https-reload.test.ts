/**
 * Certificates on reload (docs/https.md): a graceful reload (SIGHUP) re-reads the https certificate and key, so
 * a renewed certificate reaches the next clients without a restart, as uWSGI's reload (a re-exec that reads them
 * again) gives it; a certificate that no longer loads keeps the old one with one log line and the server serves
 * on (uWSGI's re-exec dies there instead). A Node app's node:https workers get the new one as they are respawned.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import tls from 'node:tls';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort, startProcess, startTsgi, stopProcess, tempDir, type RunningProcess } from '../helpers/procs.js';

const haveOpenssl = spawnSync('openssl', ['version']).status === 0;
const haveUwsgi = spawnSync('uwsgi', ['--plugin', 'python3,http', '--version']).status === 0;

const APP = "def application(environ, start_response):\n    start_response('200 OK', [('Content-Type', 'text/plain')])\n    return [b'hi']\n";
const NODE_APP = "export default { fetch: () => new Response('hi') };\n";

function cleanEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, PYTHONHOME: '' };
  for (const k of Object.keys(env)) if (k.startsWith('UWSGI_') || k.startsWith('TSGI_')) delete env[k];
  return env;
}

function certificate(dir: string, cn: string): void {
  const r = spawnSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'srv.key', '-out', 'srv.crt', '-days', '2', '-subj', `/CN=${cn}`], { cwd: dir });
  assert.equal(r.status, 0, r.stderr.toString());
}

/** The CN of the certificate the server presents, and the body of a GET / on that connection. */
function peer(port: number): Promise<{ cn: string; body: string }> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false }, () => {
      const cn = String(s.getPeerCertificate().subject.CN);
      s.write('GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
      let text = '';
      s.on('data', (d: Buffer) => (text += d.toString()));
      s.on('end', () => resolve({ cn, body: text.slice(text.indexOf('\r\n\r\n') + 4) }));
    });
    s.on('error', reject);
  });
}

async function renewAndBreak(p: RunningProcess, port: number, dir: string, done: RegExp): Promise<void> {
  assert.equal((await peer(port)).cn, 'one');
  certificate(dir, 'two');
  p.kill('SIGHUP');
  await p.waitFor(done);
  await p.waitFor(/https .*: certificate reloaded from .*srv\.crt/);
  // Node workers of the old generation may still take a connection or two while they stop.
  let seen = await peer(port);
  for (const end = Date.now() + 15_000; seen.cn !== 'two' && Date.now() < end; seen = await peer(port)) await new Promise((r) => setTimeout(r, 200));
  assert.deepEqual(seen, { cn: 'two', body: 'hi' });
  // A broken certificate on the next reload: the old one stays, one line, the server serves on.
  writeFileSync(join(dir, 'srv.crt'), 'not a certificate\n');
  const before = p.output().split(done).length;
  p.kill('SIGHUP');
  await p.waitFor(/https .*: certificate not reloaded, the old one stays: certificate .*srv\.crt is not a PEM certificate/);
  const deadline = Date.now() + 30_000;
  while (p.output().split(done).length === before && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  assert.deepEqual(await peer(port), { cn: 'two', body: 'hi' });
}

test('a reload re-reads the https certificate; a broken one keeps the old (Python app, the router)', { skip: !haveOpenssl && 'openssl is not installed' }, async () => {
  const dir = tempDir();
  writeFileSync(join(dir, 'app.py'), APP);
  certificate(dir, 'one');
  const port = await freePort();
  const p = await startTsgi(['--https', `127.0.0.1:${port},srv.crt,srv.key`, '--wsgi-file', 'app.py', '--master'], { env: cleanEnv(), cwd: dir });
  try {
    await renewAndBreak(p, port, dir, /graceful reload done/);
  } finally {
    await stopProcess(p);
  }
});

test('a reload re-reads the https certificate for a Node app (its node:https workers)', { skip: !haveOpenssl && 'openssl is not installed' }, async () => {
  const dir = tempDir();
  writeFileSync(join(dir, 'app.mjs'), NODE_APP);
  certificate(dir, 'one');
  const port = await freePort();
  const p = await startTsgi(['--https', `127.0.0.1:${port},srv.crt,srv.key`, '--wsgi-file', 'app.mjs', '--master'], { env: cleanEnv(), cwd: dir });
  try {
    await renewAndBreak(p, port, dir, /graceful reload done/);
  } finally {
    await stopProcess(p);
  }
});

test("the real uWSGI's reload also serves the renewed certificate", { skip: (!haveOpenssl && 'openssl is not installed') || (!haveUwsgi && 'uwsgi with its python3 and http plugins is not installed') }, async () => {
  const dir = tempDir();
  writeFileSync(join(dir, 'app.py'), APP);
  certificate(dir, 'one');
  const port = await freePort();
  const u = startProcess('uwsgi', ['--plugin', 'python3,http', '--https', `127.0.0.1:${port},srv.crt,srv.key`, '--wsgi-file', 'app.py', '--master'], { env: cleanEnv(), cwd: dir });
  try {
    await u.waitFor(/spawned uWSGI http 1/);
    assert.equal((await peer(port)).cn, 'one');
    certificate(dir, 'two');
    u.kill('SIGHUP');
    await u.waitFor(/binary reloading uWSGI/);
    const deadline = Date.now() + 30_000;
    while (u.output().split(/spawned uWSGI http 1/).length < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    assert.equal((await peer(port)).cn, 'two');
  } finally {
    await stopProcess(u, 'SIGINT');
  }
});
