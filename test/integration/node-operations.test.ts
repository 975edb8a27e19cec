/**
 * The master's operations on Node workers: max-requests (the worker recycles itself), harakiri (read from
 * the worker's scoreboard record, written in bulk once a second) and the stats server's per-worker counts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { join } from 'node:path';
import { cleanEnv, NODE_APPS } from '../helpers/node-apps.js';
import { childPids, startTsgi, stopProcess, tempDir } from '../helpers/procs.js';
import { getVars, rawExchange, uwsgiPacket, uwsgiRequest } from '../helpers/uwsgi-client.js';

const APP = join(NODE_APPS, 'behaviours.mjs');
const env = cleanEnv();

test('max-requests: a Node worker recycles itself after N requests and a fresh one serves on', async () => {
  const dir = tempDir();
  const sock = join(dir, 'r.sock');
  const tsgi = await startTsgi(['-s', sock, '--wsgi-file', APP, '--max-requests', '3'], { env });
  try {
    const pids = new Set<string>();
    for (let i = 0; i < 7; i++) pids.add((await uwsgiRequest(sock, getVars('/pid'))).body.toString());
    await tsgi.waitFor(/recycling after 3 requests \(max-requests\)[\s\S]*recycled itself \(max-requests\); respawning/);
    assert.ok(pids.size >= 2, `requests were served by ${[...pids].join(', ')}`);
  } finally {
    assert.equal((await stopProcess(tsgi)).code, 0);
  }
});

test('harakiri: a Node worker whose request never ends is killed and replaced; -verbose says what was running', async () => {
  const dir = tempDir();
  const sock = join(dir, 'h.sock');
  const tsgi = await startTsgi(['-s', sock, '--wsgi-file', APP, '--harakiri', '2', '--harakiri-verbose'], { env });
  try {
    const [first] = childPids(tsgi.pid);
    const cut = await rawExchange(sock, uwsgiPacket(getVars('/never')), { timeoutMs: 30_000 });
    assert.equal(cut.length, 0, 'the request was cut by the kill');
    await tsgi.waitFor(new RegExp(`harakiri: worker 1 \\(pid: ${first}\\) killed: "GET /never" ran for \\d+\\.\\d s \\(harakiri 2\\)`));
    await tsgi.waitFor(/harakiri: 1 request\(s\) in progress, the oldest GET \/never since/);
    const r = await uwsgiRequest(sock, getVars('/pid'));
    assert.notEqual(r.body.toString(), String(first), 'a new worker serves');
  } finally {
    await stopProcess(tsgi);
  }
});

test("the stats server counts a Node worker's requests (written to the scoreboard in bulk)", async () => {
  const dir = tempDir();
  const sock = join(dir, 's.sock');
  const stats = join(dir, 'stats.sock');
  const tsgi = await startTsgi(['-s', sock, '-p', '2', '--wsgi-file', APP, '--stats', stats], { env });
  try {
    for (let i = 0; i < 10; i++) await uwsgiRequest(sock, getVars('/hello'));
    const read = (): Promise<{ workers: Array<{ pid: number; requests: number }> }> => new Promise((resolve, reject) => {
      let text = '';
      const c = net.connect(stats);
      c.on('data', (d: Buffer) => (text += d));
      c.on('end', () => resolve(JSON.parse(text)));
      c.on('error', reject);
    });
    let total = 0;
    for (let i = 0; i < 100 && total < 10; i++) {
      total = (await read()).workers.reduce((n, w) => n + w.requests, 0);
      if (total < 10) await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(total, 10);
    const pids = new Set(childPids(tsgi.pid));
    assert.ok((await read()).workers.every((w) => pids.has(w.pid)), 'every worker is listed with its pid');
  } finally {
    await stopProcess(tsgi);
  }
});
