/**
 * Replays nginx's own test vectors (../shared/conformance/nginx-tests, extracted from nginx/nginx-tests)
 * against tsgi-proxy and prints passed/total per vector file next to Debian nginx 1.22.1's baseline.
 *
 * How a vector is replayed (the README there): write its files, expand the placeholders, move its ports to
 * free ones, start its uwsgi daemons (the real uWSGI), start `tsgi-proxy -p DIR/ -c nginx.conf -e error.log`,
 * send each request and read until the server closes (or 1.5 s of silence), then apply the regexes to the
 * raw response; `is`/`isnt` compare the response body.
 * Skipped, with the reason printed: vectors that need a Perl backend, and vectors whose configuration
 * tsgi-proxy refuses (`-t` fails: a directive it does not implement).
 * One deliberate difference: Test::Nginx sends bare-LF request lines; node:http's llhttp refuses them (400),
 * so the request head is sent with CRLF line ends. The body is sent as recorded.
 *
 * The test fails if an assertion listed in nginx-tests-passing.json (tsgi-proxy's recorded passes) fails:
 * a ratchet, refreshed with TSGI_RECORD_NGINX_TESTS=1. TSGI_NGINX_TESTS_VERBOSE=1 lists each failed assertion.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync, chmodSync } from 'node:fs';
import { connect } from 'node:net';
import { dirname, join } from 'node:path';
import { BIN, ROOT, SHARED, canConnect, freePort, haveUwsgiPython, proxySync, run, tempDir, waitFor, type Proc } from './helpers.js';

const DIR = join(SHARED, 'conformance', 'nginx-tests');
const RATCHET = join(ROOT, 'test', 'proxy', 'nginx-tests-passing.json');

interface Vector {
  file: string;
  daemons: Array<{ code: string; args: string[] }>;
  files: Record<string, string>;
  requests: Array<{ id: number; raw: string; extra: Record<string, string> }>;
  assertions: Array<{ fn: string; linked_by: string; name: string; request_ids: number[]; expected: string; js_regex?: { source: string; flags: string } }>;
}
interface BaseResult {
  vector: string;
  name: string;
  fn: string;
  pass: boolean;
}

/** The assertions the baseline grades, in the same order. */
function graded(v: Vector): Vector['assertions'] {
  return v.assertions.filter((a) => ['like', 'unlike', 'is', 'isnt'].includes(a.fn) && (a.linked_by === 'token' || a.linked_by === 'preceding') && a.request_ids.length > 0);
}

function crlfHead(raw: string): string {
  const end = raw.indexOf('\n\n');
  if (end < 0) return raw.replace(/\r?\n/g, '\r\n');
  return raw.slice(0, end + 2).replace(/\r?\n/g, '\r\n') + raw.slice(end + 2);
}

function send(port: number, raw: string, extra: Record<string, string>): Promise<string> {
  return new Promise((res) => {
    const s = connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    let idle: NodeJS.Timeout | undefined;
    const finish = () => {
      clearTimeout(idle);
      clearTimeout(hard);
      s.destroy();
      res(Buffer.concat(chunks).toString('latin1'));
    };
    const arm = () => {
      clearTimeout(idle);
      idle = setTimeout(finish, 1500);
    };
    const hard = setTimeout(finish, 15000);
    // Silence ends the read only once the response started (keep-alive answers never close); before the
    // first byte only the hard limit applies, so a loaded machine does not change the outcome.
    s.on('data', (d) => {
      chunks.push(d);
      arm();
    });
    s.on('end', finish);
    s.on('error', finish);
    s.on('connect', () => {
      s.write(Buffer.from(crlfHead(raw), 'latin1'));
      if (extra.body !== undefined) setTimeout(() => s.write(Buffer.from(extra.body!, 'latin1')), Math.min(Number(extra.sleep ?? 0) * 1000, 2000));
    });
  });
}

/** The vector's servers could not all bind their ports: the replay is run again on other free ports. */
class PortTaken extends Error {}

/** Replays a vector, again (up to 3 times in all) when a port it picked was taken by another test. */
async function replayWithFreshPorts(v: Vector, name: string): Promise<FileResult> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await replay(v, name);
    } catch (err) {
      if (!(err instanceof PortTaken) || attempt === 3) throw err;
    }
  }
}

interface FileResult {
  vector: string;
  status: 'ran' | 'skipped';
  reason?: string;
  passed: string[];
  failed: string[];
  /** When an assertion failed: the end of the servers' output and of error.log, for the failure message. */
  debug?: string;
}

