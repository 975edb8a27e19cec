/**
 * The realip directives (set_real_ip_from, real_ip_header, real_ip_recursive) next to the real nginx (Debian's
 * 1.22.1): the same configuration and requests, the same $remote_addr, $remote_port, $realip_remote_addr and
 * allow/deny decisions; TCP and unix-socket clients (`set_real_ip_from unix:`). Without nginx (or root) the
 * comparison is skipped and tsgi-proxy is checked against the answers nginx gave.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { have, proxySync, rawRequest, tempDir, startSideBySide, type Proc } from './helpers.js';

const withNginx = have('/usr/sbin/nginx') && process.getuid?.() === 0;

const conf = (port: number, sock: string, file: string): string => `events {}
http {
  access_log off;
  default_type text/plain;
  server {
    listen 127.0.0.1:${port};
    listen unix:${sock};
    set_real_ip_from 127.0.0.1;
    location /xri { alias ${file}; add_header X-A "$remote_addr|$remote_port|$realip_remote_addr" always; }
    location /xff { real_ip_header X-Forwarded-For; set_real_ip_from 127.0.0.0/8; set_real_ip_from 10.0.0.0/8; alias ${file}; add_header X-A "$remote_addr|$remote_port" always; }
    location /xffr { real_ip_header X-Forwarded-For; real_ip_recursive on; set_real_ip_from 127.0.0.0/8; set_real_ip_from 10.0.0.0/8; set_real_ip_from ::1; alias ${file}; add_header X-A "$remote_addr" always; }
    location /untrusted { set_real_ip_from 10.0.0.0/8; alias ${file}; add_header X-A "$remote_addr" always; }
    location /custom { real_ip_header X-Client; alias ${file}; add_header X-A "$remote_addr" always; }
    location /unix { set_real_ip_from unix:; alias ${file}; add_header X-A "$remote_addr|$realip_remote_addr" always; }
    location /acl { deny 1.2.3.4; allow all; alias ${file}; add_header X-A "in $remote_addr" always; }
    location /ret { return 200 "$remote_addr\\n"; }
    location /retloc { set_real_ip_from 10.0.0.0/8; real_ip_header X-Forwarded-For; return 200 "$remote_addr\\n"; }
    location /none { alias ${file}; add_header X-A "$remote_addr" always; }
  }
}
`;

const CASES: Array<[string, string]> = [
  ['/xri', 'X-Real-IP: 1.2.3.4'],
  ['/xri', 'X-Real-IP: junk'],
  ['/xri', 'X-Real-IP: 1.2.3.4:5678'],
  ['/xri', 'X-Real-IP: [2001:db8::1]:80'],
  ['/xri', 'X-Real-IP: 2001:db8::2'],
  ['/xri', ''],
  ['/xff', 'X-Forwarded-For: 1.1.1.1, 10.0.0.1'],
  ['/xff', 'X-Forwarded-For: 1.1.1.1, 2.2.2.2'],
  ['/xff', 'X-Forwarded-For: 1.1.1.1,2.2.2.2 ,'],
  ['/xff', 'X-Real-IP: 9.9.9.9'],
  ['/xffr', 'X-Forwarded-For: 1.1.1.1, 10.0.0.1'],
  ['/xffr', 'X-Forwarded-For: 10.0.0.3, 10.0.0.2'],
  ['/xffr', 'X-Forwarded-For: junk, 10.0.0.2'],
  ['/xffr', 'X-Forwarded-For: 3.3.3.3\r\nX-Forwarded-For: 10.0.0.5, 10.0.0.6'],
  ['/xffr', 'X-Forwarded-For: 4.4.4.4, ::1, 10.0.0.6'],
  ['/untrusted', 'X-Real-IP: 1.2.3.4'],
  ['/custom', 'X-Client: 5.6.7.8\r\nX-Real-IP: 1.2.3.4'],
  ['/acl', 'X-Real-IP: 1.2.3.4'],
  ['/acl', 'X-Real-IP: 1.2.3.5'],
  ['/none', 'X-Real-IP: 1.2.3.4'],
  ['/ret', 'X-Real-IP: 1.2.3.4'],
  ['/retloc', 'X-Forwarded-For: 1.2.3.4\r\nX-Real-IP: 5.5.5.5'],
  ['/retloc', 'X-Forwarded-For: 1.2.3.4'],
];

/**
 * What nginx 1.22.1 answered, CASES over TCP then /unix and /xri over the unix socket. Note: the server's
 * settings apply before any rewrite (post-read); a location's own apply only when those changed nothing, and
 * only after `return` would have run (/retloc: the location's X-Forwarded-For is not used by `return`).
 */
