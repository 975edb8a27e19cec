/**
 * `split_clients` next to the real nginx (Debian's 1.22.1): 2000 keys sent to both (pipelined on one
 * connection), each key's bucket compared — nginx's MurmurHash2 and its bounds (decimals, `*`, parts that do
 * not reach 100% leaving the value empty). `-t` errors with file:line as nginx words them.
 * Without nginx (or root) the bucket counts nginx gave are checked.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { have, proxySync, rawRequest, tempDir, startSideBySide, type Proc, confErrorDiffs } from './helpers.js';

const withNginx = have('/usr/sbin/nginx') && process.getuid?.() === 0;

const conf = (port: number): string => `events {}
http {
  access_log off;
  split_clients "\${arg_k}salt" $s1 { 0.5% a; 2% b; 10.25% c; 33.3% d; * e; }
  split_clients $arg_k $s2 { 50% x; 25.5% y; }
  split_clients "$arg_k$arg_k" $s3 { 99.99% in; .01% edge; }
  server {
    listen 127.0.0.1:${port};
    location / { return 200 "<$arg_k:$s1:$s2:$s3>"; }
  }
}
`;

const KEYS = Array.from({ length: 2000 }, (_x, i) => (i % 7 === 0 ? `user-${i * 7919}` : i % 3 === 0 ? `${i}` : `k${i.toString(36)}x${i % 5}`));

async function buckets(port: number): Promise<string[]> {
  // 500 a connection: keepalive_requests (1000 by default) closes a connection after that many.
  const out: string[] = [];
  for (let b = 0; b < KEYS.length; b += 500) {
    const batch = KEYS.slice(b, b + 500);
    const reqs = batch.map((k, i) => `GET /?k=${k} HTTP/1.1\r\nHost: x\r\n${i === batch.length - 1 ? 'Connection: close\r\n' : ''}\r\n`).join('');
    const r = await rawRequest(port, reqs, 30000);
    for (const m of r.raw.matchAll(/<([^>]*)>/g)) out.push(m[1]!);
  }
  return out;
}

/** How many of KEYS nginx 1.22.1 put in each bucket. */
const SEEN_COUNTS = { 's1=a': 13, 's1=b': 35, 's1=c': 210, 's1=d': 654, 's1=e': 1088, 's2=': 476, 's2=x': 1007, 's2=y': 517, 's3=in': 2000 };

function counts(list: string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const l of list) {
    const [, s1, s2, s3] = l.split(':');
    for (const k of [`s1=${s1}`, `s2=${s2}`, `s3=${s3}`]) out[k] = (out[k] ?? 0) + 1;
  }
  return Object.fromEntries(Object.entries(out).sort());
}

describe('split_clients next to nginx', () => {
  let t: ReturnType<typeof tempDir>;
  let proxy: Proc;
  let nginx: Proc | undefined;
  const ports = { proxy: 0, nginx: 0 };

  before(async () => {
    t = tempDir('split');
    const both = await startSideBySide(t.dir, conf, withNginx);
    ({ proxy, nginx } = both);
    Object.assign(ports, both.ports);
  });

  after(async () => {
    await proxy?.stop('SIGQUIT');
    await nginx?.stop('SIGQUIT');
    t?.cleanup();
  });

  test('every key lands in the bucket nginx gives it', async () => {
    const ours = await buckets(ports.proxy);
    assert.equal(ours.length, KEYS.length);
    if (nginx) assert.deepEqual(ours, await buckets(ports.nginx));
    assert.deepEqual(counts(ours), SEEN_COUNTS);
  });

  test('-t errors as nginx words them, with file:line', () => {
    const cases: Array<[string, string]> = [
      ['split_clients $arg_a $b { 50% a; 60% b; }', 'percent total is greater than 100%'],
      ['split_clients $arg_a $b { * a; 50% b; }', 'percent total is greater than 100%'],
      ['split_clients $arg_a $b { 50 a; }', 'invalid percent value "50"'],
      ['split_clients $arg_a $b { 0% a; }', 'invalid percent value "0%"'],
      ['split_clients $arg_a $b { 0.555% a; }', 'invalid percent value "0.555%"'],
      ['split_clients $arg_a $b { 1.2.3% a; }', 'invalid percent value "1.2.3%"'],
      ['split_clients $arg_a $b { -1% a; }', 'invalid percent value "-1%"'],
      ['split_clients $arg_a $b { include foo; }', 'invalid percent value "include"'],
      ['split_clients $arg_a b { 50% a; }', 'invalid variable name "b"'],
      ['split_clients $arg_a $host { 50% a; }', 'the duplicate "host" variable'],
      ['split_clients $arg_a $b { 50% a {} }', 'unexpected "{"'],
    ];
    const dir = join(t.dir, 'bad');
    const diffs = confErrorDiffs(dir, cases, withNginx);
    // Where nginx reads a missing value or ignores an extra one, tsgi-proxy refuses the line.
    for (const entry of ['50%;', '50% a b;']) {
      writeFileSync(join(dir, 'bad.conf'), `events {}\nhttp {\n  split_clients $arg_a $b { ${entry} }\n}\n`);
      const ours = proxySync(['-t', '-q', '-p', dir + '/', '-c', 'bad.conf', '-e', 'stderr']);
      if (ours.code !== 1 || !ours.stderr.includes('invalid number of the split_clients parameters')) diffs.push(`${entry}: ${ours.stderr}`);
    }
    assert.deepEqual(diffs, []);
  });
});
