/**
 * uWSGI's internal routing (docs/routing.md): the same rules and the same requests against the real uWSGI 2.0.21
 * (Debian's, with its router_redirect, router_rewrite and router_basicauth plugins) and against tsgi, over HTTP
 * (tsgi's router) and over a uwsgi Unix socket (as nginx talks to it). What uWSGI answers is the expectation:
 * status line, Location, WWW-Authenticate, Content-Type, the X-* headers the rules add or remove, the body, and
 * what the app saw (PATH_INFO after a rewrite, REMOTE_USER after basicauth, ...); `log:` lines and donotlog in the
 * log. A rule tsgi cannot run, or a bad regular expression, stops it at start with one line naming file:line.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot, tsgiBin } from '../helpers/paths.js';
import {
  activatedEnv, freePort, sharedVenv, startProcess, startTsgi, stopProcess, tempDir, type RunningProcess,
} from '../helpers/procs.js';
import { getVars, uwsgiRequest } from '../helpers/uwsgi-client.js';

const APP = join(repoRoot, 'test/fixtures/apps/routing_app.py');
const PLUGINS = 'python3,router_redirect,router_rewrite,router_basicauth';
const haveUwsgi = spawnSync('uwsgi', ['--plugin', PLUGINS, '--version']).status === 0;

function rules(dir: string): string {
  return `[uwsgi]
route = ^/old redirect-permanent:/new
route = ^/r302/(.*) redirect:/target/$1?x=\${QUERY_STRING}
route = ^/r301 redirect-301:/new301
route-run = addvar:MYVAR=v-\${REQUEST_METHOD}
route = ^/hdr addheader:X-Frame-Options: DENY
route = ^/hdr delheader:x-app
route = ^/rw/(.*)$ rewrite:/rewritten/$1?a=1
route = ^/rwl/(.*)$ rewrite-last:/last/$1
route = ^/last/ addheader:X-Never: 1
route = ^/auth basicauth:Restricted,user:pass
route = ^/nauth basicauth-next:Second,a:b
route = ^/nauth basicauth:Second,c:d
route = ^/health$ return:200
route = ^/teapot return:418
route = ^/brk break:403 Forbidden
route = ^/logme/(.) log:hey i am printing $1 \${REQUEST_URI}
route = ^/logme/(.) logvar:item=$1
route = ^/dnl donotlog:
route-if = equal:\${HTTP_HOST};example.com redirect-permanent:https://www.example.com\${REQUEST_URI}
route-host = ^other\\.com$ break:403 Forbidden
route-uri = ^/uri/(.*) setpathinfo:/from-uri/$1
route-qs = ^k=(.*) addheader:X-Qs: $1
route-user-agent = ^Bot(.*) addheader:X-Bot: $1
route-referer = ^http://ref addheader:X-Ref: 1
route-remote-addr = ^127\\.0\\.0\\.1$ addheader:X-Local: 1
route-if = regexp:\${REQUEST_URI};^/(.)oo addheader:X-C: $1
route-if = contains:\${HTTP_USER_AGENT};curl addheader:X-Curl: yes
route-if = startswith:\${PATH_INFO};/sw addheader:X-SW: yes
route-if = endswith:\${PATH_INFO};.php rewrite:/index.php
route-if = ishigher:\${CONTENT_LENGTH};10 break:413 Too Big
route-if = isfile:${dir}\${PATH_INFO} addheader:X-IsFile: yes
route-if = isdir:${dir}\${PATH_INFO} addheader:X-IsDir: yes
route-if-not = empty:\${HTTP_X_GO} goto:golabel
route = ^/x addheader:X-NotGoto: 1
route-label = golabel
route = ^/x addheader:X-After: 1
route = ^/ck addheader:X-Cookie: \${cookie[sid]} \${qs[a]} \${hex[PATH_INFO]} \${base64[PATH_INFO]}
route = ^/sm setmethod:DELETE
route = ^/su seturi:/changed-uri
route = ^/ssn setscriptname:/sn
route = ^/sdr setdocroot:/docroot
route = ^/last last:
route = ^/last addheader:X-AfterLast: 1
route = ^/dol/(a)(b)?(c) addheader:X-D: [$1][$2][$3][$4] $ $$ x$
route = ^/enc/(.*) rewrite:/dec/$1
`;
}

interface Case {
  path: string;
  headers?: Record<string, string>;
  method?: string;
  body?: string;
}

const CASES: Case[] = [
  { path: '/old' }, { path: '/r302/abc?q=1' }, { path: '/r301' }, { path: '/hdr' }, { path: '/rw/foo?b=2' }, { path: '/rwl/z' },
  { path: '/auth' }, { path: '/auth', headers: { Authorization: `Basic ${Buffer.from('user:pass').toString('base64')}` } },
  { path: '/auth', headers: { Authorization: `Basic ${Buffer.from('user:nope').toString('base64')}` } },
  { path: '/nauth', headers: { Authorization: `Basic ${Buffer.from('a:b').toString('base64')}` } },
  { path: '/nauth', headers: { Authorization: `Basic ${Buffer.from('c:d').toString('base64')}` } },
  { path: '/nauth', headers: { Authorization: `Basic ${Buffer.from('e:f').toString('base64')}` } },
  { path: '/health' }, { path: '/teapot' }, { path: '/brk' }, { path: '/logme/a' }, { path: '/dnl' },
  { path: '/h?z', headers: { Host: 'example.com' } }, { path: '/h', headers: { Host: 'other.com' } },
  { path: '/uri/zz' }, { path: '/?k=vv' }, { path: '/ua', headers: { 'User-Agent': 'BotX' } },
  { path: '/ref', headers: { Referer: 'http://ref/page' } }, { path: '/foo' }, { path: '/soo/x' },
  { path: '/ua2', headers: { 'User-Agent': 'curl/8' } }, { path: '/sw' }, { path: '/a.php?x=1' },
  { path: '/post', method: 'POST', body: 'a'.repeat(20) }, { path: '/post', method: 'POST', body: 'abc' },
  { path: '/file.txt' }, { path: '/sub' }, { path: '/x' }, { path: '/x', headers: { 'X-Go': '1' } },
  { path: '/ck?a=7', headers: { Cookie: 'o=1; sid=abc' } }, { path: '/sm' }, { path: '/su' }, { path: '/ssn' }, { path: '/sdr' },
  { path: '/last' }, { path: '/dol/ac' }, { path: '/enc/a%20b%2Fc?x=1' },
  // A static file: the rules run first (X-Local), the file is sent with their headers.
  { path: '/st/file.txt' },
];

interface Answer {
  statusLine: string;
  headers: Array<[string, string]>;
  body: string;
}

/** What is compared: the status line, the headers routing is about, the body. */
function summary(statusLine: string, headers: Array<[string, string]>, body: Buffer): Answer {
  const kept = headers.filter(([n]) => /^(location|www-authenticate|content-type|x-(?!tsgi))/i.test(n)).map(([n, v]) => [n.toLowerCase(), v] as [string, string]);
  return { statusLine: statusLine.replace(/^HTTP\/1\.[01] /, ''), headers: kept, body: body.toString('latin1') };
}

