/**
 * Node apps: tsgi's Node workers against a bare node:cluster server, same JS hello app, same machine, same run.
 *
 *   direct:  wrk → tsgi --http-socket, 2 workers          vs  wrk → node:cluster, 2 workers
 *   nginx:   wrk → nginx → uwsgi_pass unix → tsgi, 2 wkrs  vs  wrk → nginx → proxy_pass (keep-alive upstream) → node:cluster
 * and, for information, the same hello through tsgi's WSGI-style and Fetch contracts (direct HTTP).
 *
 * Every server runs for the whole benchmark; the configurations take turns, round after round, so a slow
 * moment of the machine hits them all alike. The medians of the rounds and their ratios are reported.
 *
 *   npm run bench:node -- [--rounds N] [--seconds S] [--connections C] [--out FILE]
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, '../../..');
const src = join(repo, 'bench/node');
const tsgiBin = join(repo, 'bin/tsgi');

function arg(name: string, fallback: number): number;
function arg(name: string, fallback: string): string;
function arg(name: string, fallback: number | string): number | string {
  const i = process.argv.indexOf(`--${name}`);
  if (i === -1) return fallback;
  return typeof fallback === 'number' ? Number(process.argv[i + 1]) : process.argv[i + 1]!;
}

const ROUNDS = arg('rounds', 5);
const SECONDS = arg('seconds', 5);
const CONNECTIONS = arg('connections', 50);
const OUT = arg('out', join(repo, 'bench/RESULTS-node.md'));

async function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = net.createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => res(p));
    });
  });
}

function start(cmd: string, args: string[], readyRe: RegExp, cwd?: string): Promise<ChildProcess> {
  return new Promise((res, rej) => {
    const child = spawn(cmd, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    const on = (d: Buffer): void => {
      out += d.toString();
      if (readyRe.test(out)) {
        child.stdout!.removeAllListeners('data');
        child.stderr!.removeAllListeners('data');
        child.stdout!.resume();
        child.stderr!.resume();
        res(child);
      }
    };
    child.stdout!.on('data', on);
    child.stderr!.on('data', on);
    child.on('exit', (code) => rej(new Error(`${cmd} exited (${code}) before it was ready:\n${out}`)));
  });
}

async function waitPort(port: number): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const ok = await new Promise<boolean>((r) => {
      const c = net.connect(port, '127.0.0.1', () => {
        c.destroy();
        r(true);
      });
      c.on('error', () => r(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`nothing listens on ${port}`);
}

interface Run {
  rps: number;
  p99ms: number;
  errors: string;
  requests: number;
  /** CPU time (user + system) the serving processes spent per request, in µs. */
  cpuUs: number;
}

const TICK_US = 1e6 / 100; // /proc/PID/stat counts CPU time in clock ticks (CLK_TCK = 100 on Linux)

/** CPU time (µs) used so far by the processes `roots` and all their descendants. */
function treeCpuUs(roots: readonly number[]): number {
  const stats = new Map<number, { ppid: number; cpu: number }>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const text = readFileSync(`/proc/${name}/stat`, 'latin1');
      const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
      stats.set(Number(name), { ppid: Number(f[1]), cpu: (Number(f[11]) + Number(f[12])) * TICK_US });
    } catch {
      /* gone meanwhile */
    }
  }
  const wanted = new Set(roots);
  for (let grew = true; grew;) {
    grew = false;
    for (const [pid, st] of stats) if (!wanted.has(pid) && wanted.has(st.ppid)) (wanted.add(pid), (grew = true));
  }
  let total = 0;
  for (const pid of wanted) total += stats.get(pid)?.cpu ?? 0;
  return total;
}

