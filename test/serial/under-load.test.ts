/**
 * Operations under load (wrk, 50 connections, 20 s each): reloads every 2 s, chain reloads, max-requests 100,
 * touch-reload — not one non-2xx answer, not one socket error. And SIGTERM under load: every request whose
 * connection was accepted before the signal is answered, the master exits 0, nothing is left behind.
 * Each case runs twice: a Python app on Python workers, and a JavaScript app on Node workers.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, utimesSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { cleanEnv, NODE_APPS } from '../helpers/node-apps.js';
import { repoRoot } from '../helpers/paths.js';
import { activatedEnv, freePort, sharedVenv, startTsgi, stopProcess, tempDir, workerPids, type RunningProcess } from '../helpers/procs.js';

interface App {
  /** Which workers serve it, for the test names and the printed counts. */
  kind: string;
  file: string;
  env: () => NodeJS.ProcessEnv;
  /** The body of GET /sleep?0.05 */
  sleepBody: string;
}

const APPS: readonly App[] = [
  { kind: 'Python', file: join(repoRoot, 'test/fixtures/apps/behaviours.py'), env: () => activatedEnv(sharedVenv()), sleepBody: 'ok /sleep' },
  { kind: 'Node', file: join(NODE_APPS, 'behaviours.mjs'), env: cleanEnv, sleepBody: 'slept /sleep?0.05' },
];
const DURATION = Number(process.env.TSGI_LOAD_SECONDS ?? 20);
const haveWrk = existsSync('/usr/bin/wrk');

interface WrkResult { requests: number; non2xx: number; socketErrors: number; raw: string }

function wrk(url: string, seconds: number): Promise<WrkResult> {
  return new Promise((resolve, reject) => {
    const p = spawn('wrk', ['-t2', '-c50', `-d${seconds}s`, '--timeout', '10s', url]);
    let out = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (out += d));
    p.on('error', reject);
    p.on('close', () => {
      const requests = Number(/(\d+) requests in/.exec(out)?.[1] ?? NaN);
      const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0);
      const se = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
      const socketErrors = se ? se.slice(1).reduce((n, x) => n + Number(x), 0) : 0;
      resolve({ requests, non2xx, socketErrors, raw: out });
    });
  });
}

async function underLoad(t: { diagnostic(s: string): void }, app: App, what: string, args: (dir: string) => string[], during: (tsgi: RunningProcess, dir: string) => Promise<void> | void, every: number): Promise<void> {
  const name = `${app.kind}: ${what}`;
  const dir = tempDir();
  const port = await freePort();
  const tsgi = await startTsgi(['--http-socket', `127.0.0.1:${port}`, '-p', '2', '--disable-logging', '--wsgi-file', app.file, ...args(dir)], { env: app.env() });
  try {
    const load = wrk(`http://127.0.0.1:${port}/under-load`, DURATION);
    let actions = 0;
    const timer = every > 0 ? setInterval(() => {
      actions++;
      void during(tsgi, dir);
    }, every * 1000) : undefined;
    const r = await load;
    if (timer) clearInterval(timer);
    t.diagnostic(`${name}: ${r.requests} requests in ${DURATION} s, ${r.non2xx} non-2xx, ${r.socketErrors} socket errors${every ? `, ${actions} reloads` : ''}`);
    assert.ok(r.requests > 0, r.raw);
    assert.equal(r.non2xx, 0, `non-2xx answers during ${name}:\n${r.raw}\n${tsgi.output().slice(-3000)}`);
    assert.equal(r.socketErrors, 0, `socket errors during ${name}:\n${r.raw}`);
  } finally {
    assert.equal((await stopProcess(tsgi)).code, 0, tsgi.output().slice(-3000));
  }
}

type Args = (dir: string) => string[];
const none: Args = () => [];

const skip = haveWrk ? false : 'wrk is not installed (scripts/test-all installs it)';

