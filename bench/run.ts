/**
 * tsgi's benchmark: the guide's deployment (the real nginx → a Unix socket → a WSGI app, 2 workers) for tsgi,
 * uWSGI and gunicorn in one run, loaded with wrk, peers alternated round after round, medians and ratios
 * printed and written as JSON and Markdown. With --front http, wrk hits each server's own HTTP port instead
 * (tsgi's router, uwsgi --http-socket, gunicorn -b HOST:PORT), no nginx.
 *
 *   npm run bench -- [--front nginx|http] [--duration 10] [--reps 3] [--apps hello,flask] [--logging off|on|both] ...
 *
 * Every process it starts runs in its own process group and is killed on the way out, Ctrl-C included.
 */
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { startNginx, type Upstream } from './lib/nginx.js';
import {
  APP_NAMES,
  FRONTS,
  PEER_NAMES,
  PEERS,
  TSGI_HTTP_OPTIONS,
  apps,
  type AppName,
  type Front,
  type Listen,
  type PeerName,
  type TsgiHttpOption,
} from './lib/peers.js';
import {
  cpuDelta,
  cpuSnapshot,
  machineCpu,
  memoryOf,
  processTree,
  reapedChildrenCpuSeconds,
  selfCpuSeconds,
  CLK_TCK,
} from './lib/proc-stats.js';
import { installCleanup, setGroupNice, startGroup, stopGroup, type Managed } from './lib/procs.js';
import { markdownReport, summarize, textReport, type RunRecord } from './lib/report.js';
import { systemInfo, type SystemInfo } from './lib/system.js';
import { runWrk, wrkArgs, type WrkResult } from './lib/wrk.js';
import { repoRoot } from './lib/repo.js';


const USAGE = `Usage: npm run bench -- [options]     (or: node dist/bench/run.js [options] after npm run build)

Runs nginx → Unix socket → WSGI app for tsgi, uWSGI and gunicorn (or, with --front http, wrk straight to
each server's own HTTP port), alternating peers round after round, and prints median req/s, p50/p99
latency, memory, CPU per request and the ratios tsgi/uWSGI and tsgi/gunicorn.

  --front FRONT         what wrk talks to: nginx (default: nginx → Unix socket → each server, issue 2's
                        targets) or http (each server's own HTTP port on 127.0.0.1, no nginx: tsgi
                        --http-socket, uwsgi --http-socket, gunicorn -b; issue 3's targets)
  --tsgi-http OPTION    with --front http, the tsgi option that binds the port: http-socket (default) or
                        http (uWSGI's name for a separate router; in tsgi both are the same router)
  --apps LIST           apps to serve: hello,flask (default both)
  --peers LIST          servers to compare: tsgi,uwsgi,gunicorn (default all three)
  --logging MODE        request logging of the servers: off, on or both (default off)
  --reps N              rounds; every peer runs once per round (default 3)
  --duration SECONDS    length of each measured wrk run (default 10)
  --warmup SECONDS      wrk load before each measured run, not recorded (default 3)
  --connections N       wrk -c (default 50)
  --threads N           wrk -t (default 2)
  --processes N         workers per server (default 2)
  --nginx-workers N     nginx worker_processes: a number or auto (default auto, Debian's nginx.conf)
  --nginx-access-log    let nginx write its access log (default off, the same for every peer)
                        (both only with --front nginx)
  --python PATH         the Python every peer runs (default /usr/bin/python3)
  --json PATH           where to write the results as JSON (default bench/results/latest.json;
                        with --front http, latest-http.json)
  --markdown PATH       where to write the Markdown section (default bench/results/latest.md;
                        with --front http, latest-http.md)
  --noise-limit PCT     a run during which other processes used more than PCT% of the machine's CPU is
                        flagged NOISY and measured again (default 5)
  --retries N           how many times a noisy run is measured again; the quietest is kept (default 2)
  --quiet-wait SECONDS  before each run, wait up to this long for the machine to be idle (default 60; 0: never)
  --nice=N              give every process group the benchmark starts this scheduling priority (the nice
                        value of its Linux autogroup; e.g. --nice=-10 as root on a machine shared with
                        other work); the peers, nginx and wrk keep equal priority among themselves
  --summarize FILE      print the tables again from a JSON the benchmark wrote (and write --markdown)
  --keep                keep the temp dir (configs, server logs) for inspection
  -h, --help            show this help
`;

