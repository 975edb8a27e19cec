/**
 * TLS: `listen ... ssl` with ssl_certificate/ssl_certificate_key (certificates made with the openssl
 * command), SNI choosing the server's certificate, ssl_protocols limiting versions, and $scheme/$https.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { connect as tlsConnect } from 'node:tls';
import { join } from 'node:path';
import { freePort, have, proxySync, startProxy, tempDir } from './helpers.js';

function makeCert(dir: string, cn: string): void {
  const r = spawnSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', `/CN=${cn}`, '-keyout', join(dir, `${cn}.key`), '-out', join(dir, `${cn}.crt`)], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(r.stderr);
}

function tlsGet(port: number, servername: string, path: string, opts: { maxVersion?: 'TLSv1.2' | 'TLSv1.3' } = {}): Promise<{ cn: string; raw: string; protocol: string }> {
  return new Promise((res, rej) => {
    const s = tlsConnect({ port, host: '127.0.0.1', servername, rejectUnauthorized: false, ...opts }, () => {
      const cn = String(s.getPeerCertificate().subject?.CN ?? '');
      const protocol = s.getProtocol() ?? '';
      let raw = '';
      s.setEncoding('latin1');
      s.on('data', (d) => (raw += d));
      s.on('end', () => res({ cn, raw, protocol }));
      s.write(`GET ${path} HTTP/1.1\r\nHost: ${servername}\r\nConnection: close\r\n\r\n`);
    });
    s.on('error', rej);
  });
}

test('listen ssl serves HTTPS with the certificate of the server the client names (SNI) and ssl_protocols', { skip: have('openssl') ? false : 'the openssl command is not installed' }, async () => {
  const t = tempDir('tls');
  try {
    makeCert(t.dir, 'one.test');
    makeCert(t.dir, 'two.test');
    const port = await freePort();
    const port13 = await freePort();
    writeFileSync(
      join(t.dir, 'nginx.conf'),
      `events {}
http {
  access_log off;
  ssl_protocols TLSv1.2 TLSv1.3;
  server {
    listen 127.0.0.1:${port} ssl;
    server_name one.test;
    ssl_certificate one.test.crt;
    ssl_certificate_key one.test.key;
    location / { return 200 "one $scheme $https"; }
  }
  server {
    listen 127.0.0.1:${port} ssl;
    server_name two.test;
    ssl_certificate two.test.crt;
    ssl_certificate_key two.test.key;
    location / { return 200 "two $scheme"; }
  }
  server {
    listen 127.0.0.1:${port13} ssl;
    ssl_protocols TLSv1.3;
    ssl_certificate one.test.crt;
    ssl_certificate_key one.test.key;
    location / { return 200 "tls13"; }
  }
}
`,
    );
    assert.equal(proxySync(['-t', '-p', t.dir, '-c', 'nginx.conf']).code, 0);
    const p = await startProxy(t.dir, 'nginx.conf', port);
    try {
      const one = await tlsGet(port, 'one.test', '/');
      assert.equal(one.cn, 'one.test');
      assert.match(one.raw, /\r\n\r\none https on$/);
      const two = await tlsGet(port, 'two.test', '/');
      assert.equal(two.cn, 'two.test');
      assert.match(two.raw, /\r\n\r\ntwo https$/);
      const v13 = await tlsGet(port13, 'x', '/');
      assert.equal(v13.protocol, 'TLSv1.3');
      await assert.rejects(tlsGet(port13, 'x', '/', { maxVersion: 'TLSv1.2' }));
    } finally {
      await p.stop('SIGQUIT');
    }
  } finally {
    t.cleanup();
  }
});

test('listen ssl without a certificate is a configuration error naming the listen line', () => {
  const t = tempDir('tlsbad');
  try {
    writeFileSync(join(t.dir, 'nginx.conf'), 'events {}\nhttp {\n server {\n  listen 127.0.0.1:8443 ssl;\n }\n}\n');
    const r = proxySync(['-t', '-p', t.dir, '-c', 'nginx.conf']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /\[emerg\] no "ssl_certificate" is defined for the "listen \.\.\. ssl" directive in .*nginx\.conf:4/);
  } finally {
    t.cleanup();
  }
});

test('over TLS, a connection has its number ($connection) and its start (keepalive_time closes it after its time)', { skip: have('openssl') ? false : 'the openssl command is not installed' }, async () => {
  const t = tempDir('tlsconn');
  try {
    makeCert(t.dir, 'one.test');
    const port = await freePort();
    writeFileSync(join(t.dir, 'nginx.conf'), `events {}
http {
  access_log off;
  keepalive_time 1s;
  server {
    listen 127.0.0.1:${port} ssl;
    ssl_certificate one.test.crt;
    ssl_certificate_key one.test.key;
    location / { return 200 "$connection:$connection_requests\\n"; }
  }
}
`);
    const p = await startProxy(t.dir, 'nginx.conf', port);
    try {
      // Three requests on one connection, the third after keepalive_time: it is answered, then the
      // connection is closed (the answer says Connection: close).
      const raw = await new Promise<string>((res, rej) => {
        const s = tlsConnect({ port, host: '127.0.0.1', servername: 'one.test', rejectUnauthorized: false }, () => {
          s.write('GET / HTTP/1.1\r\nHost: one.test\r\n\r\nGET / HTTP/1.1\r\nHost: one.test\r\n\r\n');
          setTimeout(() => s.write('GET / HTTP/1.1\r\nHost: one.test\r\n\r\n'), 1300);
        });
        let got = '';
        s.setEncoding('latin1');
        s.on('data', (d) => (got += d));
        s.on('end', () => res(got));
        s.on('error', rej);
      });
      const bodies = [...raw.matchAll(/\r\n\r\n(\d+):(\d+)\n/g)].map((m) => [m[1], m[2]]);
      assert.equal(bodies.length, 3, raw);
      assert.notEqual(bodies[0]![0], '0', 'a TLS connection has a number');
      assert.deepEqual(bodies.map((b) => b[0]), [bodies[0]![0], bodies[0]![0], bodies[0]![0]]);
      assert.deepEqual(bodies.map((b) => b[1]), ['1', '2', '3']);
      assert.match(raw.slice(raw.lastIndexOf('HTTP/1.1 200')), /\r\nConnection: close\r\n/);
    } finally {
      await p.stop('SIGQUIT');
    }
  } finally {
    t.cleanup();
  }
});