async function overHttp(port: number, c: Case): Promise<Answer> {
  const http = await import('node:http');
  return new Promise((resolve, reject) => {
    const req = http.request(`http://127.0.0.1:${port}${c.path}`, {
      method: c.method ?? 'GET', agent: false, headers: { Host: 'test.local', ...c.headers },
    }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (d: Buffer) => chunks.push(d));
      res.on('end', () => {
        const pairs: Array<[string, string]> = [];
        for (let i = 0; i < res.rawHeaders.length; i += 2) pairs.push([res.rawHeaders[i]!, res.rawHeaders[i + 1]!]);
        resolve(summary(`${res.statusCode} ${res.statusMessage}`, pairs, Buffer.concat(chunks)));
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(c.body);
  });
}

async function overUwsgi(sock: string, c: Case): Promise<Answer> {
  const extra: Record<string, string> = { HTTP_HOST: 'test.local', REQUEST_METHOD: c.method ?? 'GET' };
  for (const [k, v] of Object.entries(c.headers ?? {})) extra[`HTTP_${k.toUpperCase().replace(/-/g, '_')}`] = v;
  const r = await uwsgiRequest(sock, getVars(c.path, extra), c.body === undefined ? undefined : Buffer.from(c.body));
  return summary(r.statusLine, r.headers, r.body);
}

function cleanEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, PYTHONHOME: '' };
  for (const k of Object.keys(env)) if (k.startsWith('UWSGI_') || k.startsWith('TSGI_')) delete env[k];
  return env;
}

