/**
 * Client certificates next to the real nginx (Debian's 1.22.1): ssl_verify_client on/optional/optional_no_ca,
 * ssl_client_certificate, ssl_verify_depth and ssl_crl, per server (chosen by SNI) on one port, the 400 pages
 * for a missing (496) or bad (495) certificate, error_page catching them, and the $ssl_* variables, compared
 * with what nginx answers on the same configuration with the same certificates (made by the openssl command).
 * Without nginx (or root) the comparison is skipped and tsgi-proxy's own answers are checked.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { connect as tlsConnect } from 'node:tls';
import { join } from 'node:path';
import { have, proxySync, tempDir, startSideBySide, type Proc } from './helpers.js';

const withNginx = have('/usr/sbin/nginx') && process.getuid?.() === 0;
const skip = have('openssl') ? false : 'the openssl command is not installed';

function openssl(dir: string, args: string[]): void {
  const r = spawnSync('openssl', args, { cwd: dir, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`openssl ${args.join(' ')}: ${r.stderr}`);
}

/** A CA, an intermediate CA under it, clients signed by each, a self-signed one, a revoked one and a CRL. */
function makeCerts(dir: string): void {
  const req = (name: string, subj: string) => openssl(dir, ['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', subj]);
  openssl(dir, ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '30', '-keyout', 'ca.key', '-out', 'ca.crt', '-subj', '/O=Test CA/CN=test-ca']);
  openssl(dir, ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '30', '-keyout', 'srv.key', '-out', 'srv.crt', '-subj', '/CN=localhost']);
  openssl(dir, ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '30', '-keyout', 'self.key', '-out', 'self.crt', '-subj', '/CN=selfsigned']);
  writeFileSync(join(dir, 'ca.ext'), 'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n');
  req('cli', '/C=US/O=Acme, Inc./CN=client one');
  openssl(dir, ['x509', '-req', '-in', 'cli.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-set_serial', '4097', '-out', 'cli.crt', '-days', '20']);
  req('bad', '/CN=revoked');
  openssl(dir, ['x509', '-req', '-in', 'bad.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-set_serial', '4098', '-out', 'bad.crt', '-days', '20']);
  req('int', '/CN=test-int');
  openssl(dir, ['x509', '-req', '-in', 'int.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-set_serial', '4099', '-out', 'int.crt', '-days', '20', '-extfile', 'ca.ext']);
  req('leaf', '/CN=leaf');
  openssl(dir, ['x509', '-req', '-in', 'leaf.csr', '-CA', 'int.crt', '-CAkey', 'int.key', '-set_serial', '4100', '-out', 'leaf.crt', '-days', '10']);
  writeFileSync(join(dir, 'leafchain.crt'), readFileSync(join(dir, 'leaf.crt'), 'latin1') + readFileSync(join(dir, 'int.crt'), 'latin1'));
  // A CRL revoking bad.crt: `openssl ca` needs its small database.
  writeFileSync(join(dir, 'index.txt'), '');
  writeFileSync(join(dir, 'crlnumber'), '01\n');
  writeFileSync(join(dir, 'ca.cnf'), `[ca]\ndefault_ca = c\n[c]\ndatabase = ${dir}/index.txt\ncrlnumber = ${dir}/crlnumber\ndefault_md = sha256\ndefault_crl_days = 30\n`);
  openssl(dir, ['ca', '-config', 'ca.cnf', '-keyfile', 'ca.key', '-cert', 'ca.crt', '-revoke', 'bad.crt']);
  openssl(dir, ['ca', '-config', 'ca.cnf', '-keyfile', 'ca.key', '-cert', 'ca.crt', '-gencrl', '-out', 'ca.crl']);
}

const VARS = 'v=$ssl_client_verify|s=$ssl_client_s_dn|i=$ssl_client_i_dn|sl=$ssl_client_s_dn_legacy|il=$ssl_client_i_dn_legacy|serial=$ssl_client_serial|fp=$ssl_client_fingerprint|vs=$ssl_client_v_start|ve=$ssl_client_v_end|vr=$ssl_client_v_remain|p=$ssl_protocol|c=$ssl_cipher|r=$ssl_session_reused|sn=$ssl_server_name|https=$https';