async function replay(v: Vector, name: string): Promise<FileResult> {
  const result: FileResult = { vector: name, status: 'ran', passed: [], failed: [] };
  if (v.daemons.some((d) => d.code !== 'uwsgi')) return { ...result, status: 'skipped', reason: 'needs a Perl backend' };
  if (v.daemons.length && !haveUwsgiPython()) return { ...result, status: 'skipped', reason: 'needs the real uWSGI' };
  const t = tempDir('nt');
  const procs: Proc[] = [];
  try {
    const ports = new Map<string, number>();
    const portFor = async (k: string) => {
      let p = ports.get(k);
      if (p === undefined) {
        p = await freePort();
        ports.set(k, p);
      }
      return p;
    };
    const remap = async (s: string): Promise<string> => {
      for (const m of s.matchAll(/127\.0\.0\.1:(8\d\d\d)\b|%%PORT_(\d+)%%/g)) await portFor(m[1] ?? `P${m[2]}`);
      return s
        .replace(/127\.0\.0\.1:(8\d\d\d)\b/g, (_x, p: string) => `127.0.0.1:${ports.get(p)}`)
        .replace(/%%PORT_(\d+)%%/g, (_x, n: string) => String(ports.get(`P${n}`)));
    };
    const dir = t.dir;
    const expand = (s: string) =>
      s
        .replace(/%%TEST_GLOBALS%%/g, `pid ${dir}/nginx.pid;\nerror_log ${dir}/error.log debug;`)
        .replace(/%%TEST_GLOBALS_HTTP%%/g, `root ${dir};\naccess_log ${dir}/access.log;\nclient_body_temp_path ${dir}/client_body_temp;\nproxy_temp_path ${dir}/proxy_temp;\nuwsgi_temp_path ${dir}/uwsgi_temp;`)
        .replace(/%%TESTDIR%%/g, dir);
    for (const [f, text] of Object.entries(v.files)) {
      const p = join(dir, f);
      mkdirSync(dirname(p), { recursive: true });
      writeFileSync(p, await remap(expand(text)), { encoding: 'latin1' });
      // Readable by all (workers may run as nobody), not executable: Test::Nginx writes files 0644, and
      // rewrite_if's `-x` tests expect a plain file not to be executable.
      chmodSync(p, 0o644);
    }
    if (!v.files['nginx.conf']) return { ...result, status: 'skipped', reason: 'no nginx.conf' };
    const check = proxySync(['-t', '-q', '-p', dir + '/', '-c', 'nginx.conf', '-e', 'error.log']);
    if (check.code !== 0) return { ...result, status: 'skipped', reason: check.stderr.split('\n')[0]!.replace(dir, 'DIR') };
    for (const d of v.daemons) {
      const args = await Promise.all(d.args.map((a) => remap(expand(a))));
      const p = run('uwsgi', args, { cwd: dir });
      procs.push(p);
      const sock = args[args.indexOf('--socket') + 1]!;
      // Its own line saying it bound the port, not just a connection: another test running at the same time
      // may have taken the free port first, and a connection would then reach that test's server.
      const logto = args.indexOf('--logto');
      const output = (): string => (logto === -1 ? p.out() : existsSync(args[logto + 1]!) ? readFileSync(args[logto + 1]!, 'latin1') : '');
      await waitFor('uwsgi', () => {
        if (p.child.exitCode !== null || p.child.signalCode !== null) throw new PortTaken(`uwsgi exited: ${output().split('\n').slice(-3).join(' ')}`);
        return output().includes(`bound to TCP address ${sock} `);
      });
    }
    const proxy = run(process.execPath, [BIN, '-p', dir + '/', '-c', 'nginx.conf', '-e', 'error.log'], { cwd: dir });
    procs.push(proxy);
    const mainPort = await portFor('8080');
    // Every address the configuration listens on, not only the main one: workers bind them one after the
    // other, and a vector that proxies to its own other servers would find one not bound yet.
    const listening = [...readFileSync(join(dir, 'nginx.conf'), 'latin1').matchAll(/^\s*listen\s+127\.0\.0\.1:(\d+)/gm)].map((m) => Number(m[1]));
    await waitFor('tsgi-proxy', async () => {
      if (proxy.child.exitCode !== null) throw new PortTaken(`tsgi-proxy exited: ${proxy.out()}`);
      for (const port of [mainPort, ...listening]) if (!(await canConnect(port))) return false;
      return true;
    });
    const responses = new Map<number, string>();
    for (const r of v.requests) {
      if (!r.raw) continue;
      responses.set(r.id, await send(mainPort, await remap(r.raw), r.extra));
    }
    // A server that could not bind (a port taken meanwhile by another test) makes every answer wrong.
    for (const p of procs) {
      if (p.child.exitCode !== null || p.child.signalCode !== null) throw new PortTaken(`a server exited during the replay: ${p.out().slice(-300)}`);
    }
    const errorLog = existsSync(join(dir, 'error.log')) ? readFileSync(join(dir, 'error.log'), 'latin1') : '';
    if (/Address already in use|EADDRINUSE/.test(errorLog + proxy.out())) throw new PortTaken('tsgi-proxy could not bind a port');
    for (const a of graded(v)) {
      // An assertion tied by token to several requests applies to their responses joined, as the Perl test
      // does (`like(http_get('/ok') . http_get('/ok'), ...)`); a "preceding" one to the last response.
      const resp = a.linked_by === 'token' && a.request_ids.length > 1 ? a.request_ids.map((id) => responses.get(id) ?? '').join('') : (responses.get(a.request_ids[a.request_ids.length - 1]!) ?? '');
      let ok: boolean;
      if (a.fn === 'like' || a.fn === 'unlike') {
        if (!a.js_regex) ok = false;
        else {
          // An address the vector's configuration names is moved to the port it got here, in the regex too.
          const source = a.js_regex.source.replace(/127(\\?)\.0\1\.0\1\.1:(8\d\d\d)\b/g, (x, _e: string, port: string) => (ports.has(port) ? x.slice(0, -4) + String(ports.get(port)) : x));
          const re = new RegExp(source, a.js_regex.flags);
          ok = re.test(resp) === (a.fn === 'like');
        }
      } else {
        const body = resp.slice(resp.indexOf('\r\n\r\n') + 4);
        ok = (body === a.expected) === (a.fn === 'is');
      }
      (ok ? result.passed : result.failed).push(a.name);
    }
    if (result.failed.length > 0) {
      const uwsgiLog = existsSync(join(dir, 'uwsgi_log')) ? readFileSync(join(dir, 'uwsgi_log'), 'latin1') : '';
      result.debug = [`${name}: error.log: ${errorLog.slice(-600)}`, `uwsgi_log: ${uwsgiLog.slice(-600)}`, ...procs.map((p) => `${p.child.spawnfile}: ${p.out().slice(-600)}`)].join('\n');
    }
    return result;
  } finally {
    for (const p of procs.reverse()) {
      // A graceful stop, with a safety limit: a proxy that does not stop is reported, not waited on forever.
      const killer = setTimeout(() => p.child.kill('SIGKILL'), 10000);
      await p.stop('SIGQUIT').catch(() => undefined);
      clearTimeout(killer);
    }
    t.cleanup();
  }
}

