/**
 * uWSGI's pluggable logging: logger (file, stdio, syslog, socket), req-logger, log-encoder / log-req-encoder,
 * log-route, log-master, and log alarms (alarm cmd:/log:, alarm-log, not-alarm-log, alarm-freq). Where the
 * output is deterministic the same options run under the real uWSGI in the same test and its bytes are the
 * expectation.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createSocket } from 'node:dgram';
import net from 'node:net';
import { existsSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { tsgiBin } from '../helpers/paths.js';
import { cleanEnv, NODE_APPS } from '../helpers/node-apps.js';
import {
  activatedEnv, freePort, httpRequest, SYSTEM_PYTHON, sharedVenv, startProcess, startTsgi, stopProcess, tempDir, workerPids, writeFiles,
  type RunningProcess,
} from '../helpers/procs.js';

const PLUGINS = 'python3,logfile,logsocket,syslog';
const haveUwsgi = spawnSync('uwsgi', ['--plugin', PLUGINS, '--version']).status === 0;
const NO_UWSGI = 'uwsgi with its python3, logfile, logsocket and syslog plugins is not installed';

const APP = `import sys
def application(env, sr):
    path = env['PATH_INFO']
    if path == '/sleep':
        import time
        time.sleep(3)
    if path == '/many':
        for i in range(3000):
            print('MANY line %d' % i)
        sys.stdout.flush()
    if path == '/segv':
        import ctypes
        ctypes.string_at(0)
    if path == '/alarm':
        print('ALARM-MARKER disk full', flush=True)
    elif path == '/other':
        print('ALARM-MARKER other line', flush=True)
    elif path == '/quiet':
        print('ALARM-MARKER but quiet', flush=True)
    else:
        print('MARKER "q" \\\\ tab\\there', flush=True)
        sys.stderr.write('ERRLINE from app\\n')
        sys.stderr.flush()
    sr('200 OK', [('Content-Type', 'text/plain')])
    return [b'hello']
`;

function appDir(): string {
  const dir = tempDir('tsgi-loggers-');
  writeFiles(dir, { 'app.py': APP });
  return dir;
}

const read = (path: string): string => (existsSync(path) ? readFileSync(path, 'utf8') : '');

async function until(what: string, check: () => boolean, timeoutMs = 15_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Runs uWSGI and tsgi with the same logging options (each writing into its own directory), sends `paths`. */
async function both(options: (dir: string) => string[], paths: string[], wait: (dir: string, output: string) => boolean): Promise<{ u: string; t: string; uOut: string; tOut: string }> {
  const u = appDir();
  const t = appDir();
  const [uPort, tPort] = [await freePort(), await freePort()];
  const uwsgi = startProcess('uwsgi', ['--plugin', PLUGINS, '--master', '--http-socket', `127.0.0.1:${uPort}`, '--wsgi-file', join(u, 'app.py'), ...options(u)],
    { env: cleanEnv(), cwd: u });
  const tsgi = startProcess(tsgiBin, ['--http-socket', `127.0.0.1:${tPort}`, '-p', '1', '--wsgi-file', join(t, 'app.py'), ...options(t)],
    { env: activatedEnv(sharedVenv()), cwd: t });
  try {
    await Promise.all([uwsgi.waitFor(/spawned uWSGI worker 1/), tsgi.waitFor(/ready: 1 worker/)]);
    for (const p of paths) {
      assert.equal((await httpRequest(`http://127.0.0.1:${uPort}${p}`)).status, 200);
      assert.equal((await httpRequest(`http://127.0.0.1:${tPort}${p}`)).status, 200);
    }
    await until('both logs', () => wait(u, uwsgi.output()) && wait(t, tsgi.output()));
  } finally {
    await Promise.all([stopProcess(uwsgi, 'SIGINT'), stopProcess(tsgi)]);
  }
  return { u, t, uOut: uwsgi.output(), tOut: tsgi.output() };
}

