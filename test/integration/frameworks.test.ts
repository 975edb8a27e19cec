/**
 * Flask and Django (Debian's packages) served by tsgi, behind the real nginx with `include uwsgi_params;
 * uwsgi_pass unix:...` and over tsgi's own HTTP: what real sites do — query strings, forms, a 5 MB upload,
 * non-ASCII paths, cookies, redirects, 404 and HEAD.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { repoRoot } from '../helpers/paths.js';
import { activatedEnv, freePort, sharedVenv, startNginxUwsgi, startTsgi, stopProcess, tempDir, type RunningProcess } from '../helpers/procs.js';

for (const [framework, front] of [['flask', 'nginx'], ['django', 'nginx'], ['flask', 'http'], ['django', 'http']] as const) {
  describe(`${framework} ${front === 'nginx' ? 'behind nginx' : "over tsgi's HTTP"}`, () => {
    let tsgi: RunningProcess;
    let nginx: RunningProcess | undefined;
    let base: string;

    before(async () => {
      const dir = tempDir();
      const sock = join(dir, 'app.sock');
      const app = ['--processes', '2', '--pythonpath', join(repoRoot, 'test/fixtures/apps'), '--module', `${framework}_app:application`];
      if (front === 'http') {
        const port = await freePort();
        tsgi = await startTsgi(['--http-socket', `127.0.0.1:${port}`, '--buffer-size', '32768', ...app], { env: activatedEnv(sharedVenv()), cwd: dir });
        base = `http://127.0.0.1:${port}`;
        return;
      }
      tsgi = await startTsgi(['--socket', sock, '--chmod-socket', '666', ...app], { env: activatedEnv(sharedVenv()), cwd: dir });
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
      assert.equal(await r.text(), `${framework} index q=hello world`);
    });

    test('POST of an urlencoded form', async () => {
      const r = await fetch(`${base}/form`, { method: 'POST', body: new URLSearchParams({ name: 'Zoë', city: 'Kyōto' }) });
      assert.equal(r.status, 200);
      assert.equal(await r.text(), 'name=Zoë;city=Kyōto');
    });

    test('a 5 MB multipart upload arrives intact', async () => {
      const data = randomBytes(5 * 1024 * 1024);
      const fd = new FormData();
      fd.append('file', new Blob([data]), 'big.bin');
      const r = await fetch(`${base}/upload`, { method: 'POST', body: fd });
      assert.equal(r.status, 200);
      assert.equal(await r.text(), `big.bin ${data.length} ${createHash('sha256').update(data).digest('hex')}`);
    });

    test('a non-ASCII path reaches the right view', async () => {
      const r = await fetch(`${base}/café/日本`);
      assert.equal(r.status, 200);
      assert.equal(await r.text(), 'unicode path ok');
    });

    test('cookies are set and read back', async () => {
      const first = await fetch(`${base}/cookie`);
      assert.equal(await first.text(), 'seen=none');
      const setCookie = first.headers.get('set-cookie') ?? '';
      assert.match(setCookie, /visit=yes/);
      const second = await fetch(`${base}/cookie`, { headers: { cookie: 'visit=yes' } });
      assert.equal(await second.text(), 'seen=yes');
    });

    test('a redirect keeps its status and Location', async () => {
      const r = await fetch(`${base}/go`, { redirect: 'manual' });
      assert.equal(r.status, 302);
      assert.match(r.headers.get('location') ?? '', /\/\?q=redirected$/);
    });

    test('an unknown path is a 404', async () => {
      const r = await fetch(`${base}/no/such/page`);
      assert.equal(r.status, 404);
    });

    test('HEAD gets the headers of GET and no body', async () => {
      const r = await fetch(`${base}/?q=x`, { method: 'HEAD' });
      assert.equal(r.status, 200);
      assert.match(r.headers.get('content-type') ?? '', /text\/html/);
      assert.equal((await r.arrayBuffer()).byteLength, 0);
    });
  });
}