const present = existsSync(join(DIR, 'index.json'));

test('nginx-tests replay: passed/total per vector file against Debian nginx 1.22.1', { skip: present ? false : `no conformance data at ${DIR} (set TSGI_SHARED)`, timeout: 240000 }, async () => {
  const baseline = (JSON.parse(readFileSync(join(DIR, 'baseline-nginx-1.22.1.json'), 'utf8')) as { results: BaseResult[] }).results;
  const names = readdirSync(join(DIR, 'vectors')).filter((f) => f.endsWith('.json')).sort();
  const results: FileResult[] = [];
  const queue = [...names];
  await Promise.all(
    Array.from({ length: 3 }, async () => {
      for (let n = queue.shift(); n !== undefined; n = queue.shift()) {
        const v = JSON.parse(readFileSync(join(DIR, 'vectors', n), 'utf8')) as Vector;
        results.push(await replayWithFreshPorts(v, n));
      }
    }),
  );
  results.sort((a, b) => a.vector.localeCompare(b.vector));
  const lines: string[] = ['vector                                  tsgi-proxy   nginx-1.22.1'];
  let ours = 0;
  let oursTotal = 0;
  let theirsOnRan = 0;
  const nowPassing: string[] = [];
  for (const r of results) {
    const base = baseline.filter((b) => b.vector === r.vector);
    const basePass = base.filter((b) => b.pass).length;
    if (r.status === 'skipped') {
      lines.push(`${r.vector.padEnd(40)}skipped      ${base.length ? `${basePass}/${base.length}` : '-'}   (${r.reason})`);
      continue;
    }
    const total = r.passed.length + r.failed.length;
    ours += r.passed.length;
    oursTotal += total;
    theirsOnRan += basePass;
    lines.push(`${r.vector.padEnd(40)}${`${r.passed.length}/${total}`.padEnd(13)}${base.length ? `${basePass}/${base.length}` : '-'}`);
    if (process.env.TSGI_NGINX_TESTS_VERBOSE === '1') for (const f of r.failed) lines.push(`    failed: ${f}`);
    r.passed.forEach((n) => nowPassing.push(`${r.vector}: ${n}`));
  }
  lines.push(`total on the vectors replayed: tsgi-proxy ${ours}/${oursTotal}, nginx 1.22.1 ${theirsOnRan}/${oursTotal}`);
  console.log(lines.join('\n'));
  if (process.env.TSGI_RECORD_NGINX_TESTS === '1') writeFileSync(RATCHET, JSON.stringify(nowPassing.sort(), null, 1) + '\n');
  const recorded = existsSync(RATCHET) ? (JSON.parse(readFileSync(RATCHET, 'utf8')) as string[]) : [];
  const lost = recorded.filter((x) => !nowPassing.includes(x));
  const why = results.filter((r) => r.debug !== undefined && lost.some((x) => x.startsWith(`${r.vector}: `))).map((r) => r.debug).join('\n');
  assert.deepEqual(lost, [], `assertions tsgi-proxy passed before and fails now\n${why}`);
  assert.ok(results.some((r) => r.status === 'ran'));
});
