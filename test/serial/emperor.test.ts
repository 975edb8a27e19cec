/**
 * Emperor mode as a server's admin uses it: a folder of vassal files behind the real nginx, one site per file.
 * Files are added, touched and removed while nginx keeps serving the others; a vassal's master is killed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from '../helpers/paths.js';
import { activatedEnv, workerPids, freePort, httpRequest, sharedVenv, startNginx, stopProcess, tempDir, type RunningProcess } from '../helpers/procs.js';
import { readStats, startEmperor, until, vassal } from '../helpers/emperor.js';

const FIXTURES = join(repoRoot, 'test/fixtures/apps');
const env = activatedEnv(sharedVenv());

/** A vassal file as an admin would write it: its socket and its app found from its own name and folder (%n, %d). */
function pythonVassal(run: string, app: 'plain' | 'flask'): string {
  const lines = ['[uwsgi]', `socket = ${run}/%n.sock`, 'chmod-socket = 666', 'processes = 2'];
  if (app === 'plain') lines.push('wsgi-file = %dapps/emperor_app.py');
  else lines.push('pythonpath = %dapps', 'module = flask_app:application');
  return `${lines.join('\n')}\n`;
}

test('three vassals behind the real nginx: all serve; a 4th file serves within 2 s; a touched file reloads only its vassal; a removed file stops its vassal and removes its socket; a killed master comes back', async (t) => {
  const dir = tempDir('tsgi-emperor-');
  const vassals = join(dir, 'vassals');
  const run = join(dir, 'run');
  mkdirSync(join(vassals, 'apps'), { recursive: true });
  mkdirSync(run);
  copyFileSync(join(FIXTURES, 'emperor_app.py'), join(vassals, 'apps/emperor_app.py'));
  copyFileSync(join(FIXTURES, 'flask_app.py'), join(vassals, 'apps/flask_app.py'));
  // Two Python apps (a plain WSGI app and Flask); the third stands where the TS app will (see the skipped test below).
  writeFileSync(join(vassals, 'alpha.ini'), pythonVassal(run, 'plain'));
  writeFileSync(join(vassals, 'beta.ini'), pythonVassal(run, 'flask'));
  writeFileSync(join(vassals, 'gamma.ini'), pythonVassal(run, 'plain'));
  writeFileSync(join(vassals, 'README.txt'), 'not a vassal: the emperor ignores files that are no config files\n');

  const port = await freePort();
  const sites = ['alpha', 'beta', 'gamma', 'delta'];
  const nginx = await startNginx(
    sites
      .map((s) => `
  server {
    listen 127.0.0.1:${port};
    server_name ${s}.test;
    location / {
      include /etc/nginx/uwsgi_params;
      uwsgi_pass unix:${run}/${s}.sock;
    }
  }`)
      .join('\n'),
    port,
  );
  const get = (site: string, path = '/') => httpRequest(`http://127.0.0.1:${port}${path}`, { headers: { Host: `${site}.test` } });
  const statsPort = await freePort();
  const statsAddr = { host: '127.0.0.1', port: statsPort };
  let emperor: RunningProcess | undefined;
  try {
    emperor = await startEmperor(['--emperor', vassals, '--emperor-stats', `127.0.0.1:${statsPort}`], { env, cwd: dir });
    assert.match(emperor.output(), /emperor: ready: 3 vassal\(s\) serving \(emperor pid/);

    // All serve, each on the socket its file's name gave it.
    const a = await get('alpha');
    assert.equal(a.status, 200);
    assert.match(a.body.toString(), /^alpha\.ini \d+ \/$/);
    assert.equal((await get('beta')).body.toString(), 'flask index q=');
    assert.match((await get('gamma')).body.toString(), /^gamma\.ini \d+ \/$/);
    assert.equal((await get('delta')).status, 502, 'no vassal for delta yet');
    const before = await readStats(statsAddr);
    assert.deepEqual(before.vassals.map((v) => [v.name, v.status]), [['alpha.ini', 'ready'], ['beta.ini', 'ready'], ['gamma.ini', 'ready']]);
    assert.deepEqual(vassal(before, 'alpha.ini')!.sockets, [`${run}/alpha.sock`]);

    // A 4th file: serving within 2 s (the bound), measured through nginx.
    const added = Date.now();
    writeFileSync(join(vassals, 'delta.ini'), pythonVassal(run, 'plain'));
    await until('delta serves through nginx', async () => (await get('delta')).status === 200, 30_000, 25);
    const took = Date.now() - added;
    t.diagnostic(`a new vassal file served through nginx after ${took} ms`);
    assert.ok(took <= 2000, `the 4th vassal served after ${took} ms (the issue asks for 2 s at most)`);

    const masters = async () => {
      const s = await readStats(statsAddr);
      return Object.fromEntries(s.vassals.map((v) => [v.name, v.pid!]));
    };
    const m1 = await masters();
    const workers1 = Object.fromEntries(Object.entries(m1).map(([n, pid]) => [n, workerPids(pid).sort()]));
    for (const [name, w] of Object.entries(workers1)) assert.equal(w.length, 2, `${name} has its 2 workers`);

    // Touching beta reloads beta only, gracefully: same master, new workers; every other pid unchanged.
    const now = new Date();
    utimesSync(join(vassals, 'beta.ini'), now, new Date(now.getTime() + 5000));
    await until('beta has reloaded', async () => {
      const v = vassal(await readStats(statsAddr), 'beta.ini')!;
      return v.reloads === 1 && v.status === 'ready';
    });
    await until("beta's old workers are gone", () => workerPids(m1['beta.ini']!).every((p) => !workers1['beta.ini']!.includes(p)) && workerPids(m1['beta.ini']!).length === 2);
    assert.deepEqual(await masters(), m1, 'no master changed');
    for (const name of ['alpha.ini', 'gamma.ini', 'delta.ini']) {
      assert.deepEqual(workerPids(m1[name]!).sort(), workers1[name], `${name}'s workers are untouched`);
    }
    assert.equal((await get('beta')).body.toString(), 'flask index q=');

    // Removing gamma stops gamma (gracefully) and removes its socket, though its file did not ask for vacuum.
    rmSync(join(vassals, 'gamma.ini'));
    await until('gamma is gone from the table', async () => !vassal(await readStats(statsAddr), 'gamma.ini'));
    await until("gamma's master has exited", () => {
      try {
        process.kill(m1['gamma.ini']!, 0);
        return false;
      } catch {
        return true;
      }
    });
    assert.equal(existsSync(join(run, 'gamma.sock')), false, "gamma's socket was removed");
    assert.equal((await get('gamma')).status, 502);
    assert.match(emperor.output(), /vassal gamma\.ini: file removed; stopping it gracefully/);
    for (const site of ['alpha', 'beta', 'delta']) assert.equal((await get(site)).status, 200, `${site} still serves`);

    // Killing alpha's master: the emperor starts alpha again, and it serves.
    process.kill(m1['alpha.ini']!, 'SIGKILL');
    const back = await until('alpha is back', async () => {
      const v = vassal(await readStats(statsAddr), 'alpha.ini')!;
      return v.status === 'ready' && v.pid !== m1['alpha.ini'] ? v : undefined;
    });
    assert.equal(back.restarts, 1);
    assert.equal(back.last_exit, 'killed by SIGKILL');
    const again = await get('alpha');
    assert.equal(again.status, 200);
    assert.ok(!workers1['alpha.ini']!.includes(Number(again.body.toString().split(' ')[1])), 'served by a new worker');
    assert.deepEqual(workerPids(m1['delta.ini']!).sort(), workers1['delta.ini'], "delta's workers are untouched");
  } finally {
    if (emperor) {
      const exit = await stopProcess(emperor, 'SIGTERM');
      assert.deepEqual(exit, { code: 0, signal: null }, emperor.output());
    }
    await stopProcess(nginx, 'SIGQUIT');
  }
});

test('a TypeScript app as a vassal, beside Python ones', async () => {
  // A TS vassal (served by Node workers: wsgi-file by its extension) between two Python ones, all behind nginx.
  const dir = tempDir('tsgi-emperor-ts-');
  const vassals = join(dir, 'vassals');
  const run = join(dir, 'run');
  mkdirSync(join(vassals, 'apps'), { recursive: true });
  mkdirSync(run);
  copyFileSync(join(FIXTURES, 'emperor_app.py'), join(vassals, 'apps/emperor_app.py'));
  writeFileSync(join(vassals, 'apps/hello.ts'), "export function application(environ: Record<string, unknown>, startResponse: (s: string, h: [string, string][]) => void) {\n  startResponse('200 OK', [['Content-Type', 'text/plain']]);\n  return ['hello from ts'];\n}\n");
  const tsVassal = `[uwsgi]\nsocket = ${run}/%n.sock\nchmod-socket = 666\nwsgi-file = %dapps/hello.ts\n`;
  writeFileSync(join(vassals, 'one.ini'), pythonVassal(run, 'plain'));
  writeFileSync(join(vassals, 'ts.ini'), tsVassal);
  writeFileSync(join(vassals, 'two.ini'), pythonVassal(run, 'plain'));
  const port = await freePort();
  const nginx = await startNginx(['one', 'ts', 'two'].map((s) => `
  server { listen 127.0.0.1:${port}; server_name ${s}.test;
    location / { include /etc/nginx/uwsgi_params; uwsgi_pass unix:${run}/${s}.sock; } }`).join('\n'), port);
  const emperor = await startEmperor(['--emperor', vassals], { env, cwd: dir });
  try {
    assert.match(emperor.output(), /emperor: ready: 3 vassal\(s\) serving/);
    const r = await httpRequest(`http://127.0.0.1:${port}/`, { headers: { Host: 'ts.test' } });
    assert.equal(r.body.toString(), 'hello from ts');
  } finally {
    await stopProcess(emperor);
    await stopProcess(nginx, 'SIGQUIT');
  }
});
