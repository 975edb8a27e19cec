/**
 * `map` next to the real nginx (Debian's 1.22.1): the same configuration served by both, the same requests,
 * the same answers — exact keys (case-insensitive), `\` escapes, '' , regexes with captures (numbered and named,
 * and how they replace a location's captures), `hostnames` wildcards, `volatile`, `include`, values with
 * variables, a map used before it is defined, `set` over a map variable; and the `-t` errors with file:line.
 * Without nginx (or root) the comparison is skipped and tsgi-proxy is checked against the answers nginx gave.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { have, rawRequest, tempDir, startSideBySide, type Proc, confErrorDiffs } from './helpers.js';

const withNginx = have('/usr/sbin/nginx') && process.getuid?.() === 0;

const conf = (dir: string, port: number): string => `events {}
http {
  access_log off;
  map_hash_max_size 2048;
  map_hash_bucket_size 64;
  map $arg_a $m1 { default d; Foo exact; ~^re(\\d+)$ rx$1; ~*^CI(?<nm>x+) ci$nm; \\default esc; '' empty; include ${dir}/more.map; }
  map $host $m2 { hostnames; default no; *.example.com wild; example.com exact; .foo.org dotfoo; www.bar.* tail; *.a.example.com deeper; }
  map $uri $m3 { volatile; default $uri-$request_method; }
  map $uri $m6 { default $uri; }
  map "$arg_x:$arg_y" $m4 { ~^(?<left>\\w+):(\\w+)$ "$left+$2"; default none; }
  map $arg_s $m5 { default map; }
  server {
    listen 127.0.0.1:${port};
    location / { return 200 "m1=$m1 m2=$m2 one=$1 early=$early\\n"; }
    location ~ ^/loc(\\d)$ { return 200 "m1=$m1 one=$1\\n"; }
    location /v { set $before $m3; set $b6 $m6; rewrite ^ /changed; return 200 "m3=$before/$m3 m6=$b6/$m6 m4=$m4\\n"; }
    location /s { set $m5 setvalue; return 200 "m5=$m5\\n"; }
  }
  map $arg_e $early { default late; 1 one; }
}
`;

const CASES = ['/?a=foo', '/?a=FOO', '/?a=re12', '/?a=ci', '/?a=cIxx', '/?a=default', '/?a=', '/', '/?a=inc', '/?a=Re1',
  '/loc5?a=re7', '/loc5?a=zz', '/?e=1', '/v?v=q&x=ab&y=cd', '/v?x=a:b', '/s?s=1'];
const HOSTS = ['a.example.com', 'example.com', 'x.foo.org', 'foo.org', 'www.bar.net', 'EXAMPLE.com.', 'z.com', 'b.a.example.com', 'a.example.com.x'];

/** What nginx 1.22.1 answered, in the order CASES then HOSTS. */
const SEEN = [
  'm1=exact m2=no one= early=late', 'm1=exact m2=no one= early=late', 'm1=rx12 m2=no one=12 early=late', 'm1=d m2=no one= early=late',
  'm1=cixx m2=no one=xx early=late', 'm1=esc m2=no one= early=late', 'm1=empty m2=no one= early=late', 'm1=empty m2=no one= early=late',
  'm1=included m2=no one= early=late', 'm1=d m2=no one= early=late', 'm1=rx7 one=7', 'm1=d one=5', 'm1=empty m2=no one= early=one',
  'm3=/v-GET//changed-GET m6=/v//v m4=ab+cd', 'm3=/v-GET//changed-GET m6=/v//v m4=none', 'm5=setvalue',
  'm1=empty m2=wild one= early=late', 'm1=empty m2=exact one= early=late', 'm1=empty m2=dotfoo one= early=late',
  'm1=empty m2=dotfoo one= early=late', 'm1=empty m2=tail one= early=late', 'm1=empty m2=exact one= early=late',
  'm1=empty m2=no one= early=late', 'm1=empty m2=deeper one= early=late', 'm1=empty m2=no one= early=late',
];

async function answers(port: number): Promise<string[]> {
  const out: string[] = [];
  const ask = async (path: string, host: string): Promise<void> => {
    const r = await rawRequest(port, `GET ${path} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);
    out.push(`${r.status === 200 ? '' : r.status + ' '}${r.body.trimEnd()}`);
  };
  for (const c of CASES) await ask(c, 'localhost');
  for (const h of HOSTS) await ask('/', h);
  return out;
}

describe('map next to nginx', () => {
  let t: ReturnType<typeof tempDir>;
  let proxy: Proc;
  let nginx: Proc | undefined;
  const ports = { proxy: 0, nginx: 0 };

  before(async () => {
    t = tempDir('map');
    writeFileSync(join(t.dir, 'more.map'), 'inc included;\n');
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

  test('-t errors as nginx words them, with file:line', () => {
    const cases: Array<[string, string]> = [
      ['map $a $b { x; }', 'invalid number of the map parameters'],
      ['map $a $b { x 1 2; }', 'invalid number of the map parameters'],
      ['map $a $b { default 1; default 2; }', 'duplicate default map parameter'],
      ['map $a $b { x 1; X 2; }', 'conflicting parameter "x"'],
      ['map $a $host { x 1; }', 'the duplicate "host" variable'],
      ['map $a $b { hostnames; *.x.* 1; }', 'invalid hostname or wildcard "*.x.*"'],
      ['map $a b { x 1; }', 'invalid variable name "b"'],
    ];
    const dir = join(t.dir, 'bad');
    const diffs = confErrorDiffs(dir, cases, withNginx, true);
    assert.deepEqual(diffs, []);
  });
});
