/**
 * auth_basic, auth_basic_user_file and satisfy next to the real nginx (Debian's 1.22.1): hashes made by
 * `openssl passwd` ($apr1$, $1$, $5$, $6$ with rounds=) and by hand ({PLAIN}, {SHA}, {SSHA}), the same requests to both, the same
 * status and WWW-Authenticate; allow/deny with satisfy all|any; a missing user file; a file changed while
 * running (read per request); and the formats tsgi-proxy cannot check (bcrypt, DES) refused at
 * `-t` with the user file's name and line. Without nginx/root/openssl the parts that need them are skipped.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { have, proxySync, rawRequest, tempDir, startSideBySide, type Proc } from './helpers.js';

const withNginx = have('/usr/sbin/nginx') && process.getuid?.() === 0;
const withOpenssl = have('openssl');

function opensslPasswd(kind: string, salt: string, pw: string): string {
  return spawnSync('openssl', ['passwd', kind, '-salt', salt, pw], { encoding: 'latin1' }).stdout.trim();
}

function users(): string {
  const sha = createHash('sha1').update('pw3').digest('base64');
  const salt = Buffer.from('s4lt');
  const ssha = Buffer.concat([createHash('sha1').update('pw4').update(salt).digest(), salt]).toString('base64');
  return [
    '# users',
    `apr:${opensslPasswd('-apr1', 'abcdefgh', 'pw1')}`,
    `md5:${opensslPasswd('-1', 'xy', 'pw2')}:a comment`,
    `sha:{SHA}${sha}`,
    `ssha:{SSHA}${ssha}`,
    'plain:{PLAIN}pw5',
    `s5:${opensslPasswd('-5', 'saltsalt', 'pw6')}`,
    `s6:${opensslPasswd('-6', 'rounds=1500$0123456789abcdef', 'pw7')}`,
    '',
  ].join('\n');
}

const conf = (dir: string, port: number): string => `events {}
http {
  access_log off;
  default_type text/plain;
  server {
    listen 127.0.0.1:${port};
    auth_basic "Server Zone";
    auth_basic_user_file ${dir}/users;
    location /f { alias ${dir}/f.txt; }
    location /realm { auth_basic "R $arg_r"; alias ${dir}/f.txt; }
    location /off { auth_basic off; alias ${dir}/f.txt; }
    location /deny { deny all; alias ${dir}/f.txt; }
    location /any { satisfy any; deny all; alias ${dir}/f.txt; }
    location /anyok { satisfy any; allow all; alias ${dir}/f.txt; }
    location /missing { auth_basic_user_file ${dir}/nofile; alias ${dir}/f.txt; }
    location /ret { return 200 "ret $remote_user"; }
    location /user { alias ${dir}/f.txt; add_header X-U $remote_user; }
  }
}
`;

const b64 = (s: string): string => Buffer.from(s).toString('base64');
const CASES: Array<[string, string]> = [
  ['/f', ''], ['/f', 'apr:pw1'], ['/f', 'apr:bad'], ['/f', 'md5:pw2'], ['/f', 'md5:pw1'], ['/f', 'sha:pw3'], ['/f', 'sha:x'],
  ['/f', 'ssha:pw4'], ['/f', 'ssha:pw3'], ['/f', 'plain:pw5'], ['/f', 'plain:pw'], ['/f', 's5:pw6'], ['/f', 's5:pw7'], ['/f', 's6:pw7'], ['/f', 's6:pw6'], ['/f', 'nobody:pw1'], ['/f', '#raw:Basic !!!'],
  ['/f', '#raw:Bearer abc'], ['/f', '#raw:Basic ' + b64('nocolon')], ['/realm?r=x', ''], ['/off', ''], ['/deny', ''], ['/deny', 'apr:pw1'],
  ['/any', ''], ['/any', 'apr:pw1'], ['/any', 'apr:bad'], ['/anyok', ''], ['/missing', ''], ['/missing', 'apr:pw1'], ['/ret', ''],
  ['/user', 'plain:pw5'],
];

async function answers(port: number): Promise<string[]> {
  const out: string[] = [];
  for (const [path, cred] of CASES) {
    const h = cred === '' ? '' : cred.startsWith('#raw:') ? `Authorization: ${cred.slice(5)}\r\n` : `Authorization: Basic ${b64(cred)}\r\n`;
    const r = await rawRequest(port, `GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n${h}\r\n`);
    out.push(`${path} ${cred}: ${r.status} ${r.headers.get('www-authenticate') ?? '-'} ${r.headers.get('x-u') ?? ''}${r.status === 200 ? r.body.trim() : ''}`);
  }
  return out;
}

describe('auth_basic next to nginx', { skip: withOpenssl ? false : 'needs openssl (to make the hashes)' }, () => {
  let t: ReturnType<typeof tempDir>;
  let proxy: Proc;
  let nginx: Proc | undefined;
  const ports = { proxy: 0, nginx: 0 };

  before(async () => {
    t = tempDir('auth');
    writeFileSync(join(t.dir, 'users'), users());
    writeFileSync(join(t.dir, 'f.txt'), 'file\n');
    const both = await startSideBySide(t.dir, (port) => conf(t.dir, port), withNginx);
    ({ proxy, nginx } = both);
    Object.assign(ports, both.ports);
  });

  after(async () => {
    await proxy?.stop('SIGQUIT');
    await nginx?.stop('SIGQUIT');
    t?.cleanup();
  });

  test('same answers as nginx', async () => {
    const ours = await answers(ports.proxy);
    if (nginx) assert.deepEqual(ours, await answers(ports.nginx));
    assert.equal(ours[0], '/f : 401 Basic realm="Server Zone" ');
    assert.equal(ours[1], '/f apr:pw1: 200 - file');
    assert.equal(ours[2], '/f apr:bad: 401 Basic realm="Server Zone" ');
  });

  test('the user file is read at each request', async () => {
    const ask = async (port: number): Promise<number> => (await rawRequest(port, `GET /f HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Basic ${b64('new:pw9')}\r\n\r\n`)).status;
    assert.equal(await ask(ports.proxy), 401);
    writeFileSync(join(t.dir, 'users'), users() + `new:${opensslPasswd('-apr1', 'qqqqqqqq', 'pw9')}\n`);
    assert.equal(await ask(ports.proxy), 200);
    if (nginx) assert.equal(await ask(ports.nginx), 200);
    writeFileSync(join(t.dir, 'users'), users());
    assert.equal(await ask(ports.proxy), 401);
  });

  test('formats tsgi-proxy cannot check are refused at -t with the user file and line', () => {
    const cases: Array<[string, string]> = [
      ['bc:$2y$05$abcdefghijklmnopqrstuu5Jm9K1S8w1pLx6x1r0yJ2pQ9m1y', 'password format "$2y$" of user "bc"'],
      ['des:abJnggxhB/yWI', 'DES crypt password of user "des"'],
    ];
    for (const [line, message] of cases) {
      writeFileSync(join(t.dir, 'bad-users'), `# x\nok:{PLAIN}a\n${line}\n`);
      writeFileSync(join(t.dir, 'bad.conf'), `events {}\nhttp {\n  auth_basic_user_file bad-users;\n}\n`);
      const r = proxySync(['-t', '-q', '-p', t.dir + '/', '-c', 'bad.conf', '-e', 'stderr']);
      assert.equal(r.code, 1);
      assert.match(r.stderr.split('\n')[0]!, new RegExp(`${message.replace(/[$]/g, '\\$')} is not supported by tsgi-proxy .* in ${join(t.dir, 'bad-users')}:3$`));
    }
    writeFileSync(join(t.dir, 'bad.conf'), `events {}\nhttp {\n  satisfy some;\n}\n`);
    assert.match(proxySync(['-t', '-q', '-p', t.dir + '/', '-c', 'bad.conf', '-e', 'stderr']).stderr, /\] invalid value "some" in .*bad.conf:3$/m);
  });
});
