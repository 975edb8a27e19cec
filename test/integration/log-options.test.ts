/**
 * Logging and response options from real uWSGI configs, for a Python app and a Node app: conditional request
 * logging (log-4xx, log-5xx, log-slow, log-big, log-zero) with disable-logging, log-micros, add-header and
 * del-header (app responses and static files, over HTTP and uwsgi), so-keepalive, and bad values.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import net from 'node:net';
import { join } from 'node:path';
import { repoRoot, tsgiBin } from '../helpers/paths.js';
import { cleanEnv, NODE_APPS } from '../helpers/node-apps.js';
import { getVars, uwsgiRequest } from '../helpers/uwsgi-client.js';
import { activatedEnv, freePort, httpRequest, sharedVenv, startTsgi, stopProcess, tempDir, writeFiles } from '../helpers/procs.js';

const KINDS = [
  { kind: 'python', app: join(repoRoot, 'test/fixtures/apps/logopts.py'), extra: [] as string[], env: () => activatedEnv(sharedVenv()) },
  { kind: 'node', app: join(NODE_APPS, 'logopts.mjs'), extra: ['--app-contract', 'listener'], env: cleanEnv },
];

const PATHS = ['/', '/404', '/500', '/slow', '/big', '/zero', '/st/f.txt'];

/** The request lines in a log, as `METHOD PATH` of each. */
function logged(output: string): string[] {
  return [...output.matchAll(/\] GET (\S+) => generated/g)].map((m) => m[1]!);
}

async function run(kind: (typeof KINDS)[number], options: string[]): Promise<{ output: string; port: number }> {
  const dir = tempDir();
  writeFiles(dir, { 'st/f.txt': 'static\n' });
  const port = await freePort();
  const tsgi = await startTsgi(
    ['--http-socket', `127.0.0.1:${port}`, '-p', '1', '--wsgi-file', kind.app, ...kind.extra, '--static-map', `/st=${join(dir, 'st')}`, ...options],
    { env: kind.env() },
  );
  try {
    for (const p of PATHS) assert.ok((await httpRequest(`http://127.0.0.1:${port}${p}`)).status > 0);
  } finally {
    assert.equal((await stopProcess(tsgi)).code, 0, tsgi.output());
  }
  return { output: tsgi.output(), port };
}

for (const kind of KINDS) {
  test(`${kind.kind}: disable-logging with log-4xx and log-5xx logs only those`, async () => {
    const { output } = await run(kind, ['--disable-logging', '--log-4xx', '--log-5xx']);
    assert.deepEqual(logged(output), ['/404', '/500'], output);
  });

  test(`${kind.kind}: log-slow, log-big, log-zero (and static files through the same conditions)`, async () => {
    const { output } = await run(kind, ['--disable-logging', '--log-slow', '200', '--log-big', '5000']);
    assert.deepEqual(logged(output), ['/slow', '/big'], output);
    const zero = await run(kind, ['--disable-logging', '--log-zero', '--log-big', '7']);
    // /zero has no body; the static file has 7 bytes, /big more (log-big is "this size or more").
    assert.deepEqual(logged(zero.output), ['/big', '/zero', '/st/f.txt'], zero.output);
  });

  test(`${kind.kind}: without disable-logging every request is logged; log-micros`, async () => {
    const { output } = await run(kind, ['--log-4xx', '--log-micros']);
    assert.deepEqual(logged(output), PATHS, output);
    assert.match(output, /GET \/slow => generated \d+ bytes in [1-9]\d{5,} micros \(HTTP\/1\.1 200\)/, output);
    assert.doesNotMatch(output, / msecs /, output);
  });
}

for (const kind of KINDS) {
  test(`${kind.kind}: add-header and del-header (rem-header) on app responses and static files, over HTTP and uwsgi`, async () => {
    const dir = tempDir();
    writeFiles(dir, { 'st/f.txt': 'static\n' });
    const sock = join(dir, 'app.sock');
    const port = await freePort();
    const tsgi = await startTsgi(
      ['--http-socket', `127.0.0.1:${port}`, '--socket', sock, '-p', '1', '--wsgi-file', kind.app, ...kind.extra, '--static-map', `/st=${join(dir, 'st')}`,
        '--add-header', 'X-Frame-Options: DENY', '--add-header', 'X-Two:two', '--del-header', 'x-drop', '--rem-header', 'SERVER', '--del-header', 'Last-Modified'],
      { env: kind.env() },
    );
    try {
      for (const path of ['/', '/404', '/zero', '/st/f.txt']) {
        const h = await httpRequest(`http://127.0.0.1:${port}${path}`);
        assert.equal(h.headers['x-frame-options'], 'DENY', `${path} over HTTP`);
        assert.equal(h.headers['x-two'], 'two', `${path} over HTTP`);
        assert.equal(h.headers['x-drop'], undefined, `${path} over HTTP`);
        assert.equal(h.headers['server'], undefined, `${path} over HTTP`);
        assert.equal(h.headers['last-modified'], undefined, `${path} over HTTP`);
        const u = await uwsgiRequest(sock, getVars(path));
        const names = u.headers.map(([k]) => k.toLowerCase());
        assert.ok(u.headers.some(([k, v]) => k === 'X-Frame-Options' && v === 'DENY'), `${path} over uwsgi: ${u.headers.join(' ')}`);
        assert.ok(u.headers.some(([k, v]) => k === 'X-Two' && v === 'two'), `${path} over uwsgi`);
        for (const gone of ['x-drop', 'server', 'last-modified']) assert.ok(!names.includes(gone), `${path} over uwsgi: ${gone}`);
      }
      assert.equal((await httpRequest(`http://127.0.0.1:${port}/st/f.txt`)).body.toString(), 'static\n');
    } finally {
      assert.equal((await stopProcess(tsgi)).code, 0, tsgi.output());
    }
  });
}

