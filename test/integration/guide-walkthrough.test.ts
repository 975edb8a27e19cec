/**
 * The guide, command for command, with tsgi for uwsgi: a virtualenv, the guide's wsgi.py, its myapp.ini (only
 * the socket path and the user changed for the test), `tsgi --ini myapp.ini` from an activated venv, and the
 * real nginx with the guide's server block in front.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdirSync, chownSync, readFileSync, statSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { activatedEnv, workerPids, freePort, startNginx, startTsgi, stopProcess, tempDir, writeFiles, SYSTEM_PYTHON } from '../helpers/procs.js';
import { resolveGroup, resolveUser } from '../../src/master/users.js';

const GUIDE_WSGI = `def application(environ, start_response):
    start_response('200 OK', [('Content-Type', 'text/html')])
    return ["<h1 style='color:blue'>Hello There!</h1>"]
`;

const isRoot = process.getuid?.() === 0;

function procUid(pid: number): number {
  const m = /^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m![1]);
}

test('the guide walkthrough: tsgi --ini myapp.ini behind the real nginx serves Hello There!', { skip: isRoot ? false : 'needs root: the guide drops to another user and chowns the socket' }, async () => {
  const home = tempDir('tsgi-guide-');
  const app = join(home, 'myapp');
  mkdirSync(app);
  // virtualenv myappenv; source myappenv/bin/activate
  const venv = spawnSync(SYSTEM_PYTHON, ['-m', 'venv', join(app, 'myappenv')], { encoding: 'utf8' });
  assert.equal(venv.status, 0, venv.stderr);
  // The guide's /run/uwsgi, made by ExecStartPre: owned by the app's user and nginx's group.
  const run = join(home, 'run-uwsgi');
  mkdirSync(run);
  const nobody = resolveUser('nobody')!;
  const wwwData = resolveGroup('www-data')!;
  chownSync(run, nobody.uid, wwwData);
  const sock = join(run, 'myapp.sock');
  writeFiles(app, {
    'wsgi.py': GUIDE_WSGI,
    'myapp.ini': `[uwsgi]
module = wsgi:application

master = true
processes = 5

uid = nobody
socket = ${sock}
chown-socket = nobody:www-data
chmod-socket = 660
vacuum = true

die-on-term = true
`,
  });

  const tsgi = await startTsgi(['--ini', 'myapp.ini'], { cwd: app, env: activatedEnv(join(app, 'myappenv')) });
  let nginx;
  try {
    const st = statSync(sock);
    assert.ok(st.isSocket(), 'the socket file exists');
    assert.equal(st.mode & 0o777, 0o660, 'chmod-socket = 660');
    assert.equal(st.uid, nobody.uid, 'chown-socket user');
    assert.equal(st.gid, wwwData, 'chown-socket group');

    const workers = workerPids(tsgi.pid);
    assert.equal(workers.length, 5, `processes = 5, found workers ${workers.join(' ')}`);
    for (const pid of workers) assert.equal(procUid(pid), nobody.uid, `worker ${pid} runs as the uid user`);
    assert.equal(procUid(tsgi.pid), nobody.uid, 'the master dropped privileges too');

    const port = await freePort();
    const prefix = tempDir('tsgi-guide-nginx-');
    copyFileSync('/etc/nginx/uwsgi_params', join(prefix, 'uwsgi_params'));
    nginx = await startNginx(`
    server {
        listen ${port};
        server_name localhost;

        location / {
            include ${join(prefix, 'uwsgi_params')};
            uwsgi_pass unix:${sock};
        }
    }`, port);
    const curl = spawnSync('curl', ['-s', '-i', `http://127.0.0.1:${port}/`], { encoding: 'utf8' });
    assert.equal(curl.status, 0, curl.stderr);
    assert.match(curl.stdout, /^HTTP\/1\.1 200 OK/);
    assert.match(curl.stdout, /<h1 style='color:blue'>Hello There!<\/h1>/);
    // The worker logs after it has answered, so wait for the line rather than race it.
    await tsgi.waitFor(/returned a str in its response body .* fix the app with b"\.\.\." or "\.\.\."\.encode\(\)/);
    await tsgi.waitFor(/\[pid: \d+\|app: 0\|req: 1\/1\] 127\.0\.0\.1 \(\) \{\d+ vars in \d+ bytes\} \[.+\] GET \/ => generated 40 bytes in \d+ msecs \(HTTP\/1\.1 200\) 2 headers in \d+ bytes/);
  } finally {
    if (nginx) await stopProcess(nginx, 'SIGQUIT');
    const exit = await stopProcess(tsgi, 'SIGTERM');
    assert.deepEqual(exit, { code: 0, signal: null }, `SIGTERM stops the master with status 0; output:\n${tsgi.output()}`);
  }
  assert.equal(existsSync(sock), false, 'vacuum removed the socket file');
});
