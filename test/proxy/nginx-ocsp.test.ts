/**
 * OCSP stapling (ssl_stapling, ssl_stapling_verify, ssl_stapling_file) next to the real nginx (Debian's 1.22.1),
 * with openssl's own OCSP responder (`openssl ocsp -index`) as the CA's: the first handshake that asks goes
 * without (both fetch the status then), later ones get a "good" response; a revoked certificate is never
 * stapled; a response signed by a key that is not the CA's is refused under ssl_stapling_verify; a fixed
 * response file is stapled from the first handshake. The stapled responses are read with `openssl ocsp`.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls';
import { join } from 'node:path';
import { freePort, have, run, tempDir, startSideBySide, waitFor, type Proc } from './helpers.js';

const withNginx = have('/usr/sbin/nginx') && process.getuid?.() === 0;
const skip = have('openssl') ? false : 'the openssl command is not installed';

function openssl(dir: string, args: string[]): string {
  const r = spawnSync('openssl', args, { cwd: dir, encoding: 'latin1' });
  if (r.status !== 0) throw new Error(`openssl ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/** The OCSP response a handshake with SNI `name` stapled, or undefined. */
function stapled(port: number, name: string): Promise<Buffer | undefined> {
  return new Promise((res, rej) => {
    let resp: Buffer | undefined;
    // requestOCSP is a tls.connect option Node has (TLSSocket's), missing from its ConnectionOptions type.
    const s = tlsConnect({ port, host: '127.0.0.1', servername: name, rejectUnauthorized: false, requestOCSP: true } as ConnectionOptions);
    s.on('OCSPResponse', (r: Buffer | null) => (resp = r ?? undefined));
    s.on('secureConnect', () => {
      s.end();
      res(resp);
    });
    s.on('error', rej);
  });
}

/** The certificate status `openssl ocsp` reads in a response ("good", "revoked"). */
function statusOf(dir: string, der: Buffer): string {
  writeFileSync(join(dir, 'got.der'), der);
  return /Cert Status: (\w+)/.exec(openssl(dir, ['ocsp', '-respin', 'got.der', '-resp_text', '-noverify']))?.[1] ?? '?';
}

const conf = (port: number, dir: string, who: string): string => `error_log ${dir}/${who}-info.log info;
events {}
http {
  access_log off;
  ssl_protocols TLSv1.2 TLSv1.3;
  ssl_certificate_key ${dir}/srv.key;
  ssl_trusted_certificate ${dir}/ca.crt;
  ssl_stapling on;
  ssl_stapling_verify on;
  server { listen 127.0.0.1:${port} ssl; server_name good.test; ssl_certificate ${dir}/good.crt; location / { return 200 ok; } }
  server { listen 127.0.0.1:${port} ssl; server_name revoked.test; ssl_certificate ${dir}/revoked.crt; location / { return 200 ok; } }
  server { listen 127.0.0.1:${port} ssl; server_name forged.test; ssl_certificate ${dir}/forged.crt; location / { return 200 ok; } }
  server { listen 127.0.0.1:${port} ssl; server_name file.test; ssl_certificate ${dir}/file.crt; ssl_stapling_file ${dir}/file.der; location / { return 200 ok; } }
}
`;

