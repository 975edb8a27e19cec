/**
 * tsgi-proxy against nginx, in one run, on the same backends and files:
 *   uwsgi      → the real uWSGI serving the guide's hello app (uwsgi_pass, unix socket)
 *   tsgi-link  → tsgi itself (2 Python workers, the same app) — tsgi-proxy keeps persistent links to it
 *                (docs/protocol-keepalive.md), nginx uses one connection per request (it has no such extension)
 *   static-1k, static-1m → a 1 KB and a 1 MB file
 * Each case alternates the two peers and repeats; the median run is reported with p50/p99 and the ratio
 * tsgi-proxy/nginx. Then the issue's own comparison, tsgi-proxy→tsgi against nginx→uWSGI, in a phase of its
 * own where those two alternate. Load: wrk, 2 threads, 50 connections.
 * Usage: node dist/bench/proxy/run.js [seconds=5] [repeats=3]
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir, cpus } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(fileURLToPath(new URL('.', import.meta.url)), '../../..');
const seconds = Number(process.argv[2] ?? 5);
const repeats = Number(process.argv[3] ?? 3);

const HELLO = `def application(environ, start_response):
    start_response('200 OK', [('Content-Type','text/html')])
    return [b"<h1 style='color:blue'>Hello There!</h1>"]
`;

function sh(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  return (r.stdout + r.stderr).trim();
}

function waitSocket(target: string | number): Promise<void> {
  return new Promise((res, rej) => {
    const until = Date.now() + 20000;
    const attempt = () => {
      const s = typeof target === 'string' ? connect(target) : connect(target, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        res();
      });
      s.once('error', () => (Date.now() > until ? rej(new Error(`no ${target}`)) : setTimeout(attempt, 50)));
    };
    attempt();
  });
}

interface Run {
  rps: number;
  p50: number;
  p99: number;
  errors: number;
}

function ms(v: string): number {
  const m = /^([\d.]+)(us|ms|s)$/.exec(v);
  if (!m) return Number.NaN;
  const n = Number(m[1]);
  return m[2] === 'us' ? n / 1000 : m[2] === 's' ? n * 1000 : n;
}

function wrk(url: string): Run {
  const out = sh('wrk', ['-t2', '-c50', `-d${seconds}s`, '--latency', url]);
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? 0);
  const p50 = ms(/\s50%\s+(\S+)/.exec(out)?.[1] ?? '');
  const p99 = ms(/\s99%\s+(\S+)/.exec(out)?.[1] ?? '');
  const e = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0);
  const errors = (e ? Number(e[1]) + Number(e[2]) + Number(e[3]) + Number(e[4]) : 0) + non2xx;
  return { rps, p50, p99, errors };
}

function median(runs: Run[]): Run {
  const sorted = [...runs].sort((a, b) => a.rps - b.rps);
  return sorted[Math.floor(sorted.length / 2)]!;
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'tsgi-proxy-bench-'));
  // nginx workers run as an unprivileged user when started as root: they must reach the files and sockets.
  chmodSync(dir, 0o755);
  const procs: ChildProcess[] = [];
  const start = (cmd: string, args: string[]) => {
    const p = spawn(cmd, args, { cwd: dir, stdio: 'ignore' });
    procs.push(p);
    return p;
  };
  try {
    writeFileSync(join(dir, 'hello.py'), HELLO);
    writeFileSync(join(dir, '1k.txt'), 'x'.repeat(1024));
    writeFileSync(join(dir, '1m.bin'), Buffer.alloc(1024 * 1024, 120));
    start('uwsgi', ['--plugin', 'python3', '--master', '--processes', '2', '--chmod-socket=666', '--socket', join(dir, 'uwsgi.sock'), '--wsgi-file', 'hello.py', '--disable-logging', '--die-on-term']);
    start(process.execPath, [join(ROOT, 'bin/tsgi'), '--master', '--processes', '2', '--chmod-socket=666', '--socket', join(dir, 'tsgi.sock'), '--wsgi-file', 'hello.py', '--disable-logging']);
    await waitSocket(join(dir, 'uwsgi.sock'));
    await waitSocket(join(dir, 'tsgi.sock'));
    const nginxPort = 18000 + Math.floor(Math.random() * 1000);
    const proxyPort = nginxPort + 1000;
    const conf = (port: number, pid: string) => `pid ${dir}/${pid}.pid;
worker_processes 2;
events { worker_connections 4096; }
http {
  access_log off;
  error_log ${dir}/${pid}-error.log;
  include /etc/nginx/mime.types;
  upstream tsgi { server unix:${dir}/tsgi.sock; keepalive 64; }
  server {
    listen 127.0.0.1:${port};
    root ${dir};
    location = /uwsgi { include /etc/nginx/uwsgi_params; uwsgi_pass unix:${dir}/uwsgi.sock; }
    location = /tsgi { include /etc/nginx/uwsgi_params; uwsgi_pass tsgi; }
    location / { }
  }
}
`;
    writeFileSync(join(dir, 'nginx.conf'), conf(nginxPort, 'nginx'));
    writeFileSync(join(dir, 'proxy.conf'), conf(proxyPort, 'proxy'));
    start('/usr/sbin/nginx', ['-p', dir, '-c', join(dir, 'nginx.conf'), '-e', join(dir, 'nginx-start.log'), '-g', 'daemon off;']);
    start(process.execPath, [join(ROOT, 'bin/tsgi-proxy'), '-p', dir, '-c', join(dir, 'proxy.conf'), '-e', join(dir, 'proxy-start.log'), '-g', 'daemon off;']);
    await waitSocket(nginxPort);
    await waitSocket(proxyPort);

    const cases: Array<[string, string]> = [
      ['uwsgi (guide app on uWSGI)', '/uwsgi'],
      ['tsgi (guide app on tsgi, persistent link)', '/tsgi'],
      ['static 1 KB', '/1k.txt'],
      ['static 1 MB', '/1m.bin'],
    ];
    const lines: string[] = [];
    lines.push(`tsgi-proxy benchmark, ${new Date().toISOString()}, ${cpus().length} cores (${cpus()[0]?.model ?? '?'})`);
    lines.push(`nginx ${sh('/usr/sbin/nginx', ['-v']).replace('nginx version: ', '')}, ${sh('uwsgi', ['--version'])} uWSGI, Node ${process.version}, ${sh('wrk', ['-v']).split('\n')[0]}`);
    lines.push(`wrk -t2 -c50 -d${seconds}s, ${repeats} alternating runs per peer, median run shown`);
    lines.push('');
    lines.push('| case | nginx req/s | nginx p50/p99 ms | tsgi-proxy req/s | tsgi-proxy p50/p99 ms | ratio | errors (nginx/tsgi-proxy) |');
    lines.push('|---|---|---|---|---|---|---|');
    const medians = new Map<string, { nginx: Run; proxy: Run }>();
    for (const [name, path] of cases) {
      // Warm-up, not counted: both peers (tsgi-proxy's JIT and its kept links to the backend).
      wrk(`http://127.0.0.1:${nginxPort}${path}`);
      wrk(`http://127.0.0.1:${proxyPort}${path}`);
      const n: Run[] = [];
      const t: Run[] = [];
      for (let i = 0; i < repeats; i++) {
        t.push(wrk(`http://127.0.0.1:${proxyPort}${path}`));
        n.push(wrk(`http://127.0.0.1:${nginxPort}${path}`));
      }
      const nm = median(n);
      const tm = median(t);
      medians.set(path, { nginx: nm, proxy: tm });
      const line = `| ${name} | ${nm.rps.toFixed(0)} | ${nm.p50.toFixed(2)}/${nm.p99.toFixed(2)} | ${tm.rps.toFixed(0)} | ${tm.p50.toFixed(2)}/${tm.p99.toFixed(2)} | ${(tm.rps / nm.rps).toFixed(2)}x | ${n.reduce((s, r) => s + r.errors, 0)}/${t.reduce((s, r) => s + r.errors, 0)} |`;
      lines.push(line);
      console.log(line);
    }
    const viaUwsgi = medians.get('/uwsgi');
    const viaTsgi = medians.get('/tsgi');
    if (viaUwsgi && viaTsgi) {
      lines.push('');
      lines.push(`From the table (medians of two different minutes): tsgi-proxy→tsgi (${viaTsgi.proxy.rps.toFixed(0)} req/s) against nginx→uWSGI (${viaUwsgi.nginx.rps.toFixed(0)} req/s): ${(viaTsgi.proxy.rps / viaUwsgi.nginx.rps).toFixed(2)}x.`);
    }
    // The comparison in its own phase: its two sides alternate run by run, so that a change in the
    // machine's speed (a shared VM drifts by 20% from minute to minute here) falls on both.
    const a: Run[] = [];
    const b: Run[] = [];
    for (let i = 0; i < repeats; i++) {
      b.push(wrk(`http://127.0.0.1:${proxyPort}/tsgi`));
      a.push(wrk(`http://127.0.0.1:${nginxPort}/uwsgi`));
    }
    const am = median(a);
    const bm = median(b);
    // Each tsgi-proxy run against the nginx run right after it: the median of these ratios is the headline (a
    // ratio of the two medians can pair a fast minute with a slow one).
    const ratios = a.map((r, i) => b[i]!.rps / r.rps);
    const mid = [...ratios].sort((x, y) => x - y)[Math.floor(ratios.length / 2)]!;
    lines.push(`The issue's comparison, alternating: run by run ${ratios.map((r) => r.toFixed(2)).join(', ')}: **${mid.toFixed(2)}x** (median; target ≥ 1.0x). Medians: tsgi-proxy→tsgi ${bm.rps.toFixed(0)} req/s (p50/p99 ${bm.p50.toFixed(2)}/${bm.p99.toFixed(2)} ms), nginx→uWSGI ${am.rps.toFixed(0)} req/s (${am.p50.toFixed(2)}/${am.p99.toFixed(2)} ms), ${(bm.rps / am.rps).toFixed(2)}x; errors ${a.reduce((s, r) => s + r.errors, 0)}/${b.reduce((s, r) => s + r.errors, 0)}.`);
    console.log('\n' + lines.join('\n'));
  } finally {
    for (const p of procs) p.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 500));
    for (const p of procs) if (p.exitCode === null) p.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
}

void main();