interface Options {
  front: Front;
  tsgiHttp: TsgiHttpOption;
  apps: AppName[];
  peers: PeerName[];
  logging: boolean[];
  reps: number;
  duration: number;
  warmup: number;
  connections: number;
  threads: number;
  processes: number;
  nginxWorkers: string;
  nginxAccessLog: boolean;
  python: string;
  json: string;
  markdown: string;
  /** Whether --markdown was given (--summarize otherwise writes next to the saved run's front's default). */
  markdownGiven: boolean;
  keep: boolean;
  noiseLimit: number;
  retries: number;
  quietWait: number;
  summarize: string | undefined;
  nice: number;
}

function fail(message: string): never {
  process.stderr.write(`bench: ${message}\n`);
  process.exit(2);
}

function listOption<T extends string>(name: string, text: string, allowed: readonly T[]): T[] {
  const items = text.split(',').map((s) => s.trim()).filter(Boolean);
  for (const i of items) if (!allowed.includes(i as T)) fail(`--${name}: unknown '${i}' (choose from ${allowed.join(', ')})`);
  if (items.length === 0) fail(`--${name}: empty list`);
  return [...new Set(items)] as T[];
}

/** bench/results/latest.json (.md) behind nginx, latest-http.json (.md) with --front http. */
function defaultResult(front: Front, ext: 'json' | 'md'): string {
  return resolve(repoRoot, `bench/results/latest${front === 'nginx' ? '' : `-${front}`}.${ext}`);
}

function oneOf<T extends string>(name: string, text: string, allowed: readonly T[]): T {
  if (!allowed.includes(text as T)) fail(`--${name}: expected ${allowed.join(' or ')}, got '${text}'`);
  return text as T;
}

function intOption(name: string, text: string, min: number): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < min) fail(`--${name}: expected an integer ≥ ${min}, got '${text}'`);
  return n;
}

function readOptions(argv: string[]): Options {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      options: {
        front: { type: 'string', default: 'nginx' },
        'tsgi-http': { type: 'string', default: 'http-socket' },
        apps: { type: 'string', default: 'hello,flask' },
        peers: { type: 'string', default: 'tsgi,uwsgi,gunicorn' },
        logging: { type: 'string', default: 'off' },
        reps: { type: 'string', default: '3' },
        duration: { type: 'string', default: '10' },
        warmup: { type: 'string', default: '3' },
        connections: { type: 'string', default: '50' },
        threads: { type: 'string', default: '2' },
        processes: { type: 'string', default: '2' },
        'nginx-workers': { type: 'string', default: 'auto' },
        'nginx-access-log': { type: 'boolean', default: false },
        python: { type: 'string', default: '/usr/bin/python3' },
        json: { type: 'string' },
        markdown: { type: 'string' },
        keep: { type: 'boolean', default: false },
        'noise-limit': { type: 'string', default: '5' },
        retries: { type: 'string', default: '2' },
        'quiet-wait': { type: 'string', default: '60' },
        summarize: { type: 'string' },
        nice: { type: 'string', default: '0' },
        help: { type: 'boolean', short: 'h', default: false },
      },
      strict: true,
      allowPositionals: false,
    });
  } catch (err) {
    fail(`${(err as Error).message}\n\n${USAGE}`);
  }
  const v = parsed.values;
  if (v.help) {
    process.stdout.write(USAGE);
    process.exit(0);
  }
  const logging = v.logging === 'both' ? [false, true] : v.logging === 'on' ? [true] : v.logging === 'off' ? [false] : fail(`--logging: expected off, on or both`);
  if (!/^(auto|[1-9]\d*)$/.test(v['nginx-workers']!)) fail(`--nginx-workers: expected a number or auto`);
  const python = resolve(v.python!);
  if (!existsSync(python)) fail(`--python: ${python} does not exist`);
  const front = oneOf('front', v.front!, FRONTS);
  return {
    front,
    tsgiHttp: oneOf('tsgi-http', v['tsgi-http']!, TSGI_HTTP_OPTIONS),
    apps: listOption('apps', v.apps!, APP_NAMES),
    peers: listOption('peers', v.peers!, PEER_NAMES),
    logging,
    reps: intOption('reps', v.reps!, 1),
    duration: intOption('duration', v.duration!, 1),
    warmup: intOption('warmup', v.warmup!, 0),
    connections: intOption('connections', v.connections!, 1),
    threads: intOption('threads', v.threads!, 1),
    processes: intOption('processes', v.processes!, 1),
    nginxWorkers: v['nginx-workers']!,
    nginxAccessLog: v['nginx-access-log']!,
    python,
    json: resolve(v.json ?? defaultResult(front, 'json')),
    markdown: resolve(v.markdown ?? defaultResult(front, 'md')),
    markdownGiven: v.markdown !== undefined,
    keep: v.keep!,
    noiseLimit: intOption('noise-limit', v['noise-limit']!, 0),
    retries: intOption('retries', v.retries!, 0),
    quietWait: intOption('quiet-wait', v['quiet-wait']!, 0),
    summarize: v.summarize === undefined ? undefined : resolve(v.summarize),
    nice: /^-?\d+$/.test(v.nice!) && Math.abs(Number(v.nice)) <= 20 ? Number(v.nice) : fail(`--nice: expected -20..19, got '${v.nice}'`),
  };
}