describe('loggers and encoders, compared with the real uWSGI', { skip: haveUwsgi ? false : NO_UWSGI }, () => {
  test('file loggers, named loggers fed by log-route, req-logger, chained encoders (format, prefix, nl, suffix:NAME, json:NAME, gzip, compress) byte for byte', async () => {
    const { u, t, tOut } = await both((d) => [
      '--logger', `file:${join(d, 'all.log')}`,
      '--logger', 'stdio',
      '--logger', `marks file:${join(d, 'marks.log')}`,
      '--logger', `js file:${join(d, 'json.log')}`,
      '--log-route', 'marks MARKER',
      '--log-route', 'js MARKER',
      '--logger', `gz file:${join(d, 'gz.log')}`,
      '--logger', `cz file:${join(d, 'cz.log')}`,
      '--log-route', 'gz MARKER',
      '--log-route', 'cz MARKER',
      '--req-logger', `file:${join(d, 'req.log')}`,
      '--log-encoder', 'format [FOO ${msg} BAR]',
      '--log-encoder', 'prefix PFX',
      '--log-encoder', 'nl',
      '--log-encoder', 'suffix:marks  ONLY-MARKS',
      '--log-encoder', 'json:js {"m":"${msg}","n":"${msgnl}","x":"${nosuchvar}"}',
      '--log-encoder', 'gzip:gz',
      '--log-encoder', 'prefix:gz i am gzip encoded ',
      '--log-encoder', 'compress:cz',
      '--log-req-encoder', 'json {"msg":"${msg}"}',
      '--log-req-encoder', 'nl',
    ], ['/x'], (d) => read(join(d, 'req.log')) !== '' && read(join(d, 'all.log')).includes('ERRLINE'));
    for (const name of ['marks.log', 'json.log', 'gz.log', 'cz.log']) {
      assert.ok(read(join(u, name)) !== '', `uWSGI wrote ${name}`);
      assert.deepEqual(readFileSync(join(t, name)), readFileSync(join(u, name)), name);
    }
    // gzip's bytes are a gzip member of the encoded line, as uWSGI writes them.
    const gz = readFileSync(join(t, 'gz.log'));
    assert.equal(gz.subarray(0, 19).toString(), 'i am gzip encoded \x1f');
    assert.equal(gunzipSync(gz.subarray(18)).toString(), 'PFX[FOO MARKER "q" \\ tab\there BAR]\n');
    // The unnamed loggers got the app's stderr line, not the routed one, nor the request line (req-logger has it).
    const errLine = (d: string): string[] => read(join(d, 'all.log')).split('\n').filter((l) => l.includes('ERRLINE')).map((l) => `${l}\n`);
    assert.deepEqual(errLine(t), errLine(u));
    assert.deepEqual(errLine(t), ['PFX[FOO ERRLINE from app BAR]\n']);
    for (const d of [u, t]) {
      assert.doesNotMatch(read(join(d, 'all.log')), /MARKER|GET \/x/);
      const req = read(join(d, 'req.log'));
      assert.match(req, /^\{"msg":"\[pid: \d+\|app: 0\|req: 1\/1\] 127\.0\.0\.1 \(\) \{\d+ vars in \d+ bytes\} \[[^\]]+\] GET \/x => generated 5 bytes in \d+ msecs \(HTTP\/1\.1 200\) \d+ headers in \d+ bytes \(1 switches on core 0\)"\}\n$/, req);
    }
    // stdio: the same lines on the process's own output (the master's included, through the same encoders).
    assert.match(tOut, /PFX\[FOO ERRLINE from app BAR\]\n/);
    assert.match(tOut, /PFX\[FOO tsgi: ready: 1 worker/);
  });

  test('log-encoder without a logger applies to the default log (the log master writes it)', async () => {
    const { uOut, tOut } = await both(() => ['--log-encoder', 'format <${msg}>', '--log-encoder', 'nl'], ['/x'], (_d, out) => out.includes('<ERRLINE'));
    const pick = (out: string): string[] => out.split('\n').filter((l) => /ERRLINE|MARKER/.test(l));
    assert.deepEqual(pick(tOut), pick(uOut));
    assert.deepEqual(pick(tOut), ['<MARKER "q" \\ tab\there>', '<ERRLINE from app>']);
  });

  test('alarm cmd: gets the line on its stdin, alarm-freq skips the same line raised again too soon, not-alarm-log', async () => {
    const { u, t } = await both((d) => [
      '--alarm', `a1 cmd:cat >> ${join(d, 'alarm.out')}`,
      '--not-alarm-log', 'a1 quiet',
      '--alarm-log', 'a1 ALARM-MARKER',
      '--alarm-freq', '2',
    ], ['/alarm', '/alarm', '/quiet'], (d) => read(join(d, 'alarm.out')) !== '');
    // Nothing more comes later: the second /alarm was skipped (same line within alarm-freq), /quiet was not-alarm-log'd.
    await new Promise((r) => setTimeout(r, 500));
    for (const d of [u, t]) assert.equal(read(join(d, 'alarm.out')), 'ALARM-MARKER disk full\n', d);
  });
});

test('alarm-freq: the same line raises the alarm again once the period is over; other lines at once', async () => {
  const dir = appDir();
  const port = await freePort();
  const out = join(dir, 'alarm.out');
  const tsgi = await startTsgi(['--http-socket', `127.0.0.1:${port}`, '-p', '1', '--wsgi-file', join(dir, 'app.py'),
    '--alarm', `a1 cmd:cat >> ${out}`, '--alarm-log', 'a1 ALARM-MARKER', '--alarm-freq', '3'], { env: activatedEnv(sharedVenv()) });
  try {
    const get = async (p: string): Promise<void> => assert.equal((await httpRequest(`http://127.0.0.1:${port}${p}`)).status, 200);
    await get('/alarm');
    // Within the period: skipped. (A period of 3 s, not 1: on a loaded machine two requests can be a second apart.)
    await get('/alarm');
    await until('first alarm', () => read(out).split('\n').length === 2);
    await new Promise((r) => setTimeout(r, 3100));
    await get('/alarm');
    await get('/other');
    await until('three alarms', () => read(out).split('\n').length === 4);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(read(out), 'ALARM-MARKER disk full\nALARM-MARKER disk full\nALARM-MARKER other line\n');
    assert.match(tsgi.output(), /alarm 'a1': command \(pid \d+\) done/);
  } finally {
    assert.equal((await stopProcess(tsgi)).code, 0, tsgi.output());
  }
});

test('a failing alarm command, one that cannot run and one that hangs are logged; the master serves on', async () => {
  const dir = appDir();
  const port = await freePort();
  const tsgi = await startTsgi(['--http-socket', `127.0.0.1:${port}`, '-p', '1', '--wsgi-file', join(dir, 'app.py'),
    '--alarm', 'fails cmd:exit 7', '--alarm', 'hangs cmd:sleep 3', '--alarm', 'noprog cmd:/nonexistent/prog',
    '--alarm', 'says log:disk trouble', '--alarm-log', 'fails,hangs,noprog,says ALARM-MARKER'], { env: activatedEnv(sharedVenv()) });
  try {
    assert.equal((await httpRequest(`http://127.0.0.1:${port}/alarm`)).status, 200);
    await tsgi.waitFor(/alarm 'fails': command \(pid \d+\) failed \(exit status 7\)/);
    await tsgi.waitFor(/alarm 'noprog': command \(pid \d+\) failed \(exit status 127\)/);
    // log: writes the message and the line, as uWSGI: DATE - ALARM: MESSAGE LINE
    assert.match(tsgi.output(), /\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4} - ALARM: disk trouble ALARM-MARKER disk full\n/);
    // The hanging command does not hold the master: it still answers, and raising it again waits its turn.
    assert.equal((await httpRequest(`http://127.0.0.1:${port}/other`)).status, 200);
    assert.equal((await httpRequest(`http://127.0.0.1:${port}/x`)).status, 200);
    await tsgi.waitFor(/alarm 'hangs': command \(pid \d+\) done[\s\S]*alarm 'hangs': command \(pid \d+\) done/, 15_000);
  } finally {
    assert.equal((await stopProcess(tsgi)).code, 0, tsgi.output());
  }
});

