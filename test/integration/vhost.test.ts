/**
 * Dynamic apps and virtual hosting (docs/vhost.md): UWSGI_SCRIPT, UWSGI_MODULE + UWSGI_CALLABLE, UWSGI_FILE,
 * UWSGI_CHDIR, UWSGI_PYHOME, UWSGI_APPID from the web server, `vhost`, `no-default-app`, `max-apps`. Every sequence
 * runs under tsgi and, in the same test, under the real uWSGI (Debian's 2.0.21, python3 plugin) with the same
 * options, and the answers are compared: raw uwsgi packets, the real nginx in front, and tsgi-proxy in front.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from '../helpers/paths.js';
import {
  activatedEnv, freePort, httpRequest, sharedVenv, startNginx, startProcess, startTsgi, stopProcess, tempDir, waitForPort, writeFiles,
  type RunningProcess,
} from '../helpers/procs.js';
import { getVars, uwsgiRequest, type Vars } from '../helpers/uwsgi-client.js';

const haveUwsgi = spawnSync('uwsgi', ['--plugin', 'python3', '--version']).status === 0;
const SKIP_UWSGI = haveUwsgi ? false : 'uwsgi with its python3 plugin is not installed (scripts/test-all installs it)';
const haveNginx = spawnSync('/usr/sbin/nginx', ['-v']).status === 0;
const PROXY = join(repoRoot, 'bin/tsgi-proxy');

/** Two sites in two directories, an app that fails at import, and a fake virtualenv. */
function sites(): string {
  const dir = tempDir('tsgi-vhost-');
  const show = `import os
def _show(name, env):
    return ('%s cwd=%s sn=%r vars=%s' % (name, os.path.basename(os.getcwd()), env.get('SCRIPT_NAME', ''),
            ','.join(sorted(k for k in env if k.startswith('UWSGI_') and k != 'UWSGI_APPID')))).encode()
`;
  writeFiles(dir, {
    'site1/app1.py': `${show}
def application(env, sr):
    sr('200 OK', [('Content-Type', 'text/plain')])
    return [_show('site1', env)]
`,
    'site2/app2.py': `${show}
def application(env, sr):
    sr('200 OK', [('Content-Type', 'text/plain')])
    return [_show('site2', env)]
def other(env, sr):
    sr('200 OK', [('Content-Type', 'text/plain')])
    return [_show('site2-other', env)]
`,
    'site2/broken.py': "raise RuntimeError('boom at import')\n",
    'site3/usevenv.py': `import venvmod
def application(env, sr):
    sr('200 OK', [('Content-Type', 'text/plain')])
    return [venvmod.WHO.encode()]
`,
    'venv/lib/python3.11/site-packages/venvmod.py': "WHO = 'from the venv'\n",
  });
  return dir;
}

function cleanEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, PYTHONHOME: '' };
  for (const k of Object.keys(env)) if (k.startsWith('UWSGI_') || k.startsWith('TSGI_')) delete env[k];
  return env;
}

/** tsgi or uWSGI on a uwsgi Unix socket (and an HTTP socket), one worker, `args` added. */
async function start(server: 'tsgi' | 'uwsgi', dir: string, args: readonly string[]): Promise<{ proc: RunningProcess; sock: string; port: number }> {
  const port = await freePort();
  const sock = join(dir, `${server}.sock`);
  const all = ['--plugin', 'python3', '--master', '--processes', '1', '--socket', sock, '--chmod-socket=666', '--http-socket', `127.0.0.1:${port}`, ...args];
  if (server === 'tsgi') return { proc: await startTsgi(all, { env: activatedEnv(sharedVenv()), cwd: dir }), sock, port };
  const proc = startProcess('uwsgi', [...all, '--die-on-term'], { env: cleanEnv(), cwd: dir });
  await proc.waitFor(/spawned uWSGI worker 1/);
  return { proc, sock, port };
}

/** Sends each request in turn (the apps a worker loaded stay loaded, so the order matters): 'status body' each. */
async function run(sock: string, requests: readonly Vars[]): Promise<string[]> {
  const out: string[] = [];
  for (const extra of requests) {
    const r = await uwsgiRequest(sock, getVars('/x', extra));
    out.push(`${r.status} ${r.status === 200 ? r.body.toString() : ''}`.trim());
  }
  return out;
}

async function sideBySide(args: (dir: string) => string[], requests: (dir: string) => Vars[]): Promise<{ tsgi: string[]; uwsgi: string[]; log: string }> {
  const dir = sites();
  const result: Record<string, string[]> = {};
  let log = '';
  for (const server of ['uwsgi', 'tsgi'] as const) {
    const s = await start(server, dir, args(dir));
    try {
      result[server] = await run(s.sock, requests(dir));
    } finally {
      await stopProcess(s.proc);
    }
    if (server === 'tsgi') log = s.proc.output();
  }
  return { tsgi: result.tsgi!, uwsgi: result.uwsgi!, log };
}

