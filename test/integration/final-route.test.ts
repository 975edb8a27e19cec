/**
 * final-route (docs/routing.md): the same ini under tsgi and the real uWSGI 2.0.21 writes the same lines: the
 * final routes run after the response and before the request's log line (a logvar set there is in the line,
 * donotlog drops it), with the subjects, conditions and labels of route. Actions that need the response still
 * to come are refused with one line.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from '../helpers/paths.js';
import { freePort, httpRequest, startProcess, startTsgi, stopProcess, tempDir, type RunningProcess } from '../helpers/procs.js';

const haveUwsgi = spawnSync('uwsgi', ['--plugin', 'python3', '--version']).status === 0;
const APP = "def application(environ, start_response):\n    p = environ['PATH_INFO']\n" +
  "    start_response('404 Not Found' if p == '/404' else '200 OK', [('Content-Type', 'text/plain')])\n    return [b'body']\n";

function cleanEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, PYTHONHOME: '' };
  for (const k of Object.keys(env)) if (k.startsWith('UWSGI_') || k.startsWith('TSGI_')) delete env[k];
  return env;
}

function ini(port: number): string {
  return `[uwsgi]
plugin = python3
http-socket = 127.0.0.1:${port}
wsgi-file = app.py
master = true
logformat = REQ %(uri) %(status) [%(fv)]
final-route-run = logvar:fv=set-in-final
final-route = ^/quiet$ donotlog:
final-route = ^/(404)$ log:FINAL ${'${REQUEST_URI}'} $1 ${'${HTTP_X_A}'}
final-route-if = equal:${'${QUERY_STRING}'};skip goto:end
final-route-uri = ^/ok log:FINAL-URI ${'${REQUEST_URI}'}
final-route-label = end
final-route-host = ^nohost$ log:never
`;
}

async function run(server: 'tsgi' | 'uwsgi'): Promise<string[]> {
  const dir = tempDir();
  writeFileSync(join(dir, 'app.py'), APP);
  const port = await freePort();
  writeFileSync(join(dir, 'app.ini'), ini(port));
  let p: RunningProcess;
  if (server === 'tsgi') p = await startTsgi(['--ini', 'app.ini'], { env: cleanEnv(), cwd: dir });
  else {
    p = startProcess('uwsgi', ['--ini', 'app.ini'], { env: cleanEnv(), cwd: dir });
    await p.waitFor(/spawned uWSGI worker 1/);
  }
  try {
    for (const path of ['/ok', '/quiet', '/404', '/ok?skip']) {
      const r = await httpRequest(`http://127.0.0.1:${port}${path}`, { headers: { 'X-A': 'aa' } });
      assert.equal(r.status, path === '/404' ? 404 : 200);
    }
    await p.waitFor(/REQ \/ok\?skip/);
  } finally {
    await stopProcess(p, server === 'uwsgi' ? 'SIGINT' : 'SIGTERM');
  }
  return p.output().split('\n').filter((l) => /^(REQ|FINAL|never)/.test(l));
}

test('final-route: the lines uWSGI 2.0.21 writes for the same ini', { skip: !haveUwsgi && 'uwsgi --plugin python3 is not installed' }, async () => {
  const expected = await run('uwsgi');
  assert.deepEqual(expected, ['FINAL-URI /ok', 'REQ /ok 200 [set-in-final]', 'FINAL /404 404 aa', 'REQ /404 404 [set-in-final]', 'REQ /ok?skip 200 [set-in-final]']);
  assert.deepEqual(await run('tsgi'), expected);
});

test('final-route: actions that need the response still to come are refused with one line', () => {
  const dir = tempDir();
  for (const [line, re] of [
    ['final-route-run = addheader:X-A: b', /app\.ini:3: option 'final-route-run': action 'addheader' cannot run in a final route/],
    ['final-route = ^/ break:403 Forbidden', /app\.ini:3: option 'final-route': action 'break' with a status cannot run in a final route/],
    ['final-route-status = 404 log:x', /app\.ini:3: .*final-route-status/],
  ] as const) {
    writeFileSync(join(dir, 'app.ini'), `[uwsgi]\nwsgi-file = app.py\n${line}\n`);
    writeFileSync(join(dir, 'app.py'), APP);
    const r = spawnSync(join(repoRoot, 'bin/tsgi'), ['--ini', 'app.ini'], { cwd: dir, env: cleanEnv(), encoding: 'utf8', timeout: 30_000 });
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, re);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  }
});