describe('internal routing, compared with the real uWSGI', { skip: haveUwsgi ? false : 'uwsgi with its router plugins is not installed' }, () => {
  let dir: string;
  let uwsgi: RunningProcess;
  let tsgi: RunningProcess;
  let uPort: number;
  let tPort: number;
  let sock: string;
  const expected = new Map<string, Answer>();

  before(async () => {
    dir = tempDir();
    mkdirSync(join(dir, 'sub'));
    writeFileSync(join(dir, 'file.txt'), 'x');
    writeFileSync(join(dir, 'routes.ini'), rules(dir));
    uPort = await freePort();
    tPort = await freePort();
    sock = join(dir, 'tsgi.sock');
    const common = ['--wsgi-file', APP, '--ini', join(dir, 'routes.ini'), '--master', '--processes', '1', '--logformat', 'LF %(method) %(uri) %(status) item=%(item)', '--die-on-term',
      '--static-map', `/st=${dir}`];
    uwsgi = startProcess('uwsgi', ['--plugin', PLUGINS, '--http-socket', `127.0.0.1:${uPort}`, ...common], { env: cleanEnv(), cwd: dir });
    await uwsgi.waitFor(/spawned uWSGI worker 1/);
    tsgi = await startTsgi(['--plugin', 'python3', '--http-socket', `127.0.0.1:${tPort}`, '--socket', sock, ...common],
      { env: activatedEnv(sharedVenv()), cwd: dir });
    for (const c of CASES) expected.set(key(c), await overHttp(uPort, c));
  });

  after(async () => {
    await Promise.all([uwsgi && stopProcess(uwsgi), tsgi && stopProcess(tsgi)]);
  });

  const key = (c: Case): string => `${c.method ?? 'GET'} ${c.path} ${JSON.stringify(c.headers ?? {})}${c.body ? ` body ${c.body.length}` : ''}`;

  test('uWSGI answers as the rules say (the expectations are not vacuous)', () => {
    const get = (path: string, headers?: Record<string, string>): Answer => expected.get(key({ path, headers }))!;
    assert.equal(get('/old').statusLine, '301 Moved Permanently');
    assert.deepEqual(get('/old').headers.find(([n]) => n === 'location'), ['location', '/new']);
    assert.match(get('/rw/foo?b=2').body, /"PATH_INFO": "\/rewritten\/foo"/);
    assert.equal(get('/auth').statusLine.slice(0, 3), '401');
    assert.deepEqual(get('/x', { 'X-Go': '1' }).headers.filter(([n]) => n.startsWith('x-') && n !== 'x-app'), [['x-local', '1'], ['x-after', '1']]);
  });

  for (const front of ['HTTP', 'uwsgi socket'] as const) {
    test(`tsgi over ${front === 'HTTP' ? 'HTTP (the router)' : 'a uwsgi Unix socket'} answers every request as uWSGI does`, async () => {
      for (const c of CASES) {
        const got = front === 'HTTP' ? await overHttp(tPort, c) : await overUwsgi(sock, c);
        assert.deepEqual(got, expected.get(key(c)), `${front}: ${key(c)}`);
      }
    });
  }

  test('log: writes its line, logvar reaches log-format, donotlog keeps the request out of the log (as in uWSGI)', async () => {
    await new Promise((r) => setTimeout(r, 300));
    for (const [name, out] of [['uwsgi', uwsgi.output()], ['tsgi', tsgi.output()]] as const) {
      assert.match(out, /^hey i am printing a \/logme\/a$/m, name);
      assert.match(out, /^LF GET \/logme\/a 200 item=a$/m, name);
      assert.match(out, /^LF GET \/old 301 item=-$/m, name);
      assert.doesNotMatch(out, /LF GET \/dnl/, name);
    }
  });
});