test('no app configured: UWSGI_SCRIPT/MODULE/FILE + UWSGI_CHDIR load apps per SCRIPT_NAME, kept, chdir per request; failures fall back', { skip: SKIP_UWSGI }, async () => {
  const { tsgi, uwsgi, log } = await sideBySide(() => ['--no-default-app', '--max-apps', '4'], (dir): Vars[] => [
    {},                                                                                       // nothing loaded yet: 500
    { SCRIPT_NAME: '/m', UWSGI_SCRIPT: 'nosuchmodule' },                                       // import fails: 500
    { SCRIPT_NAME: '/one', UWSGI_SCRIPT: 'app1', UWSGI_CHDIR: join(dir, 'site1') },
    { SCRIPT_NAME: '/two', UWSGI_SCRIPT: 'app2', UWSGI_CHDIR: join(dir, 'site2') },
    { SCRIPT_NAME: '/one' },                                                                  // kept; its chdir again
    { SCRIPT_NAME: '/zzz' },                                                                  // no app, no default: 500
    { SCRIPT_NAME: '/b', UWSGI_SCRIPT: 'broken', UWSGI_CHDIR: join(dir, 'site2') },           // raises at import: 500
    { SCRIPT_NAME: '/mod', UWSGI_MODULE: 'app2', UWSGI_CALLABLE: 'other', UWSGI_CHDIR: join(dir, 'site2') },
    { SCRIPT_NAME: '/f', UWSGI_FILE: join(dir, 'site1/app1.py') },                            // app 3: no chdir of its own
    { SCRIPT_NAME: '/five', UWSGI_SCRIPT: 'app2:other', UWSGI_CHDIR: join(dir, 'site2') },    // max-apps 4: 500
    { SCRIPT_NAME: '/two', UWSGI_SCRIPT: 'app1', UWSGI_CHDIR: join(dir, 'site1') },           // /two is loaded: app2 answers
    { SCRIPT_NAME: '/whatever', UWSGI_APPID: '/one' },                                         // UWSGI_APPID names the app
  ]);
  assert.deepEqual(tsgi, uwsgi);
  assert.equal(tsgi[2], "200 site1 cwd=site1 sn='/one' vars=UWSGI_CHDIR,UWSGI_SCRIPT");
  assert.equal(tsgi[4], "200 site1 cwd=site1 sn='/one' vars=");
  assert.match(log, /\[pid: \d+\|worker 1\] cannot load the app UWSGI_SCRIPT=nosuchmodule \(app 0, mountpoint='\/m'\); the request gets a 500:\nModuleNotFoundError: No module named 'nosuchmodule'/);
  assert.match(log, /File "[^"]*broken\.py", line 1, in <module>[\s\S]*RuntimeError: boom at import/);
  assert.match(log, /WSGI app 0 \(mountpoint='\/one'\) ready in \d+ seconds: UWSGI_SCRIPT=app1 \(chdir [^)]*site1\)\n/);
  assert.match(log, /this worker has 4 apps already \(max-apps\)/);
  assert.doesNotMatch(log, /tsgi_worker/, 'tsgi frames are left out of the app traceback');
});

test('module app + a request with SCRIPT_NAME and UWSGI_SCRIPT: loaded beside it; UWSGI_PYHOME puts the venv on sys.path', { skip: SKIP_UWSGI }, async () => {
  const { tsgi, uwsgi } = await sideBySide((dir) => ['--wsgi-file', join(dir, 'site1/app1.py')], (dir): Vars[] => [
    {},
    { SCRIPT_NAME: '/two', UWSGI_SCRIPT: 'app2', UWSGI_CHDIR: join(dir, 'site2') },
    { SCRIPT_NAME: '/v', UWSGI_SCRIPT: 'usevenv', UWSGI_CHDIR: join(dir, 'site3'), UWSGI_PYHOME: join(dir, 'venv') },
    { SCRIPT_NAME: '/nothing-here' },
    { SCRIPT_NAME: '/two' },
  ]);
  assert.deepEqual(tsgi, uwsgi);
  assert.equal(tsgi[2], '200 from the venv');
});

/** nginx's server blocks for three names: two sites by Host, one naming a module that does not exist. */
function vhostServers(port: number, sock: string, dir: string): string {
  const site = (name: string, extra: string) => `
  server {
    listen 127.0.0.1:${port};
    server_name ${name};
    location / {
      include /etc/nginx/uwsgi_params;
      ${extra}
      uwsgi_pass unix:${sock};
    }
  }`;
  return site('a.test', `uwsgi_param UWSGI_SCRIPT app1; uwsgi_param UWSGI_CHDIR ${join(dir, 'site1')};`)
    + site('b.test', `uwsgi_param UWSGI_MODULE app2; uwsgi_param UWSGI_CALLABLE other; uwsgi_param UWSGI_CHDIR ${join(dir, 'site2')};`)
    + site('c.test', 'uwsgi_param UWSGI_SCRIPT nosuchmodule;')
    + site('d.test', '');
}