const conf = (port: number, dir: string, who: string): string => `error_log ${dir}/${who}-info.log info;
events {}
http {
  access_log off;
  ssl_protocols TLSv1.2 TLSv1.3;
  ssl_certificate ${dir}/srv.crt;
  ssl_certificate_key ${dir}/srv.key;
  server {
    listen 127.0.0.1:${port} ssl;
    server_name plain.test;
    location / { return 200 "${VARS}\\n"; }
  }
  server {
    listen 127.0.0.1:${port} ssl;
    server_name on.test;
    ssl_client_certificate ${dir}/ca.crt;
    ssl_verify_client on;
    location / { return 200 "${VARS}\\n"; }
    location /raw { return 200 "[$ssl_client_raw_cert]"; }
    location /old { return 200 "[$ssl_client_cert]"; }
    location /esc { return 200 "[$ssl_client_escaped_cert]"; }
  }
  server {
    listen 127.0.0.1:${port} ssl;
    server_name opt.test;
    ssl_client_certificate ${dir}/ca.crt;
    ssl_verify_client optional;
    error_page 495 496 = /certerr;
    location / { return 200 "${VARS}\\n"; }
    location /certerr { return 403 "cert error: $ssl_client_verify\\n"; }
  }
  server {
    listen 127.0.0.1:${port} ssl;
    server_name noca.test;
    ssl_verify_client optional_no_ca;
    location / { return 200 "v=$ssl_client_verify|s=$ssl_client_s_dn\\n"; }
  }
  server {
    listen 127.0.0.1:${port} ssl;
    server_name depth.test;
    ssl_client_certificate ${dir}/ca.crt;
    ssl_verify_client on;
    ssl_verify_depth 0;
    location / { return 200 "v=$ssl_client_verify\\n"; }
  }
  server {
    listen 127.0.0.1:${port} ssl;
    server_name crl.test;
    ssl_client_certificate ${dir}/ca.crt;
    ssl_crl ${dir}/ca.crl;
    ssl_verify_client on;
    location / { return 200 "v=$ssl_client_verify\\n"; }
  }
}
`;

interface Answer {
  status: number;
  body: string;
  closed: boolean;
}

/** One HTTPS request with SNI `name` and, when given, a client certificate; the status line and body. */
function ask(dir: string, port: number, name: string, path: string, cert?: string): Promise<Answer> {
  const key = cert === undefined ? undefined : cert.replace(/chain$/, '');
  return new Promise((res, rej) => {
    const s = tlsConnect({
      port, host: '127.0.0.1', servername: name, rejectUnauthorized: false,
      ...(cert ? { cert: readFileSync(join(dir, `${cert}.crt`)), key: readFileSync(join(dir, `${key}.key`)) } : {}),
    }, () => {
      s.write(`GET ${path} HTTP/1.1\r\nHost: ${name}\r\n\r\n`);
    });
    let raw = '';
    s.setEncoding('latin1');
    s.on('data', (d) => {
      raw += d;
      // One response: when it is complete, see whether the server closes the connection by itself.
      const end = raw.indexOf('\r\n\r\n');
      const len = /\r\ncontent-length: (\d+)/i.exec(raw)?.[1];
      if (end >= 0 && len !== undefined && raw.length >= end + 4 + Number(len)) {
        const t = setTimeout(() => { s.destroy(); done(false); }, 300);
        s.once('end', () => { clearTimeout(t); done(true); });
      }
    });
    let settled = false;
    const done = (closed: boolean) => {
      if (settled) return;
      settled = true;
      const end = raw.indexOf('\r\n\r\n');
      res({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(raw)?.[1] ?? 0), body: raw.slice(end + 4), closed });
    };
    s.on('error', (e) => (settled ? undefined : rej(e)));
    s.on('close', () => done(true));
  });
}

/** The error pages name their server; the rest must be the same. */
const unsign = (body: string): string => body.replace(/<hr><center>[^<]*<\/center>/, '<hr><center>SERVER</center>');

const CASES: Array<[string, string, string | undefined]> = [
  ['plain.test', '/', undefined],
  ['plain.test', '/', 'cli'],
  ['on.test', '/', undefined],
  ['on.test', '/', 'cli'],
  ['on.test', '/', 'self'],
  ['on.test', '/', 'leaf'],
  ['on.test', '/', 'leafchain'],
  ['on.test', '/raw', 'cli'],
  ['on.test', '/old', 'cli'],
  ['on.test', '/esc', 'cli'],
  ['opt.test', '/', undefined],
  ['opt.test', '/', 'cli'],
  ['opt.test', '/', 'self'],
  ['noca.test', '/', undefined],
  ['noca.test', '/', 'cli'],
  ['noca.test', '/', 'self'],
  ['noca.test', '/', 'leaf'],
  ['depth.test', '/', 'cli'],
  ['depth.test', '/', 'leafchain'],
  ['crl.test', '/', 'cli'],
  ['crl.test', '/', 'bad'],
];

