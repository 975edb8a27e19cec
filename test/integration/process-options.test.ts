/** Process titles (procname and friends) and the master's umask, seen from outside: /proc and the file system. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from '../helpers/paths.js';
import { cleanEnv, NODE_APPS } from '../helpers/node-apps.js';
import { activatedEnv, childPids, freePort, sharedVenv, startTsgi, stopProcess, tempDir } from '../helpers/procs.js';
import { getVars, uwsgiRequest } from '../helpers/uwsgi-client.js';

const APP = join(repoRoot, 'test/fixtures/apps/behaviours.py');
const NODE_APP = join(NODE_APPS, 'behaviours.mjs');
const env = activatedEnv(sharedVenv());

/** What ps shows: /proc/PID/cmdline with its NULs (and the padding after the title) dropped. */
function cmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'latin1').replace(/\0+$/, '').replace(/\0/g, ' ').trimEnd();
  } catch {
    return '';
  }
}

function comm(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return '';
  }
}

function descendants(pid: number): number[] {
  const out: number[] = [];
  for (const c of childPids(pid)) out.push(c, ...descendants(c));
  return out;
}

test('procname-prefix-spaced and procname-append: every title is prefix + name + suffix (Python workers, loader, router)', async () => {
  const dir = tempDir();
  const port = await freePort();
  const tsgi = await startTsgi(['-s', join(dir, 'p.sock'), '--http-socket', `127.0.0.1:${port}`, '-p', '2', '--wsgi-file', APP,
    '--procname-prefix-spaced', 'shop', '--procname-append', ' [prod]'], { env });
  try {
    const titles = [tsgi.pid, ...descendants(tsgi.pid)].map(cmdline).sort();
    assert.deepEqual(titles, ['shop tsgi loader [prod]', 'shop tsgi master [prod]', 'shop tsgi router [prod]',
      'shop tsgi worker 1 [prod]', 'shop tsgi worker 2 [prod]'], tsgi.output());
    assert.equal(comm(tsgi.pid), 'shop tsgi maste', 'comm holds the first 15 bytes of the title');
  } finally {
    assert.equal((await stopProcess(tsgi)).code, 0, tsgi.output());
  }
});

test('procname names every process; procname-master the master; procname-prefix has no space', async () => {
  const dir = tempDir();
  const tsgi = await startTsgi(['-s', join(dir, 'p.sock'), '-p', '1', '--lazy-apps', '--wsgi-file', APP,
    '--procname', 'shop', '--procname-master', 'shop-master', '--procname-prefix', 'x-'], { env });
  try {
    assert.equal(cmdline(tsgi.pid), 'x-shop-master');
    assert.deepEqual(childPids(tsgi.pid).map(cmdline), ['x-shop']);
    assert.equal(comm(childPids(tsgi.pid)[0]!), 'x-shop');
  } finally {
    assert.equal((await stopProcess(tsgi)).code, 0, tsgi.output());
  }
});

test('procname-prefix on Node workers', async () => {
  const port = await freePort();
  const tsgi = await startTsgi(['--http-socket', `127.0.0.1:${port}`, '-p', '1', '--wsgi-file', NODE_APP, '--procname-prefix', 'n-'], { env: cleanEnv() });
  try {
    assert.equal(cmdline(tsgi.pid), 'n-tsgi master');
    assert.deepEqual(childPids(tsgi.pid).map(cmdline), ['n-tsgi worker 1']);
  } finally {
    assert.equal((await stopProcess(tsgi)).code, 0, tsgi.output());
  }
});

test('umask: the master sets it before binding, so a Unix socket and the pidfile get the masked modes', async () => {
  const dir = tempDir();
  const sock = join(dir, 'u.sock');
  const pidfile = join(dir, 'u.pid');
  const tsgi = await startTsgi(['-s', sock, '-p', '1', '--wsgi-file', APP, '--umask', '077', '--pidfile', pidfile], { env });
  try {
    assert.equal(statSync(sock).mode & 0o777, 0o700, 'bind() makes 777 & ~077');
    assert.equal(statSync(pidfile).mode & 0o777, 0o600, 'the pidfile: 644 & ~077');
    assert.equal((await uwsgiRequest(sock, getVars('/pid'))).status, 200);
  } finally {
    assert.equal((await stopProcess(tsgi)).code, 0);
  }
});