for (const kind of KINDS) {
  test(`${kind.kind}: log-date with a strftime format on every line but request lines; logformat-strftime for %(ftime)`, async () => {
    const { output } = await run(kind, ['--log-date=%Y-%m-%d %H:%M', '--max-requests', '3', '--logformat-strftime', '--log-format', '%(uri) <%(ftime)>']);
    const lines = output.split('\n').filter((l) => l !== '');
    const stamp = /^\d{4}-\d\d-\d\d \d\d:\d\d - /;
    for (const l of lines.filter((l) => l.includes('tsgi: '))) assert.match(l, new RegExp(`${stamp.source}tsgi: `), l);
    const recycled = lines.filter((l) => l.includes('recycling after 3 requests'));
    assert.ok(recycled.length >= 1, output);
    for (const l of recycled) assert.match(l, new RegExp(`${stamp.source}\\[pid: \\d+\\|worker \\d+\\] recycling`), l);
    for (const path of ['/', '/404', '/big']) assert.ok(lines.some((l) => new RegExp(`^${path} <\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d>$`).test(l)), `${path}\n${output}`);
  });

  test(`${kind.kind}: a bare log-date is ctime(); without logformat-strftime %(ftime) is %(ltime)`, async () => {
    const { output } = await run(kind, ['--log-date', '--log-format', '%(uri) <%(ftime)>']);
    assert.match(output, /^(Sun|Mon|Tue|Wed|Thu|Fri|Sat) [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \d{4} - tsgi: /m, output);
    assert.match(output, /^\/big <\d\d\/[A-Z][a-z]{2}\/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}>$/m, output);
  });
}

/** The server side of established TCP connections on `port`, and whether each has a keepalive timer (ss -o). */
function serverSides(port: number): boolean[] {
  const out = spawnSync('ss', ['-tnoH', 'state', 'established'], { encoding: 'utf8' }).stdout;
  return out.split('\n').filter((l) => l.trim().split(/\s+/)[2] === `127.0.0.1:${port}`).map((l) => l.includes('timer:(keepalive'));
}

for (const kind of KINDS) {
  for (const on of [true, false]) {
    test(`${kind.kind}: so-keepalive ${on ? 'on' : 'off'}: accepted TCP connections (HTTP and uwsgi sockets) ${on ? 'have' : 'lack'} SO_KEEPALIVE`, async () => {
      const http = await freePort();
      const uwsgi = await freePort();
      const tsgi = await startTsgi(
        ['--http-socket', `127.0.0.1:${http}`, '--socket', `127.0.0.1:${uwsgi}`, '-p', '1', '--wsgi-file', kind.app, ...kind.extra, ...(on ? ['--so-keepalive'] : [])],
        { env: kind.env() },
      );
      const conns: net.Socket[] = [];
      try {
        for (const port of [http, uwsgi]) {
          const c = net.connect(port, '127.0.0.1');
          conns.push(c);
          await new Promise((resolve) => c.once('connect', resolve));
        }
        let seen: boolean[][] = [];
        for (let i = 0; i < 50; i++) {
          seen = [serverSides(http), serverSides(uwsgi)];
          if (seen.every((s) => s.length === 1)) break;
          await new Promise((r) => setTimeout(r, 100));
        }
        assert.deepEqual(seen, [[on], [on]]);
      } finally {
        for (const c of conns) c.destroy();
        assert.equal((await stopProcess(tsgi)).code, 0, tsgi.output());
      }
    });
  }
}

test('bad values: one line naming the option', () => {
  const dir = tempDir();
  writeFiles(dir, { 'slow.ini': '[uwsgi]\nhttp-socket = :0\nlog-slow = fast\n' });
  const r = spawnSync(tsgiBin, ['--ini', join(dir, 'slow.ini')], { encoding: 'utf8', env: { PATH: process.env.PATH, HOME: process.env.HOME } });
  assert.equal(r.status, 1);
  assert.equal(r.stderr, `tsgi: ${join(dir, 'slow.ini')}:3: option 'log-slow': bad value 'fast': expected a whole number\n`);
  writeFiles(dir, { 'header.ini': '[uwsgi]\nhttp-socket = :0\nadd-header = X-Ok: 1\nadd-header = NoColon\n', 'del.ini': '[uwsgi]\nhttp-socket = :0\nrem-header = Bad Name\n' });
  const h = spawnSync(tsgiBin, ['--ini', join(dir, 'header.ini')], { encoding: 'utf8', env: { PATH: process.env.PATH, HOME: process.env.HOME } });
  assert.equal(h.status, 1);
  assert.equal(h.stderr, `tsgi: ${join(dir, 'header.ini')}:4: option 'add-header': 'NoColon': expected 'Name: value'\n`);
  const d = spawnSync(tsgiBin, ['--ini', join(dir, 'del.ini')], { encoding: 'utf8', env: { PATH: process.env.PATH, HOME: process.env.HOME } });
  assert.equal(d.status, 1);
  assert.equal(d.stderr, `tsgi: ${join(dir, 'del.ini')}:3: option 'del-header': 'Bad Name': expected a header name\n`);
});
