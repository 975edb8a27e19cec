/**
 * `-s reload` under load drops nothing: clients keep sending requests (a new connection each) through
 * tsgi-proxy to the real uWSGI while the configuration is reloaded three times; every request is answered
 * 200, and the answers show each new configuration taking over.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort, get, haveUwsgiPython, proxySync, startProxy, startUwsgi, tempDir, waitFor } from './helpers.js';

const HELLO = `def application(environ, start_response):
    start_response('200 OK', [('Content-Type','text/html')])
    return [b"<h1 style='color:blue'>Hello There!</h1>"]
`;

const skip = haveUwsgiPython() ? false : 'the real uWSGI with the python3 plugin is not installed (Debian uwsgi, uwsgi-plugin-python3)';

test('-s reload under load answers every request (3 reloads, 16 concurrent clients)', { skip }, async () => {
  const t = tempDir('reload');
  const port = await freePort();
  writeFileSync(join(t.dir, 'hello.py'), HELLO);
  const uwsgi = await startUwsgi(t.dir, join(t.dir, 'app.sock'), 'hello.py', ['--master', '--processes', '2']);
  const write = (gen: number) =>
    writeFileSync(
      join(t.dir, 'nginx.conf'),
      `pid ${t.dir}/nginx.pid;\nworker_processes 2;\nevents {}\nhttp {\n access_log off;\n server {\n  listen 127.0.0.1:${port};\n  location / { add_header X-Gen ${gen}; include uwsgi_params; uwsgi_pass unix:${t.dir}/app.sock; }\n }\n}\n`,
    );
  write(0);
  const proxy = await startProxy(t.dir, 'nginx.conf', port);
  let stop = false;
  let ok = 0;
  const failures: string[] = [];
  const gens = new Set<string>();
  const client = async () => {
    while (!stop) {
      try {
        const r = await get(port, '/');
        if (r.status === 200 && r.body.includes('Hello There!')) {
          ok++;
          gens.add(r.headers.get('x-gen') ?? '?');
        } else failures.push(`${r.status} ${r.raw.slice(0, 80)}`);
      } catch (e) {
        failures.push((e as Error).message);
      }
    }
  };
  try {
    const clients = Array.from({ length: 16 }, client);
    for (let gen = 1; gen <= 3; gen++) {
      await waitFor('some traffic', () => ok > gen * 200);
      write(gen);
      assert.equal(proxySync(['-p', t.dir, '-c', 'nginx.conf', '-s', 'reload']).code, 0);
      await waitFor(`generation ${gen} serving`, () => gens.has(String(gen)), 30000);
    }
    const target = ok + 300;
    await waitFor('traffic after the last reload', () => ok > target);
    stop = true;
    await Promise.all(clients);
    assert.deepEqual(failures, []);
    assert.ok(ok > 900);
  } finally {
    stop = true;
    await proxy.stop('SIGQUIT');
    await uwsgi.stop('SIGTERM');
    t.cleanup();
  }
});