function wrk(url: string, seconds: number, servers: readonly number[] = []): Run {
  const cpu0 = treeCpuUs(servers);
  const r = spawnSync('wrk', ['-t1', `-c${CONNECTIONS}`, `-d${seconds}s`, '--latency', url], { encoding: 'utf8' });
  const out = r.stdout;
  const rps = Number(/^Requests\/sec:\s+([\d.]+)/m.exec(out)?.[1] ?? NaN);
  const p99 = /^\s+99%\s+([\d.]+)(us|ms|s)/m.exec(out);
  const p99ms = p99 ? Number(p99[1]) * ({ us: 0.001, ms: 1, s: 1000 } as Record<string, number>)[p99[2]!]! : NaN;
  const errs = [/Socket errors:[^\n]*/.exec(out)?.[0], /Non-2xx or 3xx responses: \d+/.exec(out)?.[0]].filter(Boolean).join('; ');
  if (!Number.isFinite(rps)) throw new Error(`wrk failed on ${url}:\n${out}\n${r.stderr}`);
  const requests = Number(/^\s+(\d+) requests in/m.exec(out)?.[1] ?? 0);
  const cpuUs = requests ? (treeCpuUs(servers) - cpu0) / requests : NaN;
  return { rps, p99ms, errors: errs, requests, cpuUs };
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

async function main(): Promise<void> {
  const tmp = mkdtempSync(join(os.tmpdir(), 'tsgi-bench-node-'));
  chmodSync(tmp, 0o755); // nginx's workers (www-data when run as root) reach the socket through it
  const procs: ChildProcess[] = [];
  const stopAll = (): void => {
    for (const p of procs.reverse()) p.kill(p.spawnfile.endsWith('nginx') ? 'SIGQUIT' : 'SIGTERM');
    procs.length = 0;
  };
  // Interrupted (Ctrl-C, timeout): the servers it started are stopped all the same.
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.on(sig, () => {
      stopAll();
      process.exit(130);
    });
  }
  const loadBefore = os.loadavg().map((x) => x.toFixed(2)).join(' ');
  try {
    const ports = { tsgi: await freePort(), cluster: await freePort(), wsgi: await freePort(), fetch: await freePort(), nginxU: await freePort(), nginxP: await freePort() };
    const sock = join(tmp, 'tsgi.sock');
    const tsgi = (extra: string[]): Promise<ChildProcess> =>
      start(tsgiBin, ['--processes', '2', '--disable-logging', ...extra], /ready: 2 worker/);
    procs.push(await tsgi(['--http-socket', `127.0.0.1:${ports.tsgi}`, '--socket', sock, '--chmod-socket', '666', '--wsgi-file', join(src, 'hello.mjs'), '--app-contract', 'listener']));
    procs.push(await start(process.execPath, [join(src, 'cluster.mjs'), String(ports.cluster), '2'], /ready/));
    procs.push(await tsgi(['--http-socket', `127.0.0.1:${ports.wsgi}`, '--wsgi-file', join(src, 'hello-wsgi.mjs')]));
    procs.push(await tsgi(['--http-socket', `127.0.0.1:${ports.fetch}`, '--wsgi-file', join(src, 'hello-fetch.mjs')]));
    mkdirSync(join(tmp, 'logs'));
    const asRoot = process.getuid?.() === 0;
    writeFileSync(join(tmp, 'nginx.conf'), `${asRoot ? 'user www-data;' : ''}
worker_processes 1;
pid ${tmp}/nginx.pid;
error_log ${tmp}/logs/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${tmp}/cb; proxy_temp_path ${tmp}/px; uwsgi_temp_path ${tmp}/uw; fastcgi_temp_path ${tmp}/fc; scgi_temp_path ${tmp}/sc;
  upstream cluster { server 127.0.0.1:${ports.cluster}; keepalive 64; }
  server {
    listen 127.0.0.1:${ports.nginxU};
    location / { include /etc/nginx/uwsgi_params; uwsgi_pass unix:${sock}; }
  }
  server {
    listen 127.0.0.1:${ports.nginxP};
    location / { proxy_pass http://cluster; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
`);
    const nginx = spawn('/usr/sbin/nginx', ['-p', tmp, '-c', join(tmp, 'nginx.conf'), '-e', join(tmp, 'logs/error.log'), '-g', 'daemon off;'], { stdio: 'ignore' });
    procs.push(nginx);
    await waitPort(ports.nginxU);
    await waitPort(ports.nginxP);

    const [tsgiP, clusterP, wsgiP, fetchP] = procs.map((p) => p.pid!);
    // The processes whose CPU time a configuration costs (each with its descendants).
    const configs: Array<[string, string, number[]]> = [
      ['tsgi HTTP, 2 workers (listener)', `http://127.0.0.1:${ports.tsgi}/`, [tsgiP!]],
      ['node:cluster, 2 workers', `http://127.0.0.1:${ports.cluster}/`, [clusterP!]],
      ['nginx → uwsgi → tsgi, 2 workers', `http://127.0.0.1:${ports.nginxU}/`, [nginx.pid!, tsgiP!]],
      ['nginx → proxy_pass → node:cluster, 2 workers', `http://127.0.0.1:${ports.nginxP}/`, [nginx.pid!, clusterP!]],
      ['tsgi HTTP, 2 workers (WSGI-style app)', `http://127.0.0.1:${ports.wsgi}/`, [wsgiP!]],
      ['tsgi HTTP, 2 workers (Fetch app)', `http://127.0.0.1:${ports.fetch}/`, [fetchP!]],
    ];
    for (const [, url] of configs) wrk(url, 1); // warm-up (JIT, connections)
    const runs = new Map<string, Run[]>(configs.map(([n]) => [n, []]));
    for (let round = 1; round <= ROUNDS; round++) {
      // Alternate the order each round so no configuration always follows the same one.
      const order = round % 2 ? configs : [...configs].reverse();
      for (const [name, url, servers] of order) {
        const r = wrk(url, SECONDS, servers);
        runs.get(name)!.push(r);
        process.stderr.write(`round ${round} ${name}: ${r.rps.toFixed(0)} req/s p99 ${r.p99ms.toFixed(2)} ms, ${r.cpuUs.toFixed(1)} µs CPU/request${r.errors ? ` (${r.errors})` : ''}\n`);
      }
    }
    const loadAfter = os.loadavg().map((x) => x.toFixed(2)).join(' ');
    const med = (n: string): number => median(runs.get(n)!.map((r) => r.rps));
    const spread = (n: string): string => {
      const xs = runs.get(n)!.map((r) => r.rps);
      return `${Math.min(...xs).toFixed(0)}–${Math.max(...xs).toFixed(0)}`;
    };
    const best = (n: string): number => Math.max(...runs.get(n)!.map((r) => r.rps));
    const cpu = (n: string): number => median(runs.get(n)!.map((r) => r.cpuUs));
    const rows = configs.map(([n]) => `| ${n} | ${med(n).toFixed(0)} | ${best(n).toFixed(0)} | ${spread(n)} | ${median(runs.get(n)!.map((r) => r.p99ms)).toFixed(2)} | ${cpu(n).toFixed(1)} | ${runs.get(n)!.map((r) => r.errors).filter(Boolean).join('; ') || 'none'} |`);
    // Other load on the machine only ever takes throughput away: the best round is the least disturbed one.
    const ratio = (a: string, b: string): string => `${(med(a) / med(b)).toFixed(3)} (best rounds: ${(best(a) / best(b)).toFixed(3)})`;
    const report = `## Node apps: tsgi vs node:cluster (${new Date().toISOString()})

Machine: ${os.cpus().length} × ${os.cpus()[0]?.model ?? '?'}, ${os.type()} ${os.release()}, node ${process.version}, ${spawnSync('/usr/sbin/nginx', ['-v'], { encoding: 'utf8' }).stderr.trim()}.
wrk -t1 -c${CONNECTIONS} -d${SECONDS}s, ${ROUNDS} rounds, configurations alternating within each round; request logging off.
Load average (1, 5, 15 min) before: ${loadBefore}; after: ${loadAfter}${Number(loadBefore.split(' ')[0]) > 1 ? ' — the machine was busy before the run: numbers are noisy' : ''}.

| configuration | median req/s | best req/s | range | median p99 ms | server CPU µs/request | errors |
|---|---:|---:|---:|---:|---:|---|
${rows.join('\n')}

Ratios of medians (and of the best rounds):
- tsgi HTTP / node:cluster: **${ratio(configs[0]![0], configs[1]![0])}** (target ≥ 0.95)
- nginx → uwsgi → tsgi / nginx → proxy_pass → node:cluster: **${ratio(configs[2]![0], configs[3]![0])}**
- WSGI-style / listener on tsgi HTTP: ${ratio(configs[4]![0], configs[0]![0])}; Fetch / listener: ${ratio(configs[5]![0], configs[0]![0])}

CPU per request (user + system time of the serving processes and their children, wrk excluded) is much less
disturbed by other load than req/s; where the servers are CPU-bound, its inverse ratio predicts the
throughput ratio on a quiet machine:
- node:cluster / tsgi HTTP CPU per request: **${(cpu(configs[1]![0]) / cpu(configs[0]![0])).toFixed(3)}** (≥ 0.95 ⇔ tsgi within 5% of node:cluster)
- proxy_pass path / uwsgi path CPU per request: ${(cpu(configs[3]![0]) / cpu(configs[2]![0])).toFixed(3)}
`;
    process.stdout.write(`\n${report}`);
    let previous = '';
    try {
      previous = readFileSync(OUT, 'utf8');
    } catch {
      previous = '# Benchmark results: Node apps\n\nProduced by `npm run bench:node` (bench/node/run.ts); newest first.\n';
    }
    const [title, ...rest] = previous.split(/\n(?=## )/);
    writeFileSync(OUT, [title!.trimEnd(), report.trimEnd(), ...rest.map((r) => r.trimEnd())].join('\n\n') + '\n');
    process.stderr.write(`written to ${OUT}\n`);
  } finally {
    stopAll();
  }
}

main().catch((err) => {
  process.stderr.write(`${(err as Error).stack ?? err}\n`);
  process.exit(1);
});