const SEEN = [
  '1.2.3.4||127.0.0.1',
  '127.0.0.1|PORT|127.0.0.1',
  '1.2.3.4|PORT|127.0.0.1',
  '2001:db8::1|80|127.0.0.1',
  '2001:db8::2||127.0.0.1',
  '127.0.0.1|PORT|127.0.0.1',
  '10.0.0.1|',
  '2.2.2.2|',
  '2.2.2.2|',
  '9.9.9.9|',
  '1.1.1.1',
  '10.0.0.3',
  '10.0.0.2',
  '3.3.3.3',
  '4.4.4.4',
  '1.2.3.4',
  '1.2.3.4',
  '403',
  'in 1.2.3.5',
  '1.2.3.4',
  '1.2.3.4',
  '5.5.5.5',
  '127.0.0.1',
  'unix: 7.7.7.7|unix:',
  'unix: unix:||unix:',
];

async function answers(port: number, sock: string): Promise<string[]> {
  const out: string[] = [];
  const ask = async (to: number | string, path: string, headers: string): Promise<string> => {
    const r = await rawRequest(to, `GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n${headers ? headers + '\r\n' : ''}\r\n`);
    return r.status === 200 ? (r.headers.get('x-a') ?? r.body).trimEnd().replace(/\|\d{4,5}(\||$)/, '|PORT$1') : String(r.status);
  };
  for (const [path, h] of CASES) out.push(await ask(port, path, h));
  out.push('unix: ' + (await ask(sock, '/unix', 'X-Real-IP: 7.7.7.7')));
  out.push('unix: ' + (await ask(sock, '/xri', 'X-Real-IP: 7.7.7.7')));
  return out;
}

describe('realip next to nginx', () => {
  let t: ReturnType<typeof tempDir>;
  let proxy: Proc;
  let nginx: Proc | undefined;
  const ports = { proxy: 0, nginx: 0 };

  before(async () => {
    t = tempDir('realip');
    writeFileSync(join(t.dir, 'f.txt'), 'file\n');
    const both = await startSideBySide(t.dir, (port, who) => conf(port, join(t.dir, who === 'proxy' ? 'p.sock' : 'n.sock'), join(t.dir, 'f.txt')), withNginx);
    ({ proxy, nginx } = both);
    Object.assign(ports, both.ports);
  });

  after(async () => {
    await proxy?.stop('SIGQUIT');
    await nginx?.stop('SIGQUIT');
    t?.cleanup();
  });

  test('same addresses as nginx', async () => {
    const ours = await answers(ports.proxy, join(t.dir, 'p.sock'));
    if (nginx) assert.deepEqual(ours, await answers(ports.nginx, join(t.dir, 'n.sock')));
    assert.deepEqual(ours, SEEN);
  });

  test('-t errors', () => {
    const dir = join(t.dir, 'bad');
    mkdirSync(dir, { recursive: true });
    const cases: Array<[string, string, boolean]> = [
      ['set_real_ip_from 1.2.3.4/40;', 'invalid parameter "1.2.3.4/40"', false],
      ['real_ip_recursive maybe;', 'invalid value "maybe" in "real_ip_recursive" directive, it must be "on" or "off"', true],
      ['real_ip_header proxy_protocol;', '"real_ip_header proxy_protocol" is not supported by tsgi-proxy (no PROXY protocol listeners)', false],
    ];
    const diffs: string[] = [];
    for (const [directive, message, nginxSame] of cases) {
      const text = `events {}\nhttp {\n  ${directive}\n}\n`;
      writeFileSync(join(dir, 'bad.conf'), text);
      const ours = proxySync(['-t', '-q', '-p', dir + '/', '-c', 'bad.conf', '-e', 'stderr']);
      const line = ours.stderr.split('\n')[0] ?? '';
      if (ours.code !== 1 || !line.endsWith(`${message} in ${join(dir, 'bad.conf')}:3`)) diffs.push(`${directive}: tsgi-proxy said "${line}"`);
      if (withNginx && nginxSame) {
        writeFileSync(join(dir, 'n.conf'), `pid ${dir}/n.pid;\n` + text);
        const n = spawnSync('/usr/sbin/nginx', ['-t', '-q', '-p', dir, '-c', join(dir, 'n.conf'), '-e', join(dir, 'n-error.log')], { encoding: 'latin1' });
        const nline = (n.stderr.split('\n').find((l) => l.includes('[emerg]')) ?? '').replace(/^.*\[emerg\] /, '');
        if (nline !== `${message} in ${join(dir, 'n.conf')}:4`) diffs.push(`${directive}: nginx said "${nline}"`);
      }
    }
    assert.deepEqual(diffs, []);
  });
});
