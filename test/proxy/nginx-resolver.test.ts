/**
 * `resolver` next to the real nginx (Debian's 1.22.1): a DNS server made here (node:dgram, answering A and
 * AAAA queries from a table and counting them) is the resolver of both; a name with two addresses is used
 * in turn, the URI part of a pass target with variables is sent as is, an answer is kept for its TTL (or
 * valid=) and asked again after it, ipv6=off asks no AAAA, a name that does not exist and a resolver that
 * does not answer give 502 and the same error-log line. Without nginx (or root) tsgi-proxy is checked alone
 * against what nginx did.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { createServer, type Server } from 'node:http';
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { freePort, have, proxySync, rawRequest, startSideBySide, tempDir, waitFor, type Proc } from './helpers.js';

const withNginx = have('/usr/sbin/nginx') && process.getuid?.() === 0;

/** name → addresses and TTL; "ttl-*" names have TTL 1, the others 300. Unknown names: NXDOMAIN. */
function zone(name: string): { a: string[]; ttl: number } | undefined {
  if (name.startsWith('two.')) return { a: ['127.0.0.1', '127.0.0.2'], ttl: 300 };
  if (name.startsWith('ttl-')) return { a: ['127.0.0.1'], ttl: 1 };
  if (name.startsWith('one-') || name.startsWith('valid-') || name.startsWith('v4-')) return { a: ['127.0.0.1'], ttl: 300 };
  return undefined;
}

/** A DNS server on UDP: answers A from zone(), AAAA with no records, and logs each query ("name type"). */
function dnsServer(port: number, queries: string[]): Promise<UdpSocket> {
  const s = createSocket('udp4');
  s.on('message', (m, peer) => {
    let o = 12;
    const labels: string[] = [];
    while (m[o]) {
      labels.push(m.subarray(o + 1, o + 1 + m[o]!).toString('latin1'));
      o += m[o]! + 1;
    }
    o++;
    const qtype = m.readUInt16BE(o);
    o += 4;
    const name = labels.join('.').toLowerCase();
    queries.push(`${name} ${qtype === 1 ? 'A' : qtype === 28 ? 'AAAA' : qtype}`);
    const z = zone(name);
    const answers = z && qtype === 1 ? z.a : [];
    const head = Buffer.alloc(12);
    m.copy(head, 0, 0, 2);
    head.writeUInt16BE(0x8180 | (z ? 0 : 3), 2);
    head.writeUInt16BE(1, 4);
    head.writeUInt16BE(answers.length, 6);
    const parts = [head, m.subarray(12, o)];
    for (const ip of answers) {
      const rr = Buffer.alloc(16);
      rr.writeUInt16BE(0xc00c, 0);
      rr.writeUInt16BE(1, 2);
      rr.writeUInt16BE(1, 4);
      rr.writeUInt32BE(z!.ttl, 6);
      rr.writeUInt16BE(4, 10);
      ip.split('.').forEach((x, i) => (rr[12 + i] = Number(x)));
      parts.push(rr);
    }
    s.send(Buffer.concat(parts), peer.port, peer.address);
  });
  return new Promise((res) => s.bind(port, '127.0.0.1', () => res(s)));
}

const conf = (port: number, who: string, dns: number, dead: number, back: number): string => `events {}
http {
  access_log off;
  resolver 127.0.0.1:${dns};
  resolver_timeout 5s;
  server {
    listen 127.0.0.1:${port};
    location /two { set $h two.${who}; proxy_pass http://$h:${back}; add_header X-Up $upstream_addr; }
    location /uri { set $h one-${who}.test; proxy_pass http://$h:${back}/x$request_uri; }
    location /ttl { set $h ttl-${who}.test; proxy_pass http://$h:${back}; }
    location /valid { resolver 127.0.0.1:${dns} valid=1s ipv6=off; set $h valid-${who}.test; proxy_pass http://$h:${back}; }
    location /v4 { resolver 127.0.0.1:${dns} ipv6=off; set $h v4-${who}.test; proxy_pass http://$h:${back}; }
    location /nx { set $h nx-${who}.test; proxy_pass http://$h:${back}; }
    location /dead { resolver 127.0.0.1:${dead}; resolver_timeout 1s; set $h one-${who}.test; proxy_pass http://$h:${back}; }
  }
}
`;