const HOSTS = ['a.test', 'b.test', 'a.test', 'c.test', 'd.test', 'b.test'];

async function throughFront(front: 'nginx' | 'tsgi-proxy', server: 'tsgi' | 'uwsgi', dir: string): Promise<{ answers: string[]; log: string }> {
  const s = await start(server, dir, ['--vhost']);
  const port = await freePort();
  let proxy: RunningProcess;
  if (front === 'nginx') proxy = await startNginx(vhostServers(port, s.sock, dir), port);
  else {
    const pdir = tempDir('tsgi-vhost-proxy-');
    writeFileSync(join(pdir, 'nginx.conf'), `events {}\nhttp {${vhostServers(port, s.sock, dir)}\n}\n`);
    proxy = startProcess(process.execPath, [PROXY, '-p', pdir, '-c', join(pdir, 'nginx.conf'), '-g', 'daemon off;']);
    await waitForPort(port);
  }
  const answers: string[] = [];
  try {
    for (const host of HOSTS) {
      const r = await httpRequest(`http://127.0.0.1:${port}/x`, { headers: { Host: host } });
      answers.push(`${r.status} ${r.status === 200 ? r.body.toString() : ''}`.trim());
    }
  } finally {
    await stopProcess(proxy);
    await stopProcess(s.proc);
  }
  return { answers, log: s.proc.output() };
}

for (const front of ['nginx', 'tsgi-proxy'] as const) {
  test(`vhost behind ${front}: two sites chosen by Host with uwsgi_param, a missing module, a host with no app`, {
    skip: SKIP_UWSGI || (front === 'nginx' && !haveNginx ? 'nginx is not installed' : false),
  }, async () => {
    const dir = sites();
    const u = await throughFront(front, 'uwsgi', dir);
    const t = await throughFront(front, 'tsgi', dir);
    assert.deepEqual(t.answers, u.answers);
    assert.deepEqual(t.answers, [
      "200 site1 cwd=site1 sn='' vars=UWSGI_CHDIR,UWSGI_SCRIPT",
      "200 site2-other cwd=site2 sn='' vars=UWSGI_CALLABLE,UWSGI_CHDIR,UWSGI_MODULE",
      "200 site1 cwd=site1 sn='' vars=UWSGI_CHDIR,UWSGI_SCRIPT",
      '500', '500',
      "200 site2-other cwd=site2 sn='' vars=UWSGI_CALLABLE,UWSGI_CHDIR,UWSGI_MODULE",
    ]);
    // Request lines start with the host, as uWSGI's do under vhost.
    assert.match(t.log, /\na\.test \[pid: \d+\|app: 0\|req: 1\/1\]/);
    assert.match(t.log, /WSGI app 1 \(mountpoint='b\.test\|'\) ready/);
  });
}

test("over tsgi's HTTP, client headers named UWSGI-SCRIPT/UWSGI_CHDIR are HTTP_ vars: nothing is loaded", async () => {
  const dir = sites();
  const s = await start('tsgi', dir, ['--vhost']);
  try {
    const r = await httpRequest(`http://127.0.0.1:${s.port}/x`, {
      headers: { 'UWSGI-SCRIPT': 'app1', 'UWSGI-CHDIR': join(dir, 'site1'), 'UWSGI-APPID': 'x', 'UWSGI-FILE': join(dir, 'site1/app1.py') },
    });
    assert.equal(r.status, 500);
  } finally {
    await stopProcess(s.proc);
  }
  assert.doesNotMatch(s.proc.output(), /WSGI app \d+ .*ready|cannot load the app/);
  assert.match(s.proc.output(), /no app for this request \(app id '127\.0\.0\.1:\d+\|'\) and no default app: answered 500/);
});

test('vhost and no app are refused with a line for a Node app; no app and no vhost/no-default-app is refused', async () => {
  const dir = tempDir('tsgi-vhost-node-');
  writeFiles(dir, { 'app.mjs': 'export default { fetch() { return new Response("x"); } };\n' });
  const node = spawnSync(process.execPath, [join(repoRoot, 'bin/tsgi'), '--socket', join(dir, 's.sock'), '--wsgi-file', 'app.mjs', '--vhost'], { cwd: dir, encoding: 'utf8', timeout: 30_000 });
  assert.equal(node.status, 1);
  assert.match(node.stderr, /vhost.*is for Python apps/);
  const none = spawnSync(process.execPath, [join(repoRoot, 'bin/tsgi'), '--socket', join(dir, 's.sock')], { cwd: dir, encoding: 'utf8', timeout: 30_000 });
  assert.equal(none.status, 1);
  assert.match(none.stderr, /no app to serve: .*vhost \/ no-default-app/);
});
