/**
 * `geo` next to the real nginx (Debian's 1.22.1): CIDR (IPv4 and IPv6, longest prefix, `delete`, `include`),
 * `ranges` (a range inside another splits it, one across a /16 boundary), an address from a variable (one that
 * does not parse is 255.255.255.255, as in nginx), `proxy` / `proxy_recursive` with X-Forwarded-For; the same
 * requests to both, the same answers. `-t` errors and warnings with file:line as nginx words them.
 * Without nginx (or root) tsgi-proxy is checked against the answers nginx gave.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { have, proxySync, rawRequest, tempDir, startSideBySide, type Proc } from './helpers.js';

const withNginx = have('/usr/sbin/nginx') && process.getuid?.() === 0;

const CIDR = `default def; 10.0.0.0/8 ten; 10.1.0.0/16 ten1; 10.1.2.3 host; 192.168.0.0/16 lan; 192.168.1.0/24 lan1;
  delete 192.168.1.0/24; ::1 v6lo; 2001:db8::/32 doc; 2001:db8:1::/48 doc1; 127.0.0.1 lo; 0.0.0.0/1 low; 255.0.0.0/8 top;`;

const conf = (dir: string, port: number): string => `events {}
http {
  access_log off;
  geo $g1 { ${CIDR} }
  geo $arg_ip $g2 { include ${dir}/cidr.geo; }
  geo $arg_ip $g3 { ranges; default rdef; 10.0.0.0-10.0.255.255 r1; 10.0.5.0-10.0.5.255 r2; 10.0.255.0-10.1.0.255 cross;
    10.2.0.0-10.2.0.9 a; 10.2.0.0-10.2.0.3 b; 10.2.0.7-10.2.0.9 c; 127.0.0.1-127.0.0.1 lo; 255.255.255.0-255.255.255.254 none;
    10.3.0.0-10.3.0.9 gone; delete 10.3.0.0-10.3.0.9; }
  geo $arg_ip $g4 { proxy 127.0.0.1; proxy 10.9.0.0/16; proxy_recursive; default none; 10.0.0.0/8 ten; 1.2.3.4 one; 2001:db8::1 six; }
  geo $g5 { proxy 127.0.0.0/8; default none; 10.0.0.0/8 ten; 1.2.3.4 one; 127.0.0.1 lo; }
  geo $g6 { }
  server {
    listen 127.0.0.1:${port};
    location / { return 200 "$g1|$g2|$g3|$g4|$g5|$g6\\n"; }
  }
}
`;

const IPS = ['10.1.2.3', '10.1.2.4', '10.2.0.1', '10.0.5.7', '10.0.255.3', '10.1.0.3', '10.1.1.0', '10.2.0.2', '10.2.0.5',
  '10.2.0.8', '10.3.0.1', '192.168.1.5', '192.168.2.5', '127.0.0.1', '1.2.3.4', '8.8.8.8', '200.1.1.1', '::1', '2001:db8::5',
  '2001:db8:1::9', '2001:db9::1', '::ffff:10.1.2.3', '255.255.255.255', 'junk', '', '2001:db8::1'];
const XFF: Array<[string, string]> = [['127.0.0.1', '1.2.3.4'], ['127.0.0.1', '10.5.5.5, 1.2.3.4'], ['127.0.0.1', '1.2.3.4, 10.9.1.1'],
  ['127.0.0.1', '1.2.3.4, 127.0.0.1'], ['127.0.0.1', 'junk'], ['127.0.0.1', '10.5.5.5, junk'], ['10.1.1.1', '1.2.3.4'], ['127.0.0.1', '2001:db8::1']];

/** What nginx 1.22.1 answered, in the order IPS then XFF. */
const SEEN = [
  'lo|host|rdef|ten|lo|', 'lo|ten1|rdef|ten|lo|', 'lo|ten|b|ten|lo|', 'lo|ten|r2|ten|lo|', 'lo|ten|cross|ten|lo|',
  'lo|ten1|cross|ten|lo|', 'lo|ten1|rdef|ten|lo|', 'lo|ten|b|ten|lo|', 'lo|ten|a|ten|lo|', 'lo|ten|c|ten|lo|',
  'lo|ten|rdef|ten|lo|', 'lo|lan|rdef|none|lo|', 'lo|lan|rdef|none|lo|', 'lo|lo|lo|none|lo|', 'lo|low|rdef|one|lo|',
  'lo|low|rdef|none|lo|', 'lo|def|rdef|none|lo|', 'lo|v6lo|rdef|none|lo|', 'lo|doc|rdef|none|lo|',
  'lo|doc1|rdef|none|lo|', 'lo|def|rdef|none|lo|', 'lo|host|rdef|ten|lo|', 'lo|top|rdef|none|lo|',
  'lo|top|rdef|none|lo|', 'lo|top|rdef|none|lo|', 'lo|doc|rdef|six|lo|', 'lo|lo|lo|one|one|', 'lo|lo|lo|one|one|',
  'lo|lo|lo|one|ten|', 'lo|lo|lo|one|lo|', 'lo|lo|lo|none|lo|', 'lo|lo|lo|none|lo|', 'lo|ten1|rdef|ten|one|',
  'lo|lo|lo|six|none|',
];

