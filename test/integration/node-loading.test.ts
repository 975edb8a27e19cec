/**
 * Which worker serves an app, and how a Node app is loaded: the README's hello example (wsgi.py and wsgi.ts
 * side by side), `-w NAME` finding NAME.ts/.mts/.js/.mjs, `wsgi-file` by extension, the contract told by what
 * the module exports (or by app-contract), and apps that cannot be loaded.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { cleanEnv } from '../helpers/node-apps.js';
import { repoRoot } from '../helpers/paths.js';
import { freePort, httpRequest, startNginxUwsgi, startProcess, startTsgi, stopProcess, tempDir, waitForPort, writeFiles, type RunningProcess } from '../helpers/procs.js';
import { getVars, uwsgiRequest } from '../helpers/uwsgi-client.js';

const HELLO = join(repoRoot, 'examples/hello');
const HELLO_HTML = "<h1 style='color:blue'>Hello There!</h1>";

async function stopped(p: RunningProcess): Promise<void> {
  const r = await stopProcess(p);
  assert.equal(r.code, 0, p.output());
}

test("the README's hello example: -w wsgi beside wsgi.py and wsgi.ts asks which, in one line", async () => {
  const port = await freePort();
  const p = await startTsgi(['--socket', `127.0.0.1:${port}`, '--protocol=http', '-w', 'wsgi'], { cwd: HELLO, env: cleanEnv(), ready: false });
  assert.equal((await p.exited).code, 1);
  assert.equal(p.output(), `tsgi: module wsgi: both wsgi.py and wsgi.ts could be the app; set plugin = python or plugin = node\n`);
});

test('examples/hello/wsgi.ts over --protocol=http says Hello There!', async () => {
  const port = await freePort();
  const p = await startTsgi(['--socket', `127.0.0.1:${port}`, '--protocol=http', '-w', 'wsgi', '--plugin', 'node'], { cwd: HELLO, env: cleanEnv() });
  try {
    const r = await httpRequest(`http://127.0.0.1:${port}/`);
    assert.equal(r.status, 200);
    assert.equal(r.headers['content-type'], 'text/html');
    assert.equal(r.body.toString(), HELLO_HTML);
    assert.match(p.output(), /node v20\.\d+\.\d+ \(.*examples\/hello\/wsgi\.ts\)/);
  } finally {
    await stopped(p);
  }
});

test('examples/hello/wsgi.ts behind the real nginx (uwsgi_pass) says Hello There!', async () => {
  const dir = tempDir();
  const sock = join(dir, 'hello.sock');
  const p = await startTsgi(['--socket', sock, '--chmod-socket', '666', '--wsgi-file', join(HELLO, 'wsgi.ts'), '--processes', '2'], { env: cleanEnv() });
  const port = await freePort();
  copyFileSync('/etc/nginx/uwsgi_params', join(dir, 'uwsgi_params'));
  const nginx = await startNginxUwsgi(sock, port, { params: join(dir, 'uwsgi_params') });
  try {
    const r = await httpRequest(`http://127.0.0.1:${port}/`);
    assert.equal(r.status, 200);
    assert.equal(r.body.toString(), HELLO_HTML);
    await p.waitFor(/\[pid: \d+\|app: 0\|req: 1\/1\] 127\.0\.0\.1 \(\) \{\d+ vars in \d+ bytes\} \[.+\] GET \/ => generated 40 bytes in \d+ msecs \(HTTP\/1\.1 200\)/);
  } finally {
    await stopProcess(nginx, 'SIGQUIT');
    await stopped(p);
  }
});

test('the same directory with plugin = python serves wsgi.py', async () => {
  const port = await freePort();
  const p = await startTsgi(['--http-socket', `127.0.0.1:${port}`, '-w', 'wsgi', '--plugin', 'python3'], { cwd: HELLO, env: cleanEnv() });
  try {
    const r = await httpRequest(`http://127.0.0.1:${port}/`);
    assert.equal(r.body.toString(), HELLO_HTML);
    assert.match(p.output(), /python \/\S+python3/);
  } finally {
    await stopped(p);
  }
});

test('-w NAME finds NAME.ts, .mts, .js or .mjs; the contract is told by the exports', async () => {
  const cases: Array<[Record<string, string>, string, string]> = [
    [{ 'site.mts': 'export function application(e: Record<string, unknown>, s: (a: string, b: [string, string][]) => void) {\n  s("200 OK", []);\n  return ["wsgi from .mts"];\n}\n' }, 'site', 'wsgi from .mts'],
    [{ 'site.mjs': 'export default { fetch: (req) => new Response(`fetch default ${new URL(req.url).pathname}`) };\n' }, 'site', 'fetch default /path'],
    [{ 'site.js': 'export function fetch(req) { return new Response("named fetch export"); }\n', 'package.json': '{"type":"module"}' }, 'site', 'named fetch export'],
    [{ 'site.ts': 'import { Hono } from "hono";\nconst app = new Hono();\napp.get("/path", (c) => c.text("hono as " + c.req.method));\nexport default app;\n' }, 'site', 'hono as GET'],
    [{ 'srv.mjs': 'import express from "express";\nexport const web = express();\nweb.get("/path", (req, res) => res.send("express as web"));\n' }, 'srv:web', 'express as web'],
    // A .ts file with no "type": "module" around it is compiled as CommonJS: its exports are found all the same.
    [{ 'cjs.ts': 'export const application = (e: unknown, s: (a: string, b: [string, string][]) => void) => {\n  s("200 OK", []);\n  return ["from a CommonJS-compiled .ts"];\n};\n' }, 'cjs', 'from a CommonJS-compiled .ts'],
  ];
  for (const [files, module, body] of cases) {
    const dir = tempDir();
    writeFiles(dir, files);
    // 'hono' and 'express' come from the repository's node_modules, as an app's own node_modules.
    symlinkSync(join(repoRoot, 'node_modules'), join(dir, 'node_modules'));
    const sock = join(dir, 's.sock');
    const p = await startTsgi(['-s', sock, '-w', module], { cwd: dir, env: cleanEnv(), ready: false });
    try {
      await p.waitFor(/ready: 1 worker|exiting with status/);
      assert.match(p.output(), /ready: 1 worker/, p.output());
      const r = await uwsgiRequest(sock, getVars('/path'));
      assert.equal(r.body.toString(), body, `${module}: ${p.output()}`);
    } finally {
      await stopProcess(p);
    }
  }
});

test('a plain function as default export asks for app-contract; with it, it is served', async () => {
  const dir = tempDir();
  writeFiles(dir, { 'handler.mjs': 'export default (req, res) => res.end(`listener ${req.url}`);\n' });
  const sock = join(dir, 's.sock');
  const p = await startTsgi(['-s', sock, '--wsgi-file', 'handler.mjs'], { cwd: dir, env: cleanEnv(), ready: false });
  assert.equal((await p.exited).code, 1);
  assert.match(p.output(), /cannot load the app handler\.mjs:\nAppLoadError: handler\.mjs: its default export is a plain function, which could be \(environ, start_response\) or \(req, res\): say which with app-contract = wsgi, listener or fetch/);
  const ok = await startTsgi(['-s', sock, '--wsgi-file', 'handler.mjs', '--app-contract', 'listener'], { cwd: dir, env: cleanEnv() });
  try {
    assert.equal((await uwsgiRequest(sock, getVars('/x?y'))).body.toString(), 'listener /x?y');
  } finally {
    await stopped(ok);
  }
});

test('an app that fails to import stops the start with its error and exit status 1', async () => {
  const dir = tempDir();
  writeFiles(dir, { 'broken.ts': 'import "no-such-package-anywhere";\nexport const application = () => [];\n', 'package.json': '{"type":"module"}' });
  const p = await startTsgi(['-s', join(dir, 's.sock'), '-p', '3', '-w', 'broken'], { cwd: dir, env: cleanEnv(), ready: false });
  assert.equal((await p.exited).code, 1);
  assert.match(p.output(), /cannot load the app broken:application:\n.*Cannot find (package|module) 'no-such-package-anywhere'/);
  assert.match(p.output(), /the app could not be loaded \(traceback above\); stopping/);
});

test('a TypeScript syntax error stops the start with the file and line', async () => {
  const dir = tempDir();
  writeFiles(dir, { 'bad.ts': 'export const application = (: number) => 1;\n', 'package.json': '{"type":"module"}' });
  const p = await startTsgi(['-s', join(dir, 's.sock'), '--wsgi-file', 'bad.ts'], { cwd: dir, env: cleanEnv(), ready: false });
  assert.equal((await p.exited).code, 1);
  assert.match(p.output(), /cannot load the app bad\.ts:\n[\s\S]*bad\.ts:1:\d+/);
});

test('plugin = node with no Node file, and two Node files, are one-line errors', async () => {
  const dir = tempDir();
  writeFiles(dir, { 'app.py': '' });
  const none = await startTsgi(['-s', join(dir, 's.sock'), '-w', 'app', '--plugin', 'node'], { cwd: dir, env: cleanEnv(), ready: false });
  assert.equal((await none.exited).code, 1);
  assert.equal(none.output(), `tsgi: module app: none of app.ts, app.mts, app.js, app.mjs is in ${dir} (plugin = node)\n`);
  writeFiles(dir, { 'two.ts': '', 'two.js': '' });
  const two = await startTsgi(['-s', join(dir, 's.sock'), '-w', 'two'], { cwd: dir, env: cleanEnv(), ready: false });
  assert.equal((await two.exited).code, 1);
  assert.equal(two.output(), `tsgi: module two: two.ts and two.js are both in ${dir}; say which with wsgi-file = FILE\n`);
  const plugin = await startTsgi(['-s', join(dir, 's.sock'), '-w', 'app', '--plugin', 'perl'], { cwd: dir, env: cleanEnv(), ready: false });
  assert.equal((await plugin.exited).code, 1);
  assert.match(plugin.output(), /plugin 'perl' is not available in tsgi \(python and node are built in\)/);
});

test('examples/hello/wsgi.ts behind tsgi-proxy says Hello There! (plain uwsgi: the keep-alive var is ignored)', async () => {
  const dir = tempDir();
  const sock = join(dir, 'hello.sock');
  const p = await startTsgi(['--socket', sock, '--chmod-socket', '666', '--wsgi-file', join(HELLO, 'wsgi.ts')], { env: cleanEnv() });
  const port = await freePort();
  writeFiles(dir, { 'nginx.conf': `events {}\nhttp {\n  server {\n    listen ${port};\n    location / {\n      include uwsgi_params;\n      uwsgi_pass unix:${sock};\n    }\n  }\n}\n` });
  const proxy = startProcess(process.execPath, [join(repoRoot, 'bin/tsgi-proxy'), '-p', dir, '-c', join(dir, 'nginx.conf'), '-g', 'daemon off;']);
  try {
    await waitForPort(port);
    for (let i = 0; i < 5; i++) {
      const r = await httpRequest(`http://127.0.0.1:${port}/`);
      assert.equal(r.status, 200);
      assert.equal(r.body.toString(), HELLO_HTML);
    }
  } finally {
    await stopProcess(proxy, 'SIGQUIT');
    await stopped(p);
  }
});