for (const app of APPS) {
  test(`${app.kind} workers, SIGHUP every 2 s under load: no failed request`, { skip }, async (t) => {
    await underLoad(t, app, 'SIGHUP every 2 s', none, (tsgi) => tsgi.kill('SIGHUP'), 2);
  });

  test(`${app.kind} workers, chain reloads under load: no failed request`, { skip }, async (t) => {
    const args: Args = (dir) => ['--master-fifo', join(dir, 'fifo')];
    await underLoad(t, app, 'chain reload every 4 s', args, (_tsgi, dir) => writeFileSync(join(dir, 'fifo'), 'c'), 4);
  });

  test(`${app.kind} workers, max-requests 100 under load: no failed request`, { skip }, async (t) => {
    const args: Args = () => ['--max-requests', '100'];
    await underLoad(t, app, 'max-requests 100', args, () => {}, 0);
  });

  test(`${app.kind} workers, touch-reload under load: no failed request`, { skip }, async (t) => {
    const args: Args = (dir) => {
      writeFileSync(join(dir, 'touch'), '');
      return ['--touch-reload', join(dir, 'touch')];
    };
    let n = 0;
    await underLoad(t, app, 'touch-reload every 4 s', args, (_tsgi, dir) => {
      const when = new Date(Date.now() + 10_000 * ++n);
      utimesSync(join(dir, 'touch'), when, when);
    }, 4);
  });

  test(`${app.kind} workers, SIGTERM under load: every request accepted before the signal is answered; exit 0; nothing left behind`, async (t) => {
    const dir = tempDir();
    const sock = join(dir, 'term.sock');
    const port = await freePort();
    const tsgi = await startTsgi(['--http-socket', `127.0.0.1:${port}`, '-s', sock, '--vacuum', '-p', '2', '--disable-logging', '--wsgi-file', app.file], { env: app.env() });
    const workers = workerPids(tsgi.pid);
    let signalAt = Infinity;
    let ok = 0;
    let refusedAfter = 0;
    const failures: string[] = [];
    const oneRequest = (): Promise<void> =>
      new Promise((resolve) => {
        const c = net.connect(port, '127.0.0.1');
        let connectedAt = Infinity;
        let data = '';
        c.on('connect', () => {
          connectedAt = performance.now();
          c.write('GET /sleep?0.05 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
        });
        c.on('data', (d) => (data += d));
        let counted = false;
        const done = (err?: NodeJS.ErrnoException): void => {
          if (counted) return; // 'error' is followed by 'close'
          counted = true;
          if (/^HTTP\/1\.1 200 /.test(data) && data.endsWith(app.sleepBody)) ok++;
          else if (connectedAt < signalAt) failures.push(`${err?.code ?? 'closed'} after connecting before the signal: ${JSON.stringify(data.slice(0, 80))}`);
          else refusedAfter++;
          resolve();
        };
        c.on('error', (err: NodeJS.ErrnoException) => {
          c.destroy();
          done(err);
        });
        c.on('close', () => done());
      });
    let running = true;
    const clients = Array.from({ length: 20 }, async () => {
      while (running) await oneRequest();
    });
    await new Promise((r) => setTimeout(r, 2000));
    signalAt = performance.now();
    tsgi.kill('SIGTERM');
    const exit = await tsgi.exited;
    await new Promise((r) => setTimeout(r, 300));
    running = false;
    await Promise.all(clients);
    t.diagnostic(`${app.kind}: SIGTERM under load: ${ok} answered, ${refusedAfter} refused after the signal, ${failures.length} lost`);
    assert.deepEqual(failures, [], 'a request accepted before SIGTERM was not answered');
    assert.deepEqual(exit, { code: 0, signal: null });
    assert.ok(ok > 0);
    const alive = workers.filter((p) => existsSync(`/proc/${p}`));
    assert.deepEqual(alive, [], 'no worker outlives the master');
    assert.equal(existsSync(sock), false, 'vacuum removed the socket file');
  });
}