async function answers(port: number): Promise<string[]> {
  const out: string[] = [];
  const ask = async (ip: string, xff?: string): Promise<void> => {
    const r = await rawRequest(port, `GET /?ip=${ip} HTTP/1.1\r\nHost: x\r\n${xff !== undefined ? `X-Forwarded-For: ${xff}\r\n` : ''}Connection: close\r\n\r\n`);
    out.push(`${r.status === 200 ? '' : r.status + ' '}${r.body.trimEnd()}`);
  };
  for (const ip of IPS) await ask(ip);
  for (const [ip, xff] of XFF) await ask(ip, xff);
  return out;
}

describe('geo next to nginx', () => {
  let t: ReturnType<typeof tempDir>;
  let proxy: Proc;
  let nginx: Proc | undefined;
  const ports = { proxy: 0, nginx: 0 };

  before(async () => {
    t = tempDir('geo');
    writeFileSync(join(t.dir, 'cidr.geo'), CIDR + '\n');
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
    assert.deepEqual(ours, SEEN);
  });

  test('-t errors and warnings as nginx words them, with file:line', () => {
    const cases: Array<[string, string]> = [
      ['geo $a { foo a; }', '[emerg] invalid network "foo"'],
      ['geo $a { 10.0.0.0/33 a; }', '[emerg] invalid network "10.0.0.0/33"'],
      ['geo $a { a; }', '[emerg] invalid number of the geo parameters'],
      ['geo $a { a b c; }', '[emerg] invalid number of the geo parameters'],
      ['geo $a $b $c { }', '[emerg] invalid number of arguments in "geo" directive'],
      ['geo a { }', '[emerg] invalid variable name "a"'],
      ['geo $host { }', '[emerg] the duplicate "host" variable'],
      ['geo $a { 255.255.255.255/32 x; }', '[emerg] invalid network "255.255.255.255/32"'],
      ['geo $a { ranges; 255.255.255.0-255.255.255.255 x; }', '[emerg] invalid range "255.255.255.0-255.255.255.255"'],
      ['geo $a { proxy foo; }', '[emerg] invalid network "foo"'],
      ['geo $a { proxy_recursive 1; }', '[emerg] invalid network "proxy_recursive"'],
      ['geo $a { ranges; 10.0.0.0/8 a; }', '[emerg] invalid range "10.0.0.0/8"'],
      ['geo $a { ranges; 10.0.0.9-10.0.0.1 a; }', '[emerg] invalid range "10.0.0.9-10.0.0.1"'],
      ['geo $a { ranges; ::1-::2 a; }', '[emerg] invalid range "::1-::2"'],
      ['geo $a { ranges; 10.0.0.1-10.0.0.9 a; 10.0.0.5-10.0.0.20 b; }', '[emerg] range "10.0.0.5-10.0.0.20" overlaps "10.0.0.1-10.0.0.9"'],
      ['geo $a { ranges; 10.0.0.5-10.0.0.9 b; 10.0.0.1-10.0.0.20 a; }', '[emerg] range "10.0.0.1-10.0.0.20" overlaps "10.0.0.5-10.0.0.9"'],
      ['geo $a { default x; 10.0.0.0/8 a; 10.0.0.0/8 b; }', '[warn] duplicate network "10.0.0.0/8", value: "b", old value: "a"'],
      ['geo $a { 10.0.0.1/8 a; }', '[warn] low address bits of 10.0.0.1/8 are meaningless'],
      ['geo $a { delete 10.0.0.0/8; }', '[warn] no network "10.0.0.0/8" to delete'],
      ['geo $a { ranges; default a; default b; }', '[warn] duplicate default geo range value: "b", old value: "a"'],
      ['geo $a { ranges; 10.0.0.1-10.0.0.9 a; 10.0.0.1-10.0.0.9 b; }', '[warn] duplicate range "10.0.0.1-10.0.0.9", value: "b", old value: "a"'],
      ['geo $a { ranges; 10.0.0.1-10.0.0.20 a; delete 10.0.0.5-10.0.0.9; }', '[warn] no address range "10.0.0.5-10.0.0.9" to delete'],
    ];
    const diffs: string[] = [];
    const dir = join(t.dir, 'bad');
    mkdirSync(dir, { recursive: true });
    for (const [directive, message] of cases) {
      const text = `events {}\nhttp {\n  ${directive}\n}\n`;
      writeFileSync(join(dir, 'bad.conf'), text);
      const ours = proxySync(['-t', '-p', dir + '/', '-c', 'bad.conf', '-e', 'stderr']);
      const want = `${message} in ${join(dir, 'bad.conf')}:3`;
      const emerg = message.startsWith('[emerg]');
      if (ours.code !== (emerg ? 1 : 0) || !ours.stderr.includes(want.slice(message.indexOf(']') + 2))) diffs.push(`${directive}: tsgi-proxy said "${ours.stderr.trim()}", want "... ${want}"`);
      if (withNginx) {
        writeFileSync(join(dir, 'n.conf'), `pid ${dir}/n.pid;\n` + text);
        const n = spawnSync('/usr/sbin/nginx', ['-t', '-q', '-p', dir, '-c', join(dir, 'n.conf'), '-e', join(dir, 'n-error.log')], { encoding: 'latin1' });
        if (!n.stderr.includes(`${message} in ${join(dir, 'n.conf')}:4`)) diffs.push(`${directive}: nginx said "${n.stderr.trim()}"`);
      }
    }
    assert.deepEqual(diffs, []);
  });
});