function say(line: string): void {
  process.stdout.write(`${line}\n`);
}

async function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolvePort(port));
    });
  });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function get(url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolveGet, reject) => {
    const req = http.get(url, { agent: false, timeout: 5000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolveGet({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

interface RunningPeer {
  name: PeerName;
  proc: Managed;
  listen: Listen;
  /** What wrk loads: nginx's port for this peer, or the peer's own HTTP port. */
  url: string;
}

/** Waits until the peer answers (through nginx, or on its HTTP port) with the app's exact body and all its workers are up. */
async function waitReady(p: RunningPeer, body: string, processes: number, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  for (;;) {
    if (!p.proc.isAlive()) throw new Error(`${p.name} exited during start-up; its log:\n${p.proc.log()}`);
    try {
      const r = await get(p.url);
      if (r.status === 200 && r.body === body && processTree(p.proc.pid).length >= processes + 1) return;
      last = `HTTP ${r.status}, body ${JSON.stringify(r.body.slice(0, 200))}`;
      if (r.status === 200 && r.body !== body) throw new Error(`${p.name} answered ${JSON.stringify(r.body.slice(0, 200))} instead of ${JSON.stringify(body)}`);
    } catch (err) {
      if ((err as Error).message.includes('instead of')) throw err;
      last = (err as Error).message;
    }
    if (Date.now() > deadline) throw new Error(`${p.name} not ready after ${timeoutMs / 1000}s (last: ${last}); its log:\n${p.proc.log()}`);
    await sleep(100);
  }
}

/**
 * Waits (up to --quiet-wait) until the machine is idle: the CPUs less busy than --noise-limit over half a
 * second while every peer is idle. On a shared machine this keeps a build or a test run out of the numbers.
 */
async function waitQuiet(o: Options): Promise<{ waitedMs: number; busyPct: number }> {
  const start = Date.now();
  for (;;) {
    const a = machineCpu();
    await sleep(500);
    const b = machineCpu();
    const busyPct = b.total > a.total ? (100 * (b.busy - a.busy)) / (b.total - a.total) : 0;
    if (busyPct <= o.noiseLimit || Date.now() - start >= o.quietWait * 1000) return { waitedMs: Date.now() - start, busyPct };
    await sleep(1000);
  }
}

/** One measured wrk run against one peer, with CPU accounting around it and memory after it. */
async function measure(p: RunningPeer, nginx: Managed | undefined, o: Options): Promise<Omit<RunRecord, 'scenario' | 'logging' | 'round' | 'sequence' | 'attempts' | 'quietWaitMs'>> {
  const serverBefore = cpuSnapshot(processTree(p.proc.pid));
  const nginxBefore = cpuSnapshot(nginx ? processTree(nginx.pid) : []);
  const machineBefore = machineCpu();
  const reapedBefore = reapedChildrenCpuSeconds();
  const selfBefore = selfCpuSeconds();
  const w = await runWrk({ url: p.url, threads: o.threads, connections: o.connections, seconds: o.duration });
  const machineAfter = machineCpu();
  const server = cpuDelta(serverBefore, cpuSnapshot(processTree(p.proc.pid)));
  const ngx = cpuDelta(nginxBefore, cpuSnapshot(nginx ? processTree(nginx.pid) : []));
  const wrk = reapedChildrenCpuSeconds() - reapedBefore;
  const bench = selfCpuSeconds() - selfBefore;
  const machineBusy = (machineAfter.busy - machineBefore.busy) / CLK_TCK;
  const capacity = (machineAfter.total - machineBefore.total) / CLK_TCK;
  const other = Math.max(0, machineBusy - server - ngx - wrk - bench);
  const memory = memoryOf(processTree(p.proc.pid));
  const { raw: _raw, ...numbers } = w;
  return {
    peer: p.name,
    ...numbers,
    errors: wrkFailed(w, p, o),
    cpu: {
      server,
      nginx: ngx,
      wrk,
      bench,
      machineBusy,
      capacity,
      other,
      otherPct: capacity > 0 ? (100 * other) / capacity : 0,
      serverUsPerRequest: (server / w.requests) * 1e6,
      nginxUsPerRequest: (ngx / w.requests) * 1e6,
      wrkUsPerRequest: (wrk / w.requests) * 1e6,
    },
    memory,
  };
}

/**
 * Whether wrk saw something wrong: a non-2xx response or a socket error. A server that closes the connection
 * after every response on its own HTTP port (uwsgi --http-socket, gunicorn's sync workers) makes wrk count a
 * read error per response that ends at the close, or per request sent on a connection the server has just
 * closed; up to one per request (plus one per connection) is that, more is a failure.
 */
function wrkFailed(w: WrkResult, p: RunningPeer, o: Options): boolean {
  const se = w.socketErrors;
  if (w.non2xx > 0 || se.connect > 0 || se.timeout > 0) return true;
  if (o.front === 'http' && PEERS[p.name].closesHttpConnections) return se.read + se.write > w.requests + o.connections;
  return se.read > 0 || se.write > 0;
}

function fmtRun(r: RunRecord, o: Options): string {
  const closes = o.front === 'http' && PEERS[r.peer].closesHttpConnections;
  const errs = r.socketErrors.read + r.socketErrors.write;
  const flags = [
    r.errors ? `ERRORS (non-2xx ${r.non2xx}, socket ${JSON.stringify(r.socketErrors)})` : '',
    !r.errors && closes && errs > 0 ? `(${errs} closed-connection read/write errors, expected)` : '',
    r.cpu.otherPct > o.noiseLimit ? `NOISY: ${r.cpu.otherPct.toFixed(1)}% CPU used by other processes` : '',
  ]
    .filter(Boolean)
    .join('; ');
  return (
    `${r.peer.padEnd(8)} ${r.rps.toFixed(0).padStart(6)} req/s  p50 ${r.p50.toFixed(2)} ms  p99 ${r.p99.toFixed(2)} ms  ` +
    `CPU µs/req: server ${r.cpu.serverUsPerRequest.toFixed(1)}${o.front === 'nginx' ? ` nginx ${r.cpu.nginxUsPerRequest.toFixed(1)}` : ''} wrk ${r.cpu.wrkUsPerRequest.toFixed(1)}  ` +
    `PSS ${(r.memory.pssKb / 1024).toFixed(1)} MB${flags ? `  ${flags}` : ''}`
  );
}

/** Starts nginx in front of the peers' Unix sockets, once every server has created its socket. */
async function startNginxFor(peers: readonly RunningPeer[], dir: string, o: Options): Promise<Managed> {
  const upstreams: Upstream[] = [];
  // The sockets must exist before nginx sends anything to them; each server creates its own.
  const deadline = Date.now() + 60_000;
  for (const p of peers) {
    if (p.listen.front !== 'nginx') throw new Error(`${p.name} does not listen on a Unix socket`);
    const socket = p.listen.socket;
    while (!existsSync(socket)) {
      if (!p.proc.isAlive()) throw new Error(`${p.name} exited during start-up; its log:\n${p.proc.log()}`);
      if (Date.now() > deadline) throw new Error(`${p.name} did not create ${socket}; its log:\n${p.proc.log()}`);
      await sleep(50);
    }
    upstreams.push({ port: Number(new URL(p.url).port), socket, protocol: PEERS[p.name].upstream });
  }
  return startNginx(join(dir, 'nginx'), upstreams, { workers: o.nginxWorkers, accessLog: o.nginxAccessLog });
}

async function runGroup(app: AppName, logging: boolean, o: Options, tmp: string, records: RunRecord[], progress: { done: number; total: number }): Promise<void> {
  const appSpec = apps(repoRoot)[app];
  const dir = join(tmp, `${app}-log-${logging ? 'on' : 'off'}`);
  mkdirSync(dir);
  chmodSync(dir, 0o755);
  const peers: RunningPeer[] = [];
  let nginx: Managed | undefined;
  try {
    for (const name of o.peers) {
      const peer = PEERS[name];
      // nginx's port for this peer, or the peer's own HTTP port.
      const port = await freePort();
      const listen: Listen = o.front === 'nginx' ? { front: 'nginx', socket: join(dir, `${name}.sock`) } : { front: 'http', port, tsgiOption: o.tsgiHttp };
      const l = peer.launch({ app: appSpec, listen, processes: o.processes, logging, repoRoot, python: o.python });
      const proc = startGroup(name, l.cmd, l.args, { cwd: l.cwd, env: l.env, logFile: join(dir, `${name}.log`) });
      peers.push({ name, proc, listen, url: `http://127.0.0.1:${port}/` });
    }
    if (o.front === 'nginx') nginx = await startNginxFor(peers, dir, o);
    for (const p of peers) await waitReady(p, appSpec.body, o.processes);
    const tsgi = peers.find((p) => p.name === 'tsgi');
    if (tsgi) {
      const m = /python (\S+)/.exec(tsgi.proc.log());
      if (m && resolve(m[1]!) !== o.python) throw new Error(`tsgi runs ${m[1]}, not ${o.python}`);
    }
    say(`\n== ${app}, request logging ${logging ? 'on' : 'off'}: ${peers.map((p) => `${p.name} (pid ${p.proc.pid}, ${processTree(p.proc.pid).length} processes)`).join(', ')}; ${nginx ? `nginx pid ${nginx.pid}` : 'no nginx: wrk to each HTTP port'}`);

    for (let round = 1; round <= o.reps; round++) {
      // Rotate the starting peer every round (A B C, B C A, C A B, ...), so that no peer always runs first.
      const order = peers.map((_, i) => peers[(i + round - 1) % peers.length]!);
      for (const p of order) {
        let best: RunRecord | undefined;
        let quietWaitMs = 0;
        for (let attempt = 1; attempt <= o.retries + 1; attempt++) {
          if (o.quietWait > 0) {
            const q = await waitQuiet(o);
            quietWaitMs += q.waitedMs;
            if (q.busyPct > o.noiseLimit) say(`  machine still ${q.busyPct.toFixed(0)}% busy after waiting ${o.quietWait}s: measuring anyway`);
          }
          if (o.warmup > 0) await runWrk({ url: p.url, threads: o.threads, connections: o.connections, seconds: o.warmup });
          const m = await measure(p, nginx, o);
          const rec: RunRecord = { scenario: app, logging, round, sequence: progress.done + 1, attempts: attempt, quietWaitMs, ...m };
          if (!p.proc.isAlive()) throw new Error(`${p.name} died during the run; its log:\n${p.proc.log()}`);
          if (!best || rec.cpu.otherPct < best.cpu.otherPct) best = { ...rec };
          best.attempts = attempt;
          if (rec.cpu.otherPct <= o.noiseLimit) break;
          if (attempt <= o.retries) say(`  ${fmtRun(rec, o)}\n  (noisy: measuring ${p.name} again)`);
        }
        progress.done++;
        records.push(best!);
        say(`[${String(progress.done).padStart(String(progress.total).length)}/${progress.total}] round ${round}  ${fmtRun(best!, o)}`);
      }
    }
    for (const p of peers) {
      const log = p.proc.log();
      if (/Traceback|exception in the app/.test(log)) say(`warning: ${p.name}'s log shows app errors:\n${log.slice(-2000)}`);
    }
  } finally {
    if (nginx) await stopGroup(nginx, 'SIGTERM');
    for (const p of peers) await stopGroup(p.proc, PEERS[p.name].stopSignal);
  }
}

function markdownSection(info: SystemInfo, o: Options, body: string, wrkLine: string): string {
  const v = info.versions;
  // Results saved before --front existed were all behind nginx.
  const front = o.front ?? 'nginx';
  return `## ${info.date.slice(0, 10)}${front === 'http' ? ': HTTP, no nginx' : ''}

- Machine: ${info.cpus} CPUs (\`nproc\`), ${info.cpuModel}, ${(info.memTotalMb / 1024).toFixed(1)} GiB RAM; ${info.kernel}; load average at start ${info.loadavgAtStart}
- Versions: tsgi ${v.tsgi}; Node ${v.node}; ${v.python}; Flask ${v.flask}; ${v.nginx}; uWSGI ${v.uwsgi}; ${v.gunicorn}; ${v.wrk}
- Setup: ${front === 'nginx' ? `nginx \`worker_processes ${o.nginxWorkers}\`, access log ${o.nginxAccessLog ? 'on' : 'off'}; ${o.processes} workers per server on a Unix socket` : `no nginx: wrk straight to each server's own HTTP port on 127.0.0.1 (tsgi \`--${o.tsgiHttp ?? 'http-socket'}\`, its router in front of the workers; \`uwsgi --http-socket\`; gunicorn \`-b 127.0.0.1:PORT\`, sync workers); ${o.processes} workers per server`}; \`${wrkLine}\`; ${o.warmup}s warm-up before each run; ${o.reps} rounds, peers rotated each round; medians shown; before each run the benchmark waits (up to ${o.quietWait}s) for an idle machine, and a run during which other processes used more than ${o.noiseLimit}% of the CPUs is measured again (up to ${o.retries} times, the quietest kept)
- Memory: PSS and USS (Private_Clean + Private_Dirty, from /proc/PID/smaps_rollup) and RSS (VmRSS) summed over the server's process tree (master + workers${front === 'http' ? ', and tsgi\'s router' : ''}), after each run; CPU: utime+stime of the server's processes${front === 'nginx' ? ', of nginx' : ''} and of wrk during the run divided by the requests served (on a saturated machine req/s is inversely proportional to their sum, which is why the ratio it predicts is shown: it is much less disturbed by other load than req/s); "other CPU": busy CPU of the machine not used by the server, ${front === 'nginx' ? 'nginx, ' : ''}wrk or the benchmark (another load competing for the cores)

${body}`;
}

interface SavedRun {
  system: SystemInfo;
  options: Options;
  wrk: string;
  runs: RunRecord[];
}

/** Prints the report of a saved run again (e.g. after the report itself changed) and rewrites its Markdown. */
function summarizeFile(o: Options): void {
  const saved = JSON.parse(readFileSync(o.summarize!, 'utf8')) as SavedRun;
  const front = saved.options.front ?? 'nginx';
  const markdown = o.markdownGiven ? o.markdown : defaultResult(front, 'md');
  const { peers, ratios } = summarize(saved.runs, front);
  say(textReport(peers, ratios, front));
  writeFileSync(markdown, markdownSection(saved.system, saved.options, markdownReport(peers, ratios, front), saved.wrk));
  say(`wrote ${relative(process.cwd(), markdown) || markdown}`);
}

async function main(): Promise<void> {
  const o = readOptions(process.argv.slice(2));
  if (o.summarize) return summarizeFile(o);
  let tmp: string | undefined;
  installCleanup(() => {
    if (tmp && !o.keep) rmSync(tmp, { recursive: true, force: true });
  });
  for (const bin of [...(o.front === 'nginx' ? ['/usr/sbin/nginx'] : []), '/usr/bin/wrk', ...(o.peers.includes('uwsgi') ? ['/usr/bin/uwsgi'] : [])]) {
    if (!existsSync(bin)) fail(`${bin} is missing (scripts/test-all lists the Debian packages to install)`);
  }
  if (o.peers.includes('tsgi') && !existsSync(resolve(repoRoot, 'dist/src/cli/tsgi.js'))) fail('tsgi is not built: run npm run build');
  if (o.nice !== 0) {
    if (!existsSync('/proc/self/autogroup')) fail('--nice: this kernel has no autogroups (/proc/self/autogroup)');
    setGroupNice(o.nice);
  }
  tmp = mkdtempSync(join(tmpdir(), 'tsgi-bench-'));
  chmodSync(tmp, 0o755);

  const info = systemInfo(repoRoot, o.python);
  const groups = o.apps.length * o.logging.length;
  const total = groups * o.reps * o.peers.length;
  const wrkLine = `wrk ${wrkArgs({ url: 'http://127.0.0.1:PORT/', threads: o.threads, connections: o.connections, seconds: o.duration }).join(' ')}`;
  say(`tsgi bench: ${info.cpus} CPUs (${info.cpuModel}), load average ${info.loadavgAtStart}`);
  for (const [k, v] of Object.entries(info.versions)) say(`  ${k.padEnd(9)} ${v}`);
  const frontLine = o.front === 'nginx' ? `nginx worker_processes ${o.nginxWorkers}` : `no nginx: wrk to each server's HTTP port (tsgi --${o.tsgiHttp})`;
  say(`apps ${o.apps.join(',')}; peers ${o.peers.join(',')}; logging ${o.logging.map((l) => (l ? 'on' : 'off')).join(',')}; ` +
      `${o.reps} rounds; ${wrkLine}; warm-up ${o.warmup}s; ${frontLine}${o.nice ? `; nice ${o.nice}` : ''}`);
  say(`${total} measured runs, about ${Math.ceil((total * (o.duration + o.warmup)) / 60 + groups * 0.2)} minutes; temp dir ${tmp}`);

  const records: RunRecord[] = [];
  const progress = { done: 0, total };
  for (const app of o.apps) for (const logging of o.logging) await runGroup(app, logging, o, tmp, records, progress);

  const { peers, ratios } = summarize(records, o.front);
  const text = textReport(peers, ratios, o.front);
  say(`\n${text}`);
  const flagged = records.filter((r) => r.errors);
  if (flagged.length) say(`FLAGGED: ${flagged.length} run(s) had socket errors or non-2xx responses (see the errors column).`);
  const noisy = records.filter((r) => r.cpu.otherPct > o.noiseLimit);
  if (noisy.length) say(`NOISY: ${noisy.length} run(s) shared the CPUs with other processes (>${o.noiseLimit}% of the machine) even after ${o.retries} retries: repeat on a quiet machine.`);

  mkdirSync(dirname(o.json), { recursive: true });
  const saved = { system: info, options: { ...o, json: undefined, markdown: undefined, markdownGiven: undefined, summarize: undefined }, wrk: wrkLine, summary: peers, ratios, runs: records };
  writeFileSync(o.json, `${JSON.stringify(saved, null, 2)}\n`);
  mkdirSync(dirname(o.markdown), { recursive: true });
  writeFileSync(o.markdown, markdownSection(info, o, markdownReport(peers, ratios, o.front), wrkLine));
  say(`wrote ${relative(process.cwd(), o.json) || o.json} and ${relative(process.cwd(), o.markdown) || o.markdown}`);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`bench: ${(err as Error)?.stack ?? err}\n`);
    process.exit(1);
  },
);
