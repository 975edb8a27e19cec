/** Sockets bound by the master: forms, several at once, ownership, backlog, and the errors users hit. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { repoRoot, tsgiBin } from '../helpers/paths.js';
import { activatedEnv, freePort, sharedVenv, startProcess, startTsgi, stopProcess, tempDir } from '../helpers/procs.js';
import { getVars, uwsgiRequest } from '../helpers/uwsgi-client.js';

const APP = join(repoRoot, 'test/fixtures/apps/behaviours.py');
const env = activatedEnv(sharedVenv());

test('several sockets at once: a Unix path, host:port, :port and [::]:port all serve', async () => {
  const dir = tempDir();
  const sock = join(dir, 'a.sock');
  const [p1, p2, p3] = [await freePort(), await freePort(), await freePort()];
  const tsgi = await startTsgi(['-s', sock, '-s', `127.0.0.1:${p1}`, '-s', `:${p2}`, '-s', `[::]:${p3}`, '--wsgi-file', APP, '-p', '2'], { env });
  try {
    for (const addr of [sock, { host: '127.0.0.1', port: p1 }, { host: '127.0.0.1', port: p2 }, { host: '::1', port: p3 }]) {
      const r = await uwsgiRequest(addr, getVars('/multi'));
      assert.equal(r.body.toString(), 'ok /multi', JSON.stringify(addr));
    }
  } finally {
    await stopProcess(tsgi);
  }
});

test('bare chmod-socket makes the socket 666; pidfile holds the master pid; vacuum removes both at exit', async () => {
  const dir = tempDir();
  const sock = join(dir, 'v.sock');
  const pid = join(dir, 'tsgi.pid');
  const tsgi = await startTsgi(['-s', sock, '--chmod-socket', '--pidfile', pid, '--vacuum', '--wsgi-file', APP], { env });
  assert.equal(statSync(sock).mode & 0o777, 0o666);
  assert.equal(readFileSync(pid, 'utf8').trim(), String(tsgi.pid));
  assert.equal((await stopProcess(tsgi)).code, 0);
  assert.equal(existsSync(sock), false, 'socket removed');
  assert.equal(existsSync(pid), false, 'pidfile removed');
});

test('without vacuum the socket file stays, and the next start replaces the stale file', async () => {
  const dir = tempDir();
  const sock = join(dir, 's.sock');
  const first = await startTsgi(['-s', sock, '--wsgi-file', APP], { env });
  await stopProcess(first);
  assert.equal(existsSync(sock), true, 'no vacuum: the socket file is left');
  const second = await startTsgi(['-s', sock, '--wsgi-file', APP], { env });
  try {
    assert.equal((await uwsgiRequest(sock, getVars('/again'))).body.toString(), 'ok /again');
  } finally {
    await stopProcess(second);
  }
});

test('listen sets the backlog of the socket', async () => {
  const port = await freePort();
  const tsgi = await startTsgi(['-s', `127.0.0.1:${port}`, '--listen', '37', '--wsgi-file', APP], { env });
  try {
    // For a listening TCP socket, ss shows the backlog in the Send-Q column.
    const ss = spawnSync('ss', ['-ltnH', `sport = :${port}`], { encoding: 'utf8' });
    assert.equal(ss.status, 0, ss.stderr);
    assert.match(ss.stdout, /^LISTEN\s+\d+\s+37\s/m);
  } finally {
    await stopProcess(tsgi);
  }
});

function expectStartError(args: string[], message: RegExp, runEnv = env): void {
  const r = spawnSync(tsgiBin, args, { encoding: 'utf8', env: runEnv });
  assert.equal(r.status, 1, r.stderr);
  const lines = r.stderr.trim().split('\n');
  assert.equal(lines.length, 1, `one line, got:\n${r.stderr}`);
  assert.match(lines[0]!, message);
}

test('a TCP address in use is one clear line and exit 1', async () => {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  try {
    expectStartError(['-s', `127.0.0.1:${port}`, '--wsgi-file', APP],
      new RegExp(`^tsgi: cannot bind socket 127\\.0\\.0\\.1:${port} \\(command line \\(argument 1\\)\\): address already in use`));
  } finally {
    server.close();
  }
});

test('a Unix socket another server is listening on is not stolen', async () => {
  const dir = tempDir();
  const sock = join(dir, 'busy.sock');
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(sock, r));
  try {
    expectStartError(['-s', sock, '--wsgi-file', APP], /address already in use \(a server is listening on this socket file\)$/);
  } finally {
    server.close();
  }
});

test('a socket in a missing directory is one clear line and exit 1', () => {
  expectStartError(['-s', '/tmp/tsgi-no-such-dir/app.sock', '--wsgi-file', APP],
    /^tsgi: cannot bind socket \/tmp\/tsgi-no-such-dir\/app\.sock \(command line \(argument 1\)\): directory \/tmp\/tsgi-no-such-dir does not exist/);
});

test('permission denied is one clear line and exit 1', { skip: process.getuid?.() === 0 ? false : 'needs root to run tsgi as an unprivileged user' }, () => {
  // As nobody: no right to create a socket in a root-only directory, nor to bind a privileged port.
  const dir = tempDir();
  const asNobody = (args: string[]): ReturnType<typeof spawnSync> =>
    spawnSync('runuser', ['-u', 'nobody', '--', process.execPath, tsgiBin, ...args], { encoding: 'utf8', env: { ...env, HOME: '/' } });
  const locked = join(dir, 'locked');
  spawnSync('mkdir', ['-m', '700', locked]);
  const r1 = asNobody(['-s', join(locked, 'x.sock'), '--wsgi-file', APP]);
  assert.equal(r1.status, 1, String(r1.stderr));
  assert.match(String(r1.stderr), /cannot bind socket .*locked\/x\.sock .*: (permission denied|directory .* does not exist)/);
  const r2 = asNobody(['-s', '127.0.0.1:80', '--wsgi-file', APP]);
  assert.equal(r2.status, 1, String(r2.stderr));
  assert.equal(String(r2.stderr), 'tsgi: cannot bind socket 127.0.0.1:80 (command line (argument 1)): permission denied\n');
});

test('uid/gid that do not exist are one clear line and exit 1', () => {
  const dir = tempDir();
  expectStartError(['-s', join(dir, 'u.sock'), '--uid', 'no-such-user-here', '--wsgi-file', APP], /^tsgi: uid: no such user 'no-such-user-here'$/);
  expectStartError(['-s', join(dir, 'g.sock'), '--chown-socket', 'root:no-such-group', '--wsgi-file', APP], /chown-socket: no such group 'no-such-group'$/);
});

test('no socket or no app: a clear line saying what to set', () => {
  expectStartError(['--wsgi-file', APP], /^tsgi: no socket to serve on: set socket = ADDR/);
  expectStartError(['-s', ':0'], /^tsgi: no app to serve: set module = MODULE\[:CALLABLE\], wsgi-file = FILE or mount = \/PATH=APP \(or vhost \/ no-default-app to load apps as the web server names them: UWSGI_SCRIPT, docs\/vhost\.md\)$/);
});

test('logto sends the log to a file; disable-logging keeps request lines out but not errors', async () => {
  const dir = tempDir();
  const sock = join(dir, 'l.sock');
  const logfile = join(dir, 'app.log');
  const tsgi = startProcess(tsgiBin, ['-s', sock, '--logto', logfile, '--wsgi-file', APP], { env });
  for (let i = 0; i < 100 && !(existsSync(logfile) && /ready:/.test(readFileSync(logfile, 'utf8'))); i++) await new Promise((r) => setTimeout(r, 100));
  await uwsgiRequest(sock, getVars('/logged'));
  await uwsgiRequest(sock, getVars('/raise'));
  await stopProcess(tsgi);
  const text = readFileSync(logfile, 'utf8');
  assert.match(text, /\] GET \/logged => generated 10 bytes in \d+ msecs \(HTTP\/1\.1 200\)/);
  assert.match(text, /RuntimeError: boom from the app/);
  assert.doesNotMatch(tsgi.output(), /GET \/logged/, 'nothing on stderr');

  const quiet = await startTsgi(['-s', sock, '--disable-logging', '--wsgi-file', APP], { env });
  await uwsgiRequest(sock, getVars('/quiet'));
  await uwsgiRequest(sock, getVars('/raise'));
  await quiet.waitFor(/RuntimeError: boom from the app/);
  await stopProcess(quiet);
  assert.doesNotMatch(quiet.output(), /GET \/quiet/);
});