describe('routing rules tsgi cannot run stop it at start', () => {
  const run = (ini: string): { status: number | null; stderr: string; file: string } => {
    const dir = tempDir();
    const file = join(dir, 'bad.ini');
    writeFileSync(file, ini);
    const r = spawnSync(tsgiBin, ['--ini', file], { encoding: 'utf8', env: cleanEnv(), timeout: 30_000 });
    return { status: r.status, stderr: r.stderr, file };
  };

  test('an action tsgi does not implement: one line naming file:line, the option and the action', () => {
    const { status, stderr, file } = run(`[uwsgi]\nhttp-socket = 127.0.0.1:1\nwsgi-file = ${APP}\nroute = ^/x addheader:A: b\nroute = ^/img memcached:addr=127.0.0.1:11211,key=\${REQUEST_URI}\n`);
    assert.equal(status, 1);
    const lines = stderr.trim().split('\n');
    assert.equal(lines.length, 1, stderr);
    assert.match(lines[0]!, new RegExp(`${file.replace(/[.]/g, '\\.')}:5: option 'route': route action 'memcached' \\(uWSGI's router_memcached plugin\\) is not supported`));
  });

  test('a bad regular expression: one line naming file:line and the expression', () => {
    const { status, stderr, file } = run(`[uwsgi]\nhttp-socket = 127.0.0.1:1\nwsgi-file = ${APP}\nroute-host = ^(www\\.example\\.com redirect:/x\n`);
    assert.equal(status, 1);
    const lines = stderr.trim().split('\n');
    assert.equal(lines.length, 1, stderr);
    assert.match(lines[0]!, new RegExp(`${file.replace(/[.]/g, '\\.')}:4: option 'route-host': bad regular expression '\\^\\(www`));
  });

  test('a Node app with routes: one line saying routing is for Python apps', () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'app.mjs'), 'export function application(e, s) { s("200 OK", []); return ["hi"]; }\n');
    const file = join(dir, 'node.ini');
    writeFileSync(file, `[uwsgi]\nhttp-socket = 127.0.0.1:1\nwsgi-file = ${join(dir, 'app.mjs')}\nroute = ^/old redirect:/new\n`);
    const r = spawnSync(tsgiBin, ['--ini', file], { encoding: 'utf8', env: cleanEnv(), timeout: 30_000 });
    assert.equal(r.status, 1);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.match(r.stderr, /node\.ini:4 route = \^\/old redirect:\/new: internal routing .* is implemented for Python apps only/);
  });

  test('an unknown condition and a goto to no label are refused the same way', () => {
    let r = run(`[uwsgi]\nhttp-socket = 127.0.0.1:1\nwsgi-file = ${APP}\nroute-if = lord:legion log:x\n`);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /bad\.ini:4: option 'route-if': route condition 'lord' is not supported by tsgi/);
    r = run(`[uwsgi]\nhttp-socket = 127.0.0.1:1\nwsgi-file = ${APP}\nroute-label = back\nroute = ^/ goto:back\n`);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /bad\.ini:5: option 'route': goto: route-label 'back' comes before this rule; goto only jumps forward/);
  });
});
