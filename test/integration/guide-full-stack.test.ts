/**
 * The guide with both of tsgi's programs: `tsgi --ini myapp.ini` for uwsgi and `tsgi-proxy` for nginx, with the
 * guide's server block (`include uwsgi_params; uwsgi_pass unix:...`). tsgi-proxy keeps persistent links to
 * tsgi (docs/protocol-keepalive.md); in front of the real uWSGI it speaks plain uwsgi.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from '../helpers/paths.js';
import { activatedEnv, freePort, sharedVenv, startProcess, startTsgi, stopProcess, tempDir, waitForPort, writeFiles } from '../helpers/procs.js';

const PROXY = join(repoRoot, 'bin/tsgi-proxy');
const GUIDE_WSGI = `def application(environ, start_response):
    start_response('200 OK', [('Content-Type', 'text/html')])
    return ["<h1 style='color:blue'>Hello There!</h1>"]
`;

function guideConf(port: number, sock: string): string {
  return `events {}
http {
    server {
        listen ${port};
        server_name localhost;

        location / {
            include uwsgi_params;
            uwsgi_pass unix:${sock};
        }
    }
}
`;
}

async function startProxy(dir: string, port: number, sock: string) {
  writeFileSync(join(dir, 'nginx.conf'), guideConf(port, sock));
  const t = spawnSync(process.execPath, [PROXY, '-t', '-p', dir, '-c', join(dir, 'nginx.conf')], { encoding: 'utf8' });
  assert.equal(t.status, 0, t.stderr);
  assert.match(t.stderr, /test is successful/);
  const proxy = startProcess(process.execPath, [PROXY, '-p', dir, '-c', join(dir, 'nginx.conf'), '-g', 'daemon off;']);
  await waitForPort(port);
  return proxy;
}

test("tsgi-proxy in front of tsgi: the guide's Hello There!, over persistent links", async () => {
  const dir = tempDir();
  writeFiles(dir, { 'wsgi.py': GUIDE_WSGI, 'myapp.ini': `[uwsgi]\nmodule = wsgi:application\nmaster = true\nprocesses = 2\nsocket = ${join(dir, 'myapp.sock')}\nchmod-socket = 660\nvacuum = true\ndie-on-term = true\n` });
  const tsgi = await startTsgi(['--ini', 'myapp.ini'], { cwd: dir, env: activatedEnv(sharedVenv()) });
  const port = await freePort();
  const proxy = await startProxy(dir, port, join(dir, 'myapp.sock'));
  try {
    for (let i = 0; i < 20; i++) {
      const curl = spawnSync('curl', ['-s', '-i', `http://127.0.0.1:${port}/`], { encoding: 'utf8' });
      assert.match(curl.stdout, /^HTTP\/1\.1 200 OK/);
      assert.match(curl.stdout, /<h1 style='color:blue'>Hello There!<\/h1>/);
      assert.doesNotMatch(curl.stdout, /X-Tsgi-Keepalive/i, 'the link marker stays between proxy and backend');
    }
    // Persistent: twenty requests did not need twenty connections to tsgi.
    const conns = spawnSync('ss', ['-xH', 'state', 'connected', 'src', join(dir, 'myapp.sock')], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean).length;
    assert.ok(conns >= 1 && conns <= 8, `${conns} connections to tsgi are open between requests`);
  } finally {
    await stopProcess(proxy, 'SIGQUIT');
    await stopProcess(tsgi);
  }
});

test("tsgi-proxy in front of the real uWSGI: the guide's Hello There! over plain uwsgi", { skip: spawnSync('uwsgi', ['--version']).status === 0 ? false : 'uwsgi is not installed (scripts/test-all installs it)' }, async () => {
  const dir = tempDir();
  // The guide's app with a bytes body: uWSGI on Python 3 answers the str version with an empty page.
  writeFiles(dir, { 'wsgi.py': GUIDE_WSGI.replace('["<h1', '[b"<h1') });
  const sock = join(dir, 'uwsgi.sock');
  const uwsgi = startProcess('uwsgi', ['--plugin', 'python3', '--master', '--processes', '2', '--socket', sock, '--chmod-socket=666', '--wsgi-file', join(dir, 'wsgi.py'), '--die-on-term'], { cwd: dir, env: { ...process.env, PYTHONHOME: '' } });
  await uwsgi.waitFor(/spawned uWSGI worker 2/);
  const port = await freePort();
  const proxy = await startProxy(dir, port, sock);
  try {
    const curl = spawnSync('curl', ['-s', `http://127.0.0.1:${port}/`], { encoding: 'utf8' });
    assert.match(curl.stdout, /Hello There!/);
  } finally {
    await stopProcess(proxy, 'SIGQUIT');
    await stopProcess(uwsgi);
  }
});