test('alarm-segfault: a worker that dies of SIGSEGV raises the alarm with the master line about it', async () => {
  const dir = appDir();
  const port = await freePort();
  const out = join(dir, 'segv.out');
  const tsgi = await startTsgi(['--http-socket', `127.0.0.1:${port}`, '-p', '1', '--wsgi-file', join(dir, 'app.py'),
    '--alarm', `crash cmd:cat > ${out}`, '--alarm-segfault', 'crash'], { env: activatedEnv(sharedVenv()) });
  try {
    assert.equal((await httpRequest(`http://127.0.0.1:${port}/x`)).status, 200);
    assert.equal(read(out), '', 'no alarm while nothing crashed');
    assert.equal((await httpRequest(`http://127.0.0.1:${port}/segv`)).status, 502);
    await until('the alarm', () => read(out) !== '');
    assert.match(read(out), /^tsgi: worker 1 \(pid: \d+\) killed by SIGSEGV; respawning[^\n]*\n$/);
  } finally {
    assert.equal((await stopProcess(tsgi)).code, 0, tsgi.output());
  }
});

/** A uwsgi request packet for PATH. */
function uwsgiPacket(path: string): Buffer {
  const kv = (k: string, v: string): Buffer => {
    const b = Buffer.alloc(4 + k.length + v.length);
    b.writeUInt16LE(k.length, 0);
    b.write(k, 2, 'latin1');
    b.writeUInt16LE(v.length, 2 + k.length);
    b.write(v, 4 + k.length, 'latin1');
    return b;
  };
  const body = Buffer.concat([kv('REQUEST_METHOD', 'GET'), kv('PATH_INFO', path), kv('REQUEST_URI', path), kv('SERVER_PROTOCOL', 'HTTP/1.1')]);
  const head = Buffer.from([0, body.length & 0xff, body.length >> 8, 0]);
  return Buffer.concat([head, body]);
}