describe('ssl_verify_client and the $ssl_* variables, next to nginx', { skip }, () => {
  let t: ReturnType<typeof tempDir>;
  let proxy: Proc | undefined;
  let nginx: Proc | undefined;
  let ports: { proxy: number; nginx: number };
  before(async () => {
    t = tempDir('sslverify');
    makeCerts(t.dir);
    const started = await startSideBySide(t.dir, (port, who) => conf(port, t.dir, who), withNginx);
    ({ proxy, nginx, ports } = started);
  });
  after(async () => {
    await proxy?.stop('SIGQUIT');
    await nginx?.stop('SIGQUIT');
    t.cleanup();
  });

  test('every server, certificate and variable answers as nginx answers', async (ctx) => {
    if (!withNginx) return ctx.skip('nginx is not installed or the test is not root: compared in the next test only');
    const differ: string[] = [];
    for (const [name, path, cert] of CASES) {
      const a = await ask(t.dir, ports.proxy, name, path, cert);
      const b = await ask(t.dir, ports.nginx, name, path, cert);
      const what = `${name}${path} with ${cert ?? 'no certificate'}`;
      if (a.status !== b.status || unsign(a.body) !== unsign(b.body) || a.closed !== b.closed) {
        differ.push(`${what}:\n  tsgi-proxy ${a.status} closed=${a.closed} ${JSON.stringify(a.body)}\n  nginx      ${b.status} closed=${b.closed} ${JSON.stringify(b.body)}`);
      }
    }
    assert.deepEqual(differ, []);
  });

  test('the verdicts tsgi-proxy gives (what nginx gave in the comparison)', async () => {
    const on = await ask(t.dir, ports.proxy, 'on.test', '/', undefined);
    assert.equal(on.status, 400);
    assert.match(on.body, /<title>400 No required SSL certificate was sent<\/title>/);
    assert.equal(on.closed, true);
    const good = await ask(t.dir, ports.proxy, 'on.test', '/', 'cli');
    assert.equal(good.status, 200);
    assert.match(good.body, /^v=SUCCESS\|s=CN=client one,O=Acme\\, Inc\.,C=US\|i=CN=test-ca,O=Test CA\|sl=\/C=US\/O=Acme, Inc\.\/CN=client one\|il=\/O=Test CA\/CN=test-ca\|serial=1001\|fp=[0-9a-f]{40}\|/);
    assert.match(good.body, /\|vr=19\|p=TLSv1\.3\|/);
    const self = await ask(t.dir, ports.proxy, 'on.test', '/', 'self');
    assert.match(self.body, /<title>400 The SSL certificate error<\/title>/);
    assert.equal((await ask(t.dir, ports.proxy, 'opt.test', '/', 'self')).body, 'cert error: FAILED:self-signed certificate\n');
    assert.match((await ask(t.dir, ports.proxy, 'opt.test', '/', undefined)).body, /^v=NONE\|s=\|/);
    assert.equal((await ask(t.dir, ports.proxy, 'noca.test', '/', 'leaf')).body, 'v=FAILED:unable to verify the first certificate|s=CN=leaf\n');
    assert.equal((await ask(t.dir, ports.proxy, 'depth.test', '/', 'leafchain')).status, 400);
    assert.equal((await ask(t.dir, ports.proxy, 'depth.test', '/', 'cli')).body, 'v=SUCCESS\n');
    assert.equal((await ask(t.dir, ports.proxy, 'crl.test', '/', 'bad')).status, 400);
    const log = readFileSync(join(t.dir, 'proxy-info.log'), 'latin1');
    assert.match(log, /client sent no required SSL certificate while reading client request headers/);
    assert.match(log, /client SSL certificate verify error: \(18:self-signed certificate\) while reading client request headers/);
    assert.match(log, /client SSL certificate verify error: \(23:certificate revoked\)/);
  });

  test('-t refuses what nginx refuses, naming the file and line', () => {
    const bad = (body: string): string => {
      writeFileSync(join(t.dir, 'bad.conf'), `events {}\nhttp {\n  server {\n    listen 127.0.0.1:1 ssl;\n    ssl_certificate ${t.dir}/srv.crt;\n    ssl_certificate_key ${t.dir}/srv.key;\n    ${body}\n  }\n}\n`);
      const r = proxySync(['-t', '-p', t.dir, '-c', 'bad.conf']);
      assert.notEqual(r.code, 0, body);
      return r.stderr;
    };
    assert.match(bad('ssl_verify_client on;'), /no ssl_client_certificate for ssl_verify_client in .*bad\.conf:7/);
    assert.match(bad('ssl_verify_client maybe;'), /invalid value "maybe" in .*bad\.conf:7/);
    assert.match(bad('ssl_verify_depth x;'), /"ssl_verify_depth" directive invalid number in .*bad\.conf:7/);
    assert.match(bad('location / { ssl_verify_client on; }'), /"ssl_verify_client" directive is not allowed here in .*bad\.conf:7/);
    assert.match(bad(`ssl_client_certificate ${t.dir}/srv.key; ssl_verify_client on;`), /no certificates in ".*srv\.key" of the "ssl_client_certificate" directive in .*bad\.conf:7/);
  });
});