describe('OCSP stapling next to nginx', { skip }, () => {
  let t: ReturnType<typeof tempDir>;
  let proxy: Proc | undefined;
  let nginx: Proc | undefined;
  const responders: Proc[] = [];
  let ports: { proxy: number; nginx: number };

  before(async () => {
    t = tempDir('ocsp');
    const d = t.dir;
    const good = await freePort();
    const forged = await freePort();
    openssl(d, ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '30', '-keyout', 'ca.key', '-out', 'ca.crt', '-subj', '/CN=ocsp-test-ca']);
    // Another key that signs responses for forged.test's responder: not the CA's, not delegated by it.
    openssl(d, ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '30', '-keyout', 'rogue.key', '-out', 'rogue.crt', '-subj', '/CN=rogue']);
    openssl(d, ['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'srv.key', '-out', 'srv.csr', '-subj', '/CN=localhost']);
    const expiry = new Date(Date.now() + 20 * 86400000).toISOString().replace(/[-:T]/g, '').slice(2, 14) + 'Z';
    const index: string[] = [];
    for (const [name, serial, port, state] of [['good', '1001', good, 'V'], ['revoked', '1002', good, 'R'], ['forged', '1003', forged, 'V'], ['file', '1004', good, 'V']] as const) {
      writeFileSync(join(d, `${name}.ext`), `authorityInfoAccess = OCSP;URI:http://127.0.0.1:${port}\n`);
      openssl(d, ['x509', '-req', '-in', 'srv.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-set_serial', String(parseInt(serial, 16)), '-out', `${name}.leaf`, '-days', '20', '-extfile', `${name}.ext`]);
      writeFileSync(join(d, `${name}.crt`), readFileSync(join(d, `${name}.leaf`), 'latin1') + readFileSync(join(d, 'ca.crt'), 'latin1'));
      index.push(`${state}\t${expiry}\t${state === 'R' ? '260101000000Z' : ''}\t${serial}\tunknown\t/CN=localhost`);
    }
    writeFileSync(join(d, 'index.txt'), index.join('\n') + '\n');
    // The four certificates share a subject; openssl's index wants to be told that is fine.
    writeFileSync(join(d, 'index.txt.attr'), 'unique_subject = no\n');
    responders.push(run('openssl', ['ocsp', '-index', 'index.txt', '-port', String(good), '-rsigner', 'ca.crt', '-rkey', 'ca.key', '-CA', 'ca.crt', '-nmin', '60'], { cwd: d }));
    responders.push(run('openssl', ['ocsp', '-index', 'index.txt', '-port', String(forged), '-rsigner', 'rogue.crt', '-rkey', 'rogue.key', '-CA', 'ca.crt', '-nmin', '60'], { cwd: d }));
    // Ready when they say so: a probe connection would hold `openssl ocsp`, which serves one client at a time.
    await waitFor('the OCSP responders', () => {
      for (const r of responders) if (r.child.exitCode !== null) throw new Error(`openssl ocsp exited: ${r.out()}`);
      return responders.every((r) => r.out().includes('waiting for OCSP client connections'));
    });
    // The fixed response for file.test, fetched once as an administrator would.
    openssl(d, ['ocsp', '-issuer', 'ca.crt', '-cert', 'file.leaf', '-url', `http://127.0.0.1:${good}`, '-respout', 'file.der', '-noverify']);
    ({ proxy, nginx, ports } = await startSideBySide(d, (port, who) => conf(port, d, who), withNginx));
  });
  after(async () => {
    await proxy?.stop('SIGQUIT');
    await nginx?.stop('SIGQUIT');
    for (const r of responders) await r.stop('SIGKILL');
    t.cleanup();
  });

  /** Handshakes until the server has had its answer from the responder (its error log or a staple says so). */
  async function settle(port: number, name: string, who: string, failure: RegExp | undefined): Promise<Buffer | undefined> {
    let got: Buffer | undefined;
    await waitFor(`${who}: ${name}`, async () => {
      got = await stapled(port, name);
      if (got !== undefined) return true;
      return failure !== undefined && failure.test(readFileSync(join(t.dir, `${who}-info.log`), 'latin1'));
    });
    // After a failure, one more handshake: still nothing stapled.
    return got ?? stapled(port, name);
  }

  for (const who of ['proxy', 'nginx'] as const) {
    test(`${who}: a good status is stapled after the first handshake, a fixed file from the first, revoked and forged never`, async (ctx) => {
      if (who === 'nginx' && !withNginx) return ctx.skip('nginx is not installed or the test is not root');
      const port = ports[who];
      // A fixed response: from the very first handshake.
      const file = await stapled(port, 'file.test');
      assert.ok(file, 'ssl_stapling_file is stapled at once');
      assert.equal(statusOf(t.dir, file), 'good');
      // Fetched: the first handshake has nothing yet.
      assert.equal(await stapled(port, 'good.test'), undefined);
      const good = await settle(port, 'good.test', who, undefined);
      assert.ok(good);
      assert.equal(statusOf(t.dir, good), 'good');
      assert.equal(await settle(port, 'revoked.test', who, /certificate status "revoked" in the OCSP response/), undefined);
      assert.equal(await settle(port, 'forged.test', who, /OCSP_basic_verify\(\) failed|OCSP response signature is not valid/), undefined);
    });
  }
});