test('alarm-backlog: a full listen queue is logged in uWSGI\'s words and raises the alarm with uWSGI\'s message', async () => {
  const dir = appDir();
  const port = await freePort();
  const out = join(dir, 'backlog.out');
  const tsgi = await startTsgi(['--socket', `127.0.0.1:${port}`, '-p', '1', '--listen', '5', '--wsgi-file', join(dir, 'app.py'),
    '--alarm', `q cmd:cat > ${out}`, '--alarm-backlog', 'q'], { env: activatedEnv(sharedVenv()) });
  const clients: net.Socket[] = [];
  try {
    // One request holds the only worker for 3 s; the others wait in the kernel's queue until it is full.
    for (let i = 0; i < 12; i++) {
      const c = net.connect(port, '127.0.0.1');
      c.on('error', () => {});
      c.write(uwsgiPacket(i === 0 ? '/sleep' : '/x'));
      clients.push(c);
    }
    await tsgi.waitFor(/tsgi: \*\*\* uWSGI listen queue of socket "127\.0\.0\.1:\d+" \(fd: \d+\) full !!! \(\d+\/5\) \*\*\*\n/, 10_000);
    await until('the alarm', () => read(out) !== '');
    assert.match(read(out), /^listen queue of socket "127\.0\.0\.1:\d+" \(fd: \d+\) full !!! \([56]\/5\)$/);
  } finally {
    for (const c of clients) c.destroy();
    assert.equal((await stopProcess(tsgi)).code, 0, tsgi.output());
  }
});

/** A Unix datagram socket the test listens on (Node cannot bind one: Debian's python3 does). */
async function unixDgramListener(path: string): Promise<RunningProcess> {
  const script = 'import socket,sys\ns=socket.socket(socket.AF_UNIX,socket.SOCK_DGRAM)\ns.bind(sys.argv[1])\nprint("listening",flush=True)\n' +
    'while True:\n    d=s.recv(65536)\n    print(repr(d),flush=True)\n';
  const p = startProcess(SYSTEM_PYTHON, ['-c', script, path]);
  await p.waitFor(/listening/);
  return p;
}

