/**
 * The master process and its signals, driven through the command line as a user would: pid file, -s reload
 * picking up a new configuration, a broken configuration at reload keeping the old one, -s reopen after
 * log rotation, -s quit, a port already taken, and daemon mode.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, renameSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { BIN, canConnect, freePort, get, proxySync, readText, run, startProxy, tempDir, waitFor } from './helpers.js';

function conf(dir: string, port: number, body: string, extra = ''): string {
  return `pid ${dir}/nginx.pid;\nworker_processes 2;\n${extra}\nevents {}\nhttp {\n access_log ${dir}/access.log;\n server {\n  listen 127.0.0.1:${port};\n  ${body}\n }\n}\n`;
}

test('-s reload serves the new configuration, a broken one is refused and the old one kept, -s quit stops', async () => {
  const t = tempDir('life');
  const port = await freePort();
  const file = join(t.dir, 'nginx.conf');
  writeFileSync(file, conf(t.dir, port, 'location / { return 200 "one"; }'));
  const p = await startProxy(t.dir, 'nginx.conf', port);
  try {
    await waitFor('pid file', () => existsSync(join(t.dir, 'nginx.pid')));
    assert.equal(readText(join(t.dir, 'nginx.pid')).trim(), String(p.child.pid));
    assert.equal((await get(port, '/')).body, 'one');

    writeFileSync(file, conf(t.dir, port, 'location / { return 200 "two"; }'));
    assert.equal(proxySync(['-p', t.dir, '-c', 'nginx.conf', '-s', 'reload']).code, 0);
    await waitFor('new configuration', async () => (await get(port, '/')).body === 'two');

    writeFileSync(file, conf(t.dir, port, 'location / { retrun 200 "three"; }'));
    // -s reads the pid from the config, so keep that part readable: signal the master directly.
    process.kill(p.child.pid!, 'SIGHUP');
    await waitFor('reload error in the error log', () => /\[emerg\] .*unknown directive "retrun" in .*nginx\.conf:\d+/.test(readText(join(t.dir, 'error.log'))));
    assert.equal((await get(port, '/')).body, 'two');

    writeFileSync(file, conf(t.dir, port, 'location / { return 200 "two"; }'));
    assert.equal(proxySync(['-p', t.dir, '-c', 'nginx.conf', '-s', 'quit']).code, 0);
    assert.equal(await p.exited, 0);
    assert.equal(existsSync(join(t.dir, 'nginx.pid')), false);
    assert.equal(await canConnect(port), false);
  } finally {
    await p.stop('SIGKILL');
    t.cleanup();
  }
});

test('-s reopen makes the workers write to a fresh access log after rotation', async () => {
  const t = tempDir('reopen');
  const port = await freePort();
  writeFileSync(join(t.dir, 'nginx.conf'), conf(t.dir, port, 'location / { return 200 "x"; }'));
  const p = await startProxy(t.dir, 'nginx.conf', port);
  try {
    await get(port, '/before');
    await waitFor('first line', () => readText(join(t.dir, 'access.log')).includes('/before'));
    renameSync(join(t.dir, 'access.log'), join(t.dir, 'access.log.1'));
    assert.equal(proxySync(['-p', t.dir, '-c', 'nginx.conf', '-s', 'reopen']).code, 0);
    await waitFor('reopened log', async () => {
      await get(port, '/after');
      return readText(join(t.dir, 'access.log')).includes('/after');
    });
    assert.ok(!readText(join(t.dir, 'access.log.1')).includes('/after'));
  } finally {
    await p.stop('SIGTERM');
    t.cleanup();
  }
});

test('a port already in use: one [emerg] bind() line and exit 1', async () => {
  const t = tempDir('bind');
  const blocker = createServer();
  const port = await new Promise<number>((res) => blocker.listen(0, '127.0.0.1', () => res((blocker.address() as { port: number }).port)));
  try {
    writeFileSync(join(t.dir, 'nginx.conf'), conf(t.dir, port, 'location / { return 200; }'));
    const p = run(process.execPath, [BIN, '-p', t.dir, '-c', 'nginx.conf', '-e', 'error.log', '-g', 'daemon off;']);
    assert.equal(await p.exited, 1);
    assert.match(p.out(), new RegExp(`tsgi-proxy: \\[emerg\\] bind\\(\\) to 127\\.0\\.0\\.1:${port} failed \\(98: Address already in use\\)\\n`));
  } finally {
    blocker.close();
    t.cleanup();
  }
});

test('daemon mode returns once serving, and SIGTERM stops the master and its workers', async () => {
  const t = tempDir('daemon');
  const port = await freePort();
  writeFileSync(join(t.dir, 'nginx.conf'), conf(t.dir, port, 'location / { return 200 "d"; }'));
  const r = run(process.execPath, [BIN, '-p', t.dir, '-c', 'nginx.conf', '-e', 'error.log']);
  assert.equal(await r.exited, 0, r.out());
  try {
    assert.equal((await get(port, '/')).body, 'd');
    const pid = Number(readText(join(t.dir, 'nginx.pid')));
    assert.ok(pid > 0 && pid !== r.child.pid);
    process.kill(pid, 'SIGTERM');
    await waitFor('daemon gone', async () => !(await canConnect(port)) && !existsSync(join(t.dir, 'nginx.pid')));
  } finally {
    const pid = Number(readText(join(t.dir, 'nginx.pid')));
    if (pid > 0) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
    t.cleanup();
  }
});
