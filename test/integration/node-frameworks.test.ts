/**
 * A real Express app and a real Hono app (npm packages; the Express app in JavaScript, the Hono app in
 * TypeScript loaded as it is) on Node workers,
 * over tsgi's own HTTP and behind the real nginx with `include uwsgi_params; uwsgi_pass`: routing, JSON,
 * a 5 MB multipart upload, a 50 MB streamed response without the worker's memory growing past 100 MB, 404,
 * HEAD, and an error inside the framework.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import { join } from 'node:path';
import { childPids, freePort, startNginxUwsgi, startTsgi, stopProcess, tempDir, type RunningProcess } from '../helpers/procs.js';
import { cleanEnv, NODE_APPS, peakRss, resetPeakRss } from '../helpers/node-apps.js';

/**
 * Downloads `url` as a slow client would start: nothing is read for the first second (so an app without
 * back-pressure would have its whole body buffered by then), then everything, counted and hashed.
 */
function slowDownload(url: string): Promise<{ status: number; bytes: number; sha: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false }, (res) => {
      res.pause();
      const hash = createHash('sha256');
      let bytes = 0;
      setTimeout(() => {
        res.on('data', (c: Buffer) => {
          bytes += c.length;
          hash.update(c);
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, bytes, sha: hash.digest('hex') }));
        res.resume();
      }, 1000);
    });
    req.on('error', reject);
  });
}

const MB = 1024 * 1024;
const FIFTY_MB_SHA = createHash('sha256');
{
  const x = Buffer.alloc(64 * 1024, 'x');
  for (let i = 0; i < (50 * MB) / x.length; i++) FIFTY_MB_SHA.update(x);
}
const fiftyMbSha = FIFTY_MB_SHA.digest('hex');

for (const [framework, front] of [['express', 'http'], ['hono', 'http'], ['express', 'nginx'], ['hono', 'nginx']] as const) {
  describe(`${framework} ${front === 'nginx' ? 'behind nginx (uwsgi_pass)' : "over tsgi's HTTP"}`, () => {
    let tsgi: RunningProcess;
    let nginx: RunningProcess | undefined;
    let base: string;

    before(async () => {
      const dir = tempDir();
      const app = ['--processes', '2', '--wsgi-file', join(NODE_APPS, framework === 'express' ? 'express_app.mjs' : 'hono_app.ts')];
      if (front === 'http') {
        const port = await freePort();
        tsgi = await startTsgi(['--http-socket', `127.0.0.1:${port}`, ...app], { env: cleanEnv(), cwd: dir });
        base = `http://127.0.0.1:${port}`;
        return;
      }
      const sock = join(dir, 'app.sock');
      tsgi = await startTsgi(['--socket', sock, '--chmod-socket', '666', ...app], { env: cleanEnv(), cwd: dir });
      const port = await freePort();
      nginx = await startNginxUwsgi(sock, port, { http: 'client_max_body_size 20m;' });
      base = `http://127.0.0.1:${port}`;
    });

    after(async () => {
      if (nginx) await stopProcess(nginx, 'SIGQUIT');
      const r = await stopProcess(tsgi);
      assert.equal(r.code, 0, tsgi.output());
    });

    test('GET with a query string', async () => {
      const r = await fetch(`${base}/?q=hello%20world`);
      assert.equal(r.status, 200);
      assert.match(r.headers.get('content-type') ?? '', /text\/html/);
      assert.equal(await r.text(), `${framework} index q=hello world`);
    });

    test('a 50 MB streamed response arrives whole, and no worker grows past 100 MB', async () => {
      const workers = childPids(tsgi.pid);
      for (const pid of workers) resetPeakRss(pid); // from here: the stream, not the loading of the app
      const r = await slowDownload(`${base}/stream?mb=50`);
      assert.equal(r.status, 200);
      assert.equal(r.bytes, 50 * MB);
      assert.equal(r.sha, fiftyMbSha);
      for (const pid of workers) {
        const peak = peakRss(pid);
        assert.ok(peak < 100 * MB, `worker ${pid} peaked at ${(peak / MB).toFixed(1)} MB`);
      }
    });

    test('Response bodies made from text, bytes, an ArrayBuffer, a Blob or nothing arrive exact, with their byte length', { skip: framework === 'hono' ? false : 'Fetch contract only (Hono)' }, async () => {
      const text = 'héllo wörld ✓';
      for (const [kind, expected] of [['text', text], ['bytes', text], ['arraybuffer', text], ['blob', text], ['empty', '']] as const) {
        const r = await fetch(`${base}/bodies/${kind}`);
        assert.equal(r.status, 200, kind);
        const body = Buffer.from(await r.arrayBuffer());
        assert.equal(body.toString('utf8'), expected, kind);
        const length = r.headers.get('content-length');
        if (length !== null) assert.equal(Number(length), Buffer.byteLength(expected), `${kind}: Content-Length`);
        else assert.equal(r.headers.get('transfer-encoding'), 'chunked', `${kind}: framed somehow`);
      }
    });

    test('a route with a parameter answers JSON', async () => {
      const r = await fetch(`${base}/users/42`);
      assert.equal(r.status, 200);
      assert.deepEqual(await r.json(), { id: '42', framework });
    });

    test('a JSON body is parsed and answered 201', async () => {
      const r = await fetch(`${base}/json`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ name: 'Zoë', numbers: [1, 2, 3.5] }) });
      assert.equal(r.status, 201);
      assert.deepEqual(await r.json(), { name: 'Zoë', sum: 6.5 });
    });

    test('a 5 MB multipart upload arrives intact', async () => {
      const data = randomBytes(5 * MB);
      const fd = new FormData();
      fd.append('file', new Blob([data]), 'big.bin');
      const r = await fetch(`${base}/upload`, { method: 'POST', body: fd });
      assert.equal(r.status, 200);
      assert.equal(await r.text(), `big.bin ${data.length} ${createHash('sha256').update(data).digest('hex')}`);
    });

    test('an unknown path is a 404', async () => {
      const r = await fetch(`${base}/no/such/page`);
      assert.equal(r.status, 404);
    });

    test('HEAD gets the headers of GET and no body', async () => {
      const r = await fetch(`${base}/users/7`, { method: 'HEAD' });
      assert.equal(r.status, 200);
      assert.match(r.headers.get('content-type') ?? '', /application\/json/);
      assert.equal((await r.arrayBuffer()).byteLength, 0);
    });

    test("an error in a route is the framework's 500, and the worker serves on", async () => {
      const r = await fetch(`${base}/throw`);
      assert.equal(r.status, 500);
      await tsgi.waitFor(new RegExp(`Error: boom from ${framework}`));
      assert.equal((await fetch(`${base}/users/1`)).status, 200);
    });
  });
}
