/**
 * Three real uWSGI backends, each in its own network namespace behind a veth pair (made by this test, as
 * root): round-robin spreads requests over the three; one backend killed under load has its GETs retried on
 * the others (no failed GET); once it is back, it gets requests again.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort, get, haveUwsgiPython, run, startProxy, tempDir, waitFor, type Proc } from './helpers.js';

const APP = `import os
def application(environ, start_response):
    start_response('200 OK', [('Content-Type', 'text/plain')])
    return [os.environ['BACKEND'].encode()]
`;

function ip(...args: string[]): { ok: boolean; err: string } {
  const r = spawnSync('ip', args, { encoding: 'utf8' });
  return { ok: r.status === 0, err: (r.stderr || '').trim() };
}

function canonicalSkip(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root to create network namespaces';
  if (!haveUwsgiPython()) return 'the real uWSGI with the python3 plugin is not installed';
  if (spawnSync('ip', ['-V']).status !== 0) return 'the ip command (iproute2) is not installed';
  return undefined;
}

test('three backends in three network namespaces: spread, failover under load with 0 failed GETs, and return', async (t) => {
  const why = canonicalSkip();
  if (why) {
    t.skip(why);
    return;
  }
  const tag = (process.pid % 10000).toString();
  const names = ['a', 'b', 'c'].map((n) => `tsgi${tag}${n}`);
  const made: string[] = [];
  const dir = tempDir('netns');
  const backends = new Map<string, Proc>();
  let proxy: Proc | undefined;
  let stop = false;
  try {
    // Namespace i: veth pair, 10.77.<i>.1 on the host side, 10.77.<i>.2 inside.
    for (const [i, ns] of names.entries()) {
      const add = ip('netns', 'add', ns);
      if (!add.ok) {
        t.skip(`ip netns add is not permitted here: ${add.err}`);
        return;
      }
      made.push(ns);
      const host = `vh${tag}${i}`;
      const inner = `vn${tag}${i}`;
      const net = `10.77.${i + 10}`;
      for (const cmd of [
        ['link', 'add', host, 'type', 'veth', 'peer', 'name', inner],
        ['link', 'set', inner, 'netns', ns],
        ['addr', 'add', `${net}.1/24`, 'dev', host],
        ['link', 'set', host, 'up'],
        ['-n', ns, 'addr', 'add', `${net}.2/24`, 'dev', inner],
        ['-n', ns, 'link', 'set', inner, 'up'],
        ['-n', ns, 'link', 'set', 'lo', 'up'],
      ]) {
        const r = ip(...cmd);
        if (!r.ok) throw new Error(`ip ${cmd.join(' ')}: ${r.err}`);
      }
    }
    writeFileSync(join(dir.dir, 'app.py'), APP);
    const start = async (i: number) => {
      const name = ['a', 'b', 'c'][i]!;
      const p = run('ip', ['netns', 'exec', names[i]!, 'uwsgi', '--plugin', 'python3', '--socket', `10.77.${i + 10}.2:9000`, '--wsgi-file', 'app.py', '--env', `BACKEND=${name}`, '--processes', '1', '--disable-logging', '--die-on-term'], { cwd: dir.dir });
      backends.set(name, p);
      await waitFor(`backend ${name}`, async () => {
        if (p.child.exitCode !== null) throw new Error(`uwsgi in ${names[i]} exited: ${p.out()}`);
        const r = spawnSync('ip', ['netns', 'exec', names[i]!, 'sh', '-c', 'cat /proc/net/tcp'], { encoding: 'utf8' });
        return /:2328 00000000:0000 0A/.test(r.stdout); // 9000 = 0x2328, state LISTEN
      });
    };
    for (let i = 0; i < 3; i++) await start(i);
    const port = await freePort();
    writeFileSync(
      join(dir.dir, 'nginx.conf'),
      `worker_processes 2;\nevents {}\nhttp {\n access_log off;\n error_log ${dir.dir}/error.log;\n upstream app {\n  server 10.77.10.2:9000 max_fails=1 fail_timeout=1s;\n  server 10.77.11.2:9000 max_fails=1 fail_timeout=1s;\n  server 10.77.12.2:9000 max_fails=1 fail_timeout=1s;\n }\n server {\n  listen 127.0.0.1:${port};\n  location / { include uwsgi_params; uwsgi_pass app; uwsgi_connect_timeout 2s; }\n }\n}\n`,
    );
    proxy = await startProxy(dir.dir, 'nginx.conf', port);

    // Round robin: every backend serves, in equal shares per worker.
    const counts = new Map<string, number>();
    for (let i = 0; i < 60; i++) {
      const r = await get(port, '/');
      assert.equal(r.status, 200);
      counts.set(r.body, (counts.get(r.body) ?? 0) + 1);
    }
    assert.deepEqual([...counts.keys()].sort(), ['a', 'b', 'c']);
    for (const n of ['a', 'b', 'c']) assert.ok(counts.get(n)! >= 10, `spread: ${JSON.stringify([...counts])}`);

    // Load, then kill b.
    let ok = 0;
    const failures: string[] = [];
    const seen = new Map<string, number>();
    const client = async () => {
      while (!stop) {
        try {
          const r = await get(port, '/');
          if (r.status === 200) {
            ok++;
            seen.set(r.body, (seen.get(r.body) ?? 0) + 1);
          } else failures.push(String(r.status));
        } catch (e) {
          failures.push((e as Error).message);
        }
        if (failures.length > 1000) stop = true;
      }
    };
    const clients = Array.from({ length: 12 }, client);
    await waitFor('load running', () => ok > 300);
    backends.get('b')!.child.kill('SIGKILL');
    await backends.get('b')!.exited;
    const killedAt = ok;
    await waitFor('load after the kill', () => ok > killedAt + 1000);
    seen.clear();
    await waitFor('traffic without b', () => ok > killedAt + 1500);
    assert.equal(seen.get('b') ?? 0, 0, 'b is dead and must not have answered');
    // b comes back: after fail_timeout it is tried again and takes its share.
    await start(1);
    await waitFor('b serving again', () => (seen.get('b') ?? 0) > 20, 30000);
    stop = true;
    await Promise.all(clients);
    assert.deepEqual(failures, [], 'no GET failed while b was killed');
  } finally {
    stop = true;
    await proxy?.stop('SIGQUIT');
    for (const p of backends.values()) {
      p.child.kill('SIGKILL');
      await p.exited;
    }
    for (const ns of made) ip('netns', 'del', ns);
    dir.cleanup();
  }
});
