/**
 * http-to with every framing a uwsgi backend answers with (docs/https.md): close-delimited (a generator, under
 * uWSGI and tsgi alike), chunked (an app that sets Transfer-Encoding itself), Content-Length. tsgi's router
 * decodes the backend's framing and frames the body again for its client, so the client gets the same body as
 * through uWSGI's own router and keeps its keep-alive connection; a malformed chunked body is a 502.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { repoRoot } from '../helpers/paths.js';
import { freePort, startProcess, startTsgi, stopProcess, tempDir, type RunningProcess } from '../helpers/procs.js';

const APP = join(repoRoot, 'test/fixtures/apps/framing.py');
const tsgiBin = join(repoRoot, 'bin/tsgi');
const haveUwsgi = spawnSync('uwsgi', ['--plugin', 'python3,http', '--version']).status === 0;

function cleanEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, PYTHONHOME: '' };
  for (const k of Object.keys(env)) if (k.startsWith('UWSGI_') || k.startsWith('TSGI_')) delete env[k];
  return env;
}

interface Reply { status: number; body: string; reused: boolean; headers: http.IncomingHttpHeaders }

function get(port: number, path: string, agent: http.Agent, method = 'GET'): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, agent, method }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (d: Buffer) => parts.push(d));
      res.on('end', () => resolve({ status: res.statusCode!, body: Buffer.concat(parts).toString(), reused: req.reusedSocket, headers: res.headers }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

describe('http-to: chunked, Content-Length and close-delimited backends', { skip: haveUwsgi ? false : 'uwsgi with its python3 and http plugins is not installed' }, () => {
  let dir: string;
  const procs: RunningProcess[] = [];
  let viaUwsgiRouter: number;
  let toUwsgi: number;
  let toTsgi: number;

  before(async () => {
    dir = tempDir();
    const u = startProcess('uwsgi', ['--plugin', 'python3', '--socket', join(dir, 'u.sock'), '--wsgi-file', APP, '--master', '--disable-logging'], { env: cleanEnv(), cwd: dir });
    procs.push(u);
    await u.waitFor(/spawned uWSGI worker 1/);
    procs.push(await startTsgi(['--socket', join(dir, 't.sock'), '--wsgi-file', APP, '--disable-logging'], { env: cleanEnv(), cwd: dir }));
    [viaUwsgiRouter, toUwsgi, toTsgi] = [await freePort(), await freePort(), await freePort()];
    const ur = startProcess('uwsgi', ['--plugin', 'http', '--http', `127.0.0.1:${viaUwsgiRouter}`, '--http-to', join(dir, 'u.sock'), '--master'], { env: cleanEnv(), cwd: dir });
    procs.push(ur);
    await ur.waitFor(/spawned uWSGI http 1/);
    for (const [port, sock] of [[toUwsgi, 'u.sock'], [toTsgi, 't.sock']] as const) {
      const f = startProcess(tsgiBin, ['--http', `127.0.0.1:${port}`, '--http-to', join(dir, sock)], { env: cleanEnv(), cwd: dir });
      procs.push(f);
      await f.waitFor(/router listening/);
    }
  });

  after(async () => {
    await Promise.all(procs.map((p) => stopProcess(p, 'SIGINT')));
  });

  for (const backend of ['uWSGI', 'tsgi'] as const) {
    test(`a ${backend} backend: the bodies uWSGI's router gives, on one kept-alive client connection`, async () => {
      const port = backend === 'uWSGI' ? toUwsgi : toTsgi;
      const ua = new http.Agent({ keepAlive: false });
      const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
      try {
        let n = 0;
        for (const path of ['/gen', '/chunked', '/len', '/gen', '/chunked']) {
          const expected = await get(viaUwsgiRouter, path, ua);
          const got = await get(port, path, agent);
          assert.equal(got.status, expected.status, path);
          assert.equal(got.body, expected.body, `${backend} ${path}`);
          assert.ok(got.body.length > 0, path);
          assert.equal(got.headers['content-type'], 'text/plain');
          // Every response after the first comes on the same client connection: the framing held.
          assert.equal(got.reused, n > 0, `${backend} ${path}: connection reused`);
          n++;
        }
        const head = await get(port, '/chunked', agent, 'HEAD');
        assert.equal(head.status, 200);
        assert.equal(head.body, '');
        assert.equal((await get(port, '/len', agent)).body, 'hello', 'after a HEAD of a chunked response');
      } finally {
        agent.destroy();
        ua.destroy();
      }
    });
  }

  test('a malformed chunked body from the backend: 502 and a log line', async () => {
    const agent = new http.Agent({ keepAlive: false });
    try {
      const r = await get(toUwsgi, '/badchunk', agent);
      assert.equal(r.status, 502);
      await procs[3]!.waitFor(/http-to .*u\.sock sent a malformed chunked body; answered 502/);
    } finally {
      agent.destroy();
    }
  });
});