test('syslog (libc syslog() datagrams, as uWSGI sends them) and socket (UDP) loggers; a syslog that goes away does not stop the master', async () => {
  const dir = appDir();
  const port = await freePort();
  const sysPath = join(dir, 'syslog.sock');
  const syslog = await unixDgramListener(sysPath);
  const udp = createSocket('udp4');
  const datagrams: string[] = [];
  udp.on('message', (m) => datagrams.push(m.toString()));
  await new Promise<void>((r) => udp.bind(0, '127.0.0.1', () => r()));
  const udpPort = udp.address().port;
  const tsgi = await startTsgi(['--http-socket', `127.0.0.1:${port}`, '-p', '1', '--wsgi-file', join(dir, 'app.py'),
    '--logger', 'syslog:myident,local3', '--logger', `socket:127.0.0.1:${udpPort}`, '--logger', 'stdio', '--req-logger', 'syslog'],
  { env: { ...activatedEnv(sharedVenv()), TSGI_SYSLOG_SOCKET: sysPath } });
  try {
    assert.equal((await httpRequest(`http://127.0.0.1:${port}/x`)).status, 200);
    // uWSGI 2.0.21 with the same loggers (checked against /dev/log): <158> is local3.info, <30> daemon.info
    // (its default), then libc's "Mmm dd hh:mm:ss IDENT: " and the line with its newline.
    await syslog.waitFor(/MARKER/);
    await syslog.waitFor(/GET \/x/);
    const lines = syslog.output();
    assert.match(lines, /b'<158>\w{3} [ \d]\d \d\d:\d\d:\d\d myident: MARKER "q" \\\\ tab\\there\\n'/, lines);
    assert.match(lines, /b'<158>\w{3} [ \d]\d \d\d:\d\d:\d\d myident: tsgi: ready: 1 worker/, lines);
    assert.match(lines, /b'<30>\w{3} [ \d]\d \d\d:\d\d:\d\d uwsgi: \[pid: \d+\|app: 0\|req: 1\/1\] [^\n]* GET \/x => generated 5 bytes/, lines);
    await until('UDP datagrams', () => datagrams.includes('ERRLINE from app\n'));
    assert.ok(datagrams.includes('MARKER "q" \\ tab\there\n'), datagrams.join(''));
    assert.ok(!datagrams.some((d) => d.includes('GET /x')), 'request lines go to req-logger only');
    // The syslog daemon goes away: one line about it, and the master and workers go on serving.
    await stopProcess(syslog, 'SIGKILL');
    assert.equal((await httpRequest(`http://127.0.0.1:${port}/x`)).status, 200);
    await tsgi.waitFor(/logger 'syslog:myident,local3': cannot send to \S+ \(errno \d+\); its lines are lost until it works again/);
    assert.equal((await httpRequest(`http://127.0.0.1:${port}/x`)).status, 200);
    await until('UDP after syslog left', () => datagrams.filter((d) => d === 'ERRLINE from app\n').length === 3);
  } finally {
    udp.close();
    syslog.kill('SIGKILL');
    assert.equal((await stopProcess(tsgi)).code, 0, tsgi.output());
  }
});

test('req-logger with a Node app and the Python router: request lines go only there, the rest to the loggers', async () => {
  for (const kind of ['node', 'python'] as const) {
    const dir = appDir();
    const port = await freePort();
    const app = kind === 'node' ? ['--wsgi-file', join(NODE_APPS, 'logopts.mjs'), '--app-contract', 'listener'] : ['--wsgi-file', join(dir, 'app.py')];
    // With the Python app, /static is served by the HTTP router (static-map): its request line too goes to req-logger.
    writeFiles(dir, { 'st/f.txt': 'static\n' });
    const tsgi = await startTsgi(['--http-socket', `127.0.0.1:${port}`, '-p', '1', ...app, '--static-map', `/st=${join(dir, 'st')}`,
      '--logger', 'stdio', '--logger', `file:${join(dir, 'all.log')}`, '--req-logger', `file:${join(dir, 'req.log')}`],
    { env: kind === 'node' ? cleanEnv() : activatedEnv(sharedVenv()) });
    try {
      for (const p of ['/x', '/st/f.txt']) assert.equal((await httpRequest(`http://127.0.0.1:${port}${p}`)).status, 200);
      await until('request lines', () => (read(join(dir, 'req.log')).match(/ => generated/g) ?? []).length === 2);
      assert.match(read(join(dir, 'req.log')), /GET \/x => generated 5 bytes/);
      assert.match(read(join(dir, 'req.log')), /GET \/st\/f\.txt => generated 7 bytes/);
      assert.doesNotMatch(read(join(dir, 'all.log')) + tsgi.output(), / => generated/);
      assert.match(read(join(dir, 'all.log')), /tsgi: ready: 1 worker/);
    } finally {
      assert.equal((await stopProcess(tsgi)).code, 0, tsgi.output());
    }
  }
});

test('exec hooks output reaches the loggers; a reload that changes the loggers says they change at the next restart', async () => {
  const dir = appDir();
  const port = await freePort();
  const ini = join(dir, 'app.ini');
  const conf = (extra: string): string => `[uwsgi]\nhttp-socket = 127.0.0.1:${port}\nprocesses = 1\nwsgi-file = ${join(dir, 'app.py')}\n` +
    // 100 KB from a hook the master waits for: more than a pipe holds, so it must not go through the log pipe.
    `exec-as-root = head -c 100000 /dev/zero | tr '\\0' x; echo\n` +
    `exec-pre-app = echo HOOK-OUTPUT; echo HOOK-ERR >&2\nlogger = stdio\nlogger = file:${join(dir, 'all.log')}\n${extra}`;
  writeFileSync(ini, conf(''));
  const tsgi = await startTsgi(['--ini', ini], { env: activatedEnv(sharedVenv()) });
  try {
    assert.match(read(join(dir, 'all.log')), /^HOOK-OUTPUT\nHOOK-ERR\n/m);
    assert.ok(read(join(dir, 'all.log')).includes(`\n${'x'.repeat(100000)}\n`));
    writeFileSync(ini, conf(`logger = file:${join(dir, 'second.log')}\n`));
    tsgi.kill('SIGHUP');
    await tsgi.waitFor(/graceful reload done/);
    assert.match(read(join(dir, 'all.log')), /note: logger, req-logger, log-encoder, log-route and alarm changes take effect at the next restart/);
    assert.equal(existsSync(join(dir, 'second.log')), false);
  } finally {
    assert.equal((await stopProcess(tsgi)).code, 0, tsgi.output());
  }
});

test('a syslog daemon that stops reading does not block the master: lines are dropped and said so', async () => {
  const dir = appDir();
  const port = await freePort();
  const sysPath = join(dir, 'stuck.sock');
  // Bound, never read: its queue fills after a few hundred datagrams.
  const stuck = startProcess(SYSTEM_PYTHON, ['-c', 'import socket,sys,time\ns=socket.socket(socket.AF_UNIX,socket.SOCK_DGRAM)\ns.bind(sys.argv[1])\nprint("listening",flush=True)\ntime.sleep(120)\n', sysPath]);
  await stuck.waitFor(/listening/);
  const tsgi = await startTsgi(['--http-socket', `127.0.0.1:${port}`, '-p', '1', '--wsgi-file', join(dir, 'app.py'), '--logger', 'syslog', '--logger', 'stdio'],
    { env: { ...activatedEnv(sharedVenv()), TSGI_SYSLOG_SOCKET: sysPath } });
  try {
    assert.equal((await httpRequest(`http://127.0.0.1:${port}/many`)).status, 200);
    await tsgi.waitFor(/MANY line 2999\n/);
    await tsgi.waitFor(/logger 'syslog': cannot send to \S+ \(errno 11\); its lines are lost until it works again/);
    assert.equal((await httpRequest(`http://127.0.0.1:${port}/x`)).status, 200);
    await tsgi.waitFor(/ERRLINE from app/);
  } finally {
    stuck.kill('SIGKILL');
    assert.equal((await stopProcess(tsgi)).code, 0, tsgi.output());
  }
});

test('log-master alone: workers write to its pipe, lines still reach the logto file; without it they hold the file itself', async () => {
  for (const master of [false, true]) {
    const dir = appDir();
    const port = await freePort();
    const logto = join(dir, 'app.log');
    const tsgi = startProcess(tsgiBin, ['--http-socket', `127.0.0.1:${port}`, '-p', '1', '--wsgi-file', join(dir, 'app.py'), '--logto', logto,
      ...(master ? ['--log-master'] : [])], { env: activatedEnv(sharedVenv()) });
    try {
      await until('ready', () => read(logto).includes('ready: 1 worker'));
      assert.equal((await httpRequest(`http://127.0.0.1:${port}/x`)).status, 200);
      await until('request line', () => read(logto).includes('GET /x'));
      const worker = workerPids(tsgi.pid)[0]!;
      const fd2 = readlinkSync(`/proc/${worker}/fd/2`);
      // The log master's pipe (a FIFO unlinked at once), else the logto file itself.
      if (master) assert.match(fd2, /\/tsgi-log-\w+\/log \(deleted\)$/);
      else assert.equal(fd2, logto);
      assert.match(read(logto), /MARKER "q"/);
    } finally {
      assert.equal((await stopProcess(tsgi)).code, 0, tsgi.output());
    }
  }
});

test('bad logging options: one line naming the file, line, option and what is wrong; exit 1', () => {
  const dir = appDir();
  const cases: Array<[string, RegExp]> = [
    ['logger = redislog:127.0.0.1:6269', /:3: option 'logger': 'redislog:127\.0\.0\.1:6269': the 'redislog' logger plugin is not implemented in tsgi/],
    ['logger = file:/nonexistent-dir/x.log', /^tsgi: logger file:\/nonexistent-dir\/x\.log: cannot open \/nonexistent-dir\/x\.log \(ENOENT\)$/],
    ['logger = syslog:x,nosuch', /:3: option 'logger': 'syslog:x,nosuch': unknown syslog facility 'nosuch'/],
    ['log-route = nobody ERR', /:3: option 'log-route': no logger is named 'nobody'/],
    ['log-encoder = msgpack map:4|str:message|msg', /:3: option 'log-encoder': the 'msgpack' log encoder is not implemented in tsgi/],
    ['alarm = jabber xmpp:a@b;c;d', /:3: option 'alarm': the 'xmpp' alarm plugin is not implemented in tsgi/],
    ['alarm-log = nope ERR', /:3: option 'alarm-log': no alarm is named 'nope'/],
    ['alarm-segfault = x', /:3: option 'alarm-segfault': no alarm is named 'x'/],
    ['alarm-backlog = x', /:3: option 'alarm-backlog': no alarm is named 'x'/],
    ['alarm-fd = x 1:y', /:3: option 'alarm-fd': is a uWSGI option that tsgi does not implement yet/],
    ['alarm-log = a (unclosed\nalarm = a log:x', /option 'alarm-log': bad regular expression '\(unclosed'/],
  ];
  for (const [line, re] of cases) {
    const ini = join(dir, 'bad.ini');
    writeFileSync(ini, `[uwsgi]\nhttp-socket = 127.0.0.1:1\n${line}\nwsgi-file = ${join(dir, 'app.py')}\n`);
    const r = spawnSync(tsgiBin, ['--ini', ini], { env: activatedEnv(sharedVenv()), encoding: 'utf8', timeout: 20_000 });
    assert.equal(r.status, 1, `${line}: ${r.stderr}`);
    const lines = r.stderr.trim().split('\n');
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0]!, re);
  }
});