describe('resolver next to nginx', () => {
  let t: ReturnType<typeof tempDir>;
  let proxy: Proc;
  let nginx: Proc | undefined;
  let dns: UdpSocket;
  let dead: UdpSocket;
  let backend: Server;
  let backend2: Server;
  const queries: string[] = [];
  const ports = { proxy: 0, nginx: 0 };

  before(async () => {
    t = tempDir('resolver');
    const dnsPort = await freePort();
    dns = await dnsServer(dnsPort, queries);
    // A resolver that never answers (resolver_timeout).
    dead = createSocket('udp4');
    const deadPort = await freePort();
    await new Promise<void>((res) => dead.bind(deadPort, '127.0.0.1', () => res()));
    const back = await freePort();
    const answer = (req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse): void => {
      res.end(`addr=${req.socket.localAddress} uri=${req.url} host=${req.headers.host}\n`);
    };
    backend = createServer(answer).listen(back, '127.0.0.1');
    backend2 = createServer(answer).listen(back, '127.0.0.2');
    const both = await startSideBySide(t.dir, (port, who) => conf(port, who, dnsPort, deadPort, back), withNginx);
    ({ proxy, nginx } = both);
    Object.assign(ports, both.ports);
  });

  after(async () => {
    await proxy?.stop('SIGQUIT');
    await nginx?.stop('SIGQUIT');
    dns?.close();
    dead?.close();
    backend?.close();
    backend2?.close();
    t?.cleanup();
  });

  const ask = async (port: number, path: string): Promise<string> => {
    const r = await rawRequest(port, `GET ${path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`);
    return r.status === 200 ? r.body.trimEnd() : String(r.status);
  };
  const count = (name: string): number => queries.filter((q) => q.startsWith(name + ' ')).length;

  for (const who of ['proxy', 'nginx'] as const) {
    test(`${who}: answers, TTL, valid=, ipv6=off, failures`, { skip: who === 'nginx' && !withNginx ? 'nginx is not installed or not root' : false }, async () => {
      const port = ports[who];
      const host = (n: string): string => `${n}-${who}.test`;
      // The URI part of the target is sent as it is; Host is the target's host:port.
      const uri = await ask(port, '/uri?q=1');
      assert.match(uri, new RegExp(`^addr=127\\.0\\.0\\.1 uri=/x/uri\\?q=1 host=one-${who}\\.test:\\d+$`));
      // Both addresses of a name are used.
      const seen = new Set<string>();
      for (let i = 0; i < 12; i++) seen.add((await ask(port, '/two')).split(' ')[0]!);
      assert.deepEqual([...seen].sort(), ['addr=127.0.0.1', 'addr=127.0.0.2']);
      assert.equal(count(`two.${who}`), 2, 'A and AAAA once: the answer is kept for its TTL');
      // TTL 1: kept to the end of the next whole second (nginx's clock counts seconds), asked again after it.
      assert.match(await ask(port, '/ttl'), /^addr=127\.0\.0\.1/);
      assert.match(await ask(port, '/ttl'), /^addr=127\.0\.0\.1/);
      assert.equal(count(host('ttl')), 2);
      await new Promise((r) => setTimeout(r, 2100));
      assert.match(await ask(port, '/ttl'), /^addr=127\.0\.0\.1/);
      assert.equal(count(host('ttl')), 4);
      // valid=1s overrides a TTL of 300; ipv6=off asks no AAAA.
      await ask(port, '/valid');
      await ask(port, '/valid');
      assert.deepEqual(queries.filter((q) => q.startsWith(host('valid'))), [`${host('valid')} A`]);
      await new Promise((r) => setTimeout(r, 2100));
      await ask(port, '/valid');
      assert.equal(count(host('valid')), 2);
      await ask(port, '/v4');
      assert.deepEqual(queries.filter((q) => q.startsWith(host('v4'))), [`${host('v4')} A`]);
      // Failures are not kept: each request asks again.
      assert.equal(await ask(port, '/nx'), '502');
      assert.equal(await ask(port, '/nx'), '502');
      assert.equal(queries.filter((q) => q === `${host('nx')} A`).length, 2);
      const started = Date.now();
      assert.equal(await ask(port, '/dead'), '502');
      assert.ok(Date.now() - started >= 900, 'resolver_timeout 1s is waited for');
      const file = join(t.dir, who === 'proxy' ? 'error.log' : 'nginx-error.log');
      await waitFor('the error log line', () => readFileSync(file, 'latin1').includes('could not be resolved (110'), 3000);
      const lines = readFileSync(file, 'latin1').split('\n').filter((l) => l.includes('could not be resolved'))
        .map((l) => l.replace(/^.*\*\d+ /, '').replace(/, client.*$/, ''));
      assert.deepEqual([...new Set(lines)].sort(), [`${host('nx')} could not be resolved (3: Host not found)`, `${host('one')} could not be resolved (110: Operation timed out)`]);
    });
  }

  test('-t errors with file:line', () => {
    const cases: Array<[string, string, boolean]> = [
      ['resolver 127.0.0.1:99999;', 'invalid port in resolver "127.0.0.1:99999"', true],
      ['resolver 127.0.0.1 valid=xx;', 'invalid parameter: valid=xx', true],
      ['resolver 127.0.0.1 ipv6=maybe;', 'invalid parameter: ipv6=maybe', true],
      ['resolver_timeout zz;', '"resolver_timeout" directive invalid value', true],
      ['resolver 127.0.0.1; resolver 127.0.0.2;', '"resolver" directive is duplicate', true],
      ['resolver 127.0.0.1 status_zone=z;', '"status_zone" in "resolver" is not supported by tsgi-proxy', false],
    ];
    const diffs: string[] = [];
    const dir = join(t.dir, 'bad');
    mkdirSync(dir, { recursive: true });
    for (const [directive, message, nginxToo] of cases) {
      const text = `events {}\nhttp {\n  ${directive}\n}\n`;
      writeFileSync(join(dir, 'bad.conf'), text);
      const ours = proxySync(['-t', '-q', '-p', dir + '/', '-c', 'bad.conf', '-e', 'stderr']);
      const line = ours.stderr.split('\n')[0] ?? '';
      if (ours.code !== 1 || !line.includes(message) || !line.includes(`${join(dir, 'bad.conf')}:3`)) diffs.push(`${directive}: tsgi-proxy said "${line}"`);
      if (withNginx && nginxToo) {
        writeFileSync(join(dir, 'n.conf'), `pid ${dir}/n.pid;\n` + text);
        const n = spawnSync('/usr/sbin/nginx', ['-t', '-q', '-p', dir, '-c', join(dir, 'n.conf'), '-e', join(dir, 'n-error.log')], { encoding: 'latin1' });
        const nline = (n.stderr.split('\n').find((l) => l.includes('[emerg]')) ?? '').replace(/^.*\[emerg\] /, '');
        if (nline !== `${message} in ${join(dir, 'n.conf')}:4`) diffs.push(`${directive}: nginx said "${nline}"`);
      }
    }
    assert.deepEqual(diffs, []);
  });
});
