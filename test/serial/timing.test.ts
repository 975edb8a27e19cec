/**
 * Behaviours the issues bound in time ("within 3 s", "within 1 s"): run alone, after the other tests, so that
 * what they measure is tsgi and not the other tests sharing the machine.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { join } from 'node:path';
import { repoRoot } from '../helpers/paths.js';
import { activatedEnv, freePort, sharedVenv, startTsgi, stopProcess } from '../helpers/procs.js';
import { parseResponses, rawHttp } from '../helpers/http-raw.js';

const APP = join(repoRoot, 'test/fixtures/apps/behaviours.py');
const env = activatedEnv(sharedVenv());

async function get(port: number, path: string): Promise<{ status: number; body: string }> {
  const { bytes } = await rawHttp(port, `GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
  const r = parseResponses(bytes)[0];
  return { status: r?.status ?? 0, body: r?.body.toString() ?? '' };
}

test('harakiri 2: a request sleeping past it gets a 502 within 3 s, a log line names it, the next request is served', async () => {
  const port = await freePort();
  const tsgi = await startTsgi(['--http-socket', `127.0.0.1:${port}`, '-p', '1', '--harakiri', '2', '--harakiri-verbose', '--wsgi-file', APP], { env });
  try {
    const started = Date.now();
    const r = await get(port, '/sleep?30');
    const elapsed = Date.now() - started;
    assert.equal(r.status, 502);
    assert.ok(elapsed < 3000, `answered after ${elapsed} ms`);
    await tsgi.waitFor(/harakiri: worker 1 \(pid: \d+\) killed: "GET \/sleep\?30" ran for 2\.\d s \(harakiri 2\)/);
    await tsgi.waitFor(/File ".*behaviours\.py", line \d+ in application/); // harakiri-verbose: the stuck stack
    assert.equal((await get(port, '/after')).body, 'ok /after');
  } finally {
    await stopProcess(tsgi);
  }
});

test('slow clients: 50 connections sending a header byte per second do not delay a normal client (2 workers)', async () => {
  const port = await freePort();
  const tsgi = await startTsgi(['--http', `127.0.0.1:${port}`, '-p', '2', '--wsgi-file', APP], { env });
  const slow: net.Socket[] = [];
  const timers: NodeJS.Timeout[] = [];
  try {
    const request = 'GET /slow HTTP/1.1\r\nHost: x\r\n\r\n';
    for (let i = 0; i < 50; i++) {
      const s = net.connect(port, '127.0.0.1');
      s.on('error', () => {});
      let sent = 0;
      timers.push(setInterval(() => {
        if (sent < request.length) s.write(request[sent++]!);
      }, 1000));
      slow.push(s);
    }
    await new Promise((r) => setTimeout(r, 2500)); // every slow client has started its request
    const started = Date.now();
    const { bytes } = await rawHttp(port, 'GET /normal HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    const elapsed = Date.now() - started;
    assert.equal(parseResponses(bytes)[0]!.body.toString(), 'ok /normal');
    assert.ok(elapsed < 1000, `the normal client waited ${elapsed} ms`);
  } finally {
    for (const t of timers) clearInterval(t);
    for (const s of slow) s.destroy();
    await stopProcess(tsgi);
  }
});
