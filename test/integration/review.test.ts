/**
 * Regressions found by the adversarial review of the newest subsystems (dynamic apps, spooler, mules, signals,
 * caches, crons, daemons, loggers): each test fails without the fix it names. Where uWSGI has the feature, the
 * same requests go to the real uWSGI 2.0.21 in the same test and its answers are the expected ones.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { activatedEnv, sharedVenv, startProcess, startTsgi, stopProcess, tempDir, workerPids, writeFiles, type RunningProcess } from '../helpers/procs.js';
import { getVars, uwsgiRequest, type Vars } from '../helpers/uwsgi-client.js';

const haveUwsgi = spawnSync('uwsgi', ['--plugin', 'python3', '--version']).status === 0;
const SKIP_UWSGI = haveUwsgi ? false : 'uwsgi with its python3 plugin is not installed (scripts/test-all installs it)';

function cleanEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, PYTHONHOME: '' };
  for (const k of Object.keys(env)) if (k.startsWith('UWSGI_') || k.startsWith('TSGI_')) delete env[k];
  return env;
}

/** A uwsgi var holding these UTF-8 bytes (the test client writes each code point of a var as one byte). */
const utf8 = (s: string): string => Buffer.from(s, 'utf8').toString('latin1');

test('dynamic apps: UWSGI_CHDIR/UWSGI_FILE/UWSGI_SCRIPT with UTF-8 bytes name the same files as in uWSGI; garbage vars get a 500 and keep the worker', { skip: SKIP_UWSGI }, async () => {
  const dir = tempDir('tsgi-review-dyn-');
  const app = (who: string): string => `def application(env, sr):\n    sr('200 OK', [('Content-Type', 'text/plain')])\n    return [b'${who}']\n`;
  writeFiles(dir, { 'café/appé.py': app('cafe-script'), 'café/plain.py': app('cafe-file'), 'ok/okapp.py': app('ok') });
  const cafe = join(dir, 'café');
  // Each request its own vhost (SERVER_NAME), so each is a new app in the one worker.
  const good: Vars[] = [
    { SERVER_NAME: 's1', HTTP_HOST: 's1', UWSGI_CHDIR: utf8(cafe), UWSGI_SCRIPT: utf8('appé') },
    { SERVER_NAME: 's2', HTTP_HOST: 's2', UWSGI_FILE: utf8(join(cafe, 'plain.py')) },
    { SERVER_NAME: 's3', HTTP_HOST: 's3', UWSGI_CHDIR: utf8(cafe), UWSGI_MODULE: 'plain', UWSGI_CALLABLE: 'application' },
  ];
  const answers = async (sock: string): Promise<string[]> => {
    const out: string[] = [];
    for (const extra of good) {
      const r = await uwsgiRequest(sock, getVars('/', extra));
      out.push(`${r.status} ${r.body.toString()}`);
    }
    return out;
  };
  const common = ['--plugin', 'python3', '--master', '--processes', '1', '--vhost', '--buffer-size', '65535'];

  const usock = join(dir, 'u.sock');
  const uw = startProcess('uwsgi', [...common, '--socket', usock, '--die-on-term'], { env: cleanEnv(), cwd: dir });
  let expected: string[];
  try {
    await uw.waitFor(/spawned uWSGI worker 1/);
    expected = await answers(usock);
  } finally {
    await stopProcess(uw);
  }
  assert.deepEqual(expected, ['200 cafe-script', '200 cafe-file', '200 cafe-file']);

  const tsock = join(dir, 't.sock');
  const ts: RunningProcess = await startTsgi([...common, '--socket', tsock], { env: activatedEnv(sharedVenv()), cwd: dir });
  try {
    assert.deepEqual(await answers(tsock), expected);
    const worker = workerPids(ts.pid);
    // Vars no web server should send: each is a 500 with a line, the worker stays, the next good request works.
    const garbage: Vars[] = [
      { UWSGI_CHDIR: `${dir}/\x00ok`, UWSGI_SCRIPT: 'okapp' },
      { UWSGI_FILE: `${dir}/ok/okapp.py\x00.txt` },
      { UWSGI_CHDIR: '\xff\xfe', UWSGI_SCRIPT: 'okapp' },
      { UWSGI_SCRIPT: '..okapp' },
      { UWSGI_SCRIPT: ':' },
      { UWSGI_SCRIPT: 'a'.repeat(60000) },
      { UWSGI_CHDIR: `/${'a'.repeat(60000)}`, UWSGI_SCRIPT: 'okapp' },
      { UWSGI_PYHOME: '\xff'.repeat(10), UWSGI_SCRIPT: 'okapp' },
      { UWSGI_MODULE: 'a..b', UWSGI_CALLABLE: '\xff' },
    ];
    for (const [i, extra] of garbage.entries()) {
      const r = await uwsgiRequest(tsock, getVars('/', { SERVER_NAME: `g${i}`, HTTP_HOST: `g${i}`, ...extra }));
      assert.equal(r.status, 500, `garbage ${i}`);
    }
    assert.deepEqual(workerPids(ts.pid), worker);
    const r = await uwsgiRequest(tsock, getVars('/', { SERVER_NAME: 'fine', HTTP_HOST: 'fine', UWSGI_CHDIR: join(dir, 'ok'), UWSGI_SCRIPT: 'okapp' }));
    assert.equal(`${r.status} ${r.body.toString()}`, '200 ok');
    assert.match(ts.output(), /cannot load the app UWSGI_SCRIPT=okapp \(app \d+, mountpoint='g0\|'\).*\n.*ValueError: embedded null byte/);
  } finally {
    await stopProcess(ts);
  }
});
