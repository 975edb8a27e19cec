/**
 * The emperor's costs, tsgi beside uWSGI in the same run: a folder of N vassal files (the same ini files for both:
 * a hello WSGI app, 1 worker, its own Unix socket), and for each peer
 *
 *   start     launching `--emperor DIR` until every vassal answers a request on its socket
 *   memory    the emperor process's RSS, and PSS/RSS of the emperor with every vassal (masters and workers)
 *   new file  writing one more vassal file until it answers (repeated, median)
 *   stop      SIGTERM to the emperor until it and every vassal are gone
 *
 * Peers alternate round after round; medians are reported. Every process runs in its own process group, killed on
 * the way out (Ctrl-C included).
 *
 *   npm run build && node dist/bench/emperor/run.js [--vassals 20] [--rounds 3] [--new-file 5] [--peers tsgi,uwsgi]
 *                                                   [--out bench/RESULTS-emperor.md] [--keep]
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, readdirSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { cpus, tmpdir, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { repoRoot } from '../lib/repo.js';


const { values: opts } = parseArgs({
  options: {
    vassals: { type: 'string', default: '20' },
    rounds: { type: 'string', default: '3' },
    'new-file': { type: 'string', default: '5' },
    peers: { type: 'string', default: 'tsgi,uwsgi' },
    python: { type: 'string', default: '/usr/bin/python3' },
    out: { type: 'string', default: join(repoRoot, 'bench/RESULTS-emperor.md') },
    keep: { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  },
});
if (opts.help) {
  process.stdout.write(readFileSync(fileURLToPath(import.meta.url), 'utf8').split('*/')[0]!.replace(/^\/\*\*?/, '') + '\n');
  process.exit(0);
}
const N = Number(opts.vassals);
const ROUNDS = Number(opts.rounds);
const NEW_FILE_REPS = Number(opts['new-file']);
const PEERS = opts.peers!.split(',') as Array<'tsgi' | 'uwsgi'>;

const HELLO = `def application(environ, start_response):
    start_response('200 OK', [('Content-Type', 'text/plain')])
    return [b'hello']
`;

// ---- processes -------------------------------------------------------------------------------------------------

const groups = new Set<number>();
function killGroup(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(-pid, sig);
  } catch {
    /* gone */
  }
}
function cleanup(): void {
  for (const pid of groups) killGroup(pid, 'SIGKILL');
}
process.on('exit', cleanup);
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => process.exit(130));

function groupAlive(pid: number): boolean {
  try {
    process.kill(-pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** The process and all its descendants, from /proc. */
function tree(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      (children.get(ppid) ?? children.set(ppid, []).get(ppid)!).push(Number(name));
    } catch {
      /* gone */
    }
  }
  const out: number[] = [];
  const walk = (p: number): void => {
    out.push(p);
    for (const c of children.get(p) ?? []) walk(c);
  };
  walk(root);
  return out;
}

function kb(pid: number, file: 'status' | 'smaps_rollup', field: string): number {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/${file}`, 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

// ---- the uwsgi protocol, enough to ask "/" -----------------------------------------------------------------------

function packet(): Buffer {
  const vars: Record<string, string> = { REQUEST_METHOD: 'GET', REQUEST_URI: '/', PATH_INFO: '/', QUERY_STRING: '', SERVER_PROTOCOL: 'HTTP/1.1', SERVER_NAME: 'bench', SERVER_PORT: '80', REMOTE_ADDR: '127.0.0.1', HTTP_HOST: 'bench' };
  const parts: Buffer[] = [];
  for (const [k, v] of Object.entries(vars)) {
    const kb = Buffer.from(k);
    const vb = Buffer.from(v);
    const l = Buffer.alloc(4);
    l.writeUInt16LE(kb.length, 0);
    l.writeUInt16LE(vb.length, 2);
    parts.push(l.subarray(0, 2), kb, l.subarray(2), vb);
  }
  const body = Buffer.concat(parts);
  const head = Buffer.alloc(4);
  head.writeUInt16LE(body.length, 1);
  return Buffer.concat([head, body]);
}
const PACKET = packet();

function answers(sock: string): Promise<boolean> {
  return new Promise((resolve) => {
    const c = net.connect(sock);
    let data = '';
    const timer = setTimeout(() => {
      c.destroy();
      resolve(false);
    }, 2000);
    c.on('connect', () => c.write(PACKET));
    c.on('data', (d) => (data += d.toString('latin1')));
    c.on('error', () => {
      clearTimeout(timer);
      resolve(false);
    });
    c.on('close', () => {
      clearTimeout(timer);
      resolve(/^HTTP\/1\.[01] 200/.test(data));
    });
  });
}

async function allAnswer(socks: string[], timeoutMs: number): Promise<void> {
  const pending = new Set(socks);
  const deadline = Date.now() + timeoutMs;
  while (pending.size) {
    await Promise.all([...pending].map(async (s) => (await answers(s)) && pending.delete(s)));
    if (!pending.size) return;
    if (Date.now() > deadline) throw new Error(`${pending.size} vassal(s) never answered: ${[...pending].slice(0, 3).join(', ')}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

// ---- one peer, one round -----------------------------------------------------------------------------------------

interface RoundResult {
  startMs: number;
  emperorRssKb: number;
  totalPssKb: number;
  totalRssKb: number;
  processes: number;
  newFileMs: number[];
  stopMs: number;
}

function vassalIni(run: string, app: string): string {
  // The same file for both: plugin/master are what uWSGI needs, and tsgi accepts them.
  return `[uwsgi]\nplugin = python3\nmaster = true\nprocesses = 1\nsocket = ${run}/%n.sock\nwsgi-file = ${app}\ndisable-logging = true\n`;
}

function startPeer(peer: 'tsgi' | 'uwsgi', dir: string, log: string): ChildProcess {
  const env: NodeJS.ProcessEnv = { ...process.env, PATH: `${dirname(opts.python!)}:/usr/bin:/bin` };
  for (const k of Object.keys(env)) if (k.startsWith('UWSGI_') || k.startsWith('TSGI_') || k === 'VIRTUAL_ENV' || k === 'NOTIFY_SOCKET') delete env[k];
  const fd = openSync(log, 'a');
  const [cmd, args] = peer === 'tsgi' ? [process.execPath, [join(repoRoot, 'bin/tsgi'), '--emperor', join(dir, 'vassals')]] : ['uwsgi', ['--emperor', join(dir, 'vassals')]];
  const child = spawn(cmd, args, { cwd: dir, env, stdio: ['ignore', fd, fd], detached: true });
  closeSync(fd);
  groups.add(child.pid!);
  return child;
}

async function round(peer: 'tsgi' | 'uwsgi'): Promise<RoundResult> {
  const dir = mkdtempSync(join(tmpdir(), `tsgi-bench-emperor-${peer}-`));
  const run = join(dir, 'run');
  mkdirSync(join(dir, 'vassals'), { recursive: true });
  mkdirSync(run);
  const app = join(dir, 'hello.py');
  writeFileSync(app, HELLO);
  const names = Array.from({ length: N }, (_, i) => `site${String(i + 1).padStart(3, '0')}`);
  for (const n of names) writeFileSync(join(dir, 'vassals', `${n}.ini`), vassalIni(run, app));
  const t0 = performance.now();
  const child = startPeer(peer, dir, join(dir, 'emperor.log'));
  const exited = new Promise<void>((r) => child.on('exit', () => r()));
  try {
    await allAnswer(names.map((n) => join(run, `${n}.sock`)), 120_000);
    const startMs = performance.now() - t0;
    await new Promise((r) => setTimeout(r, 1000)); // let start-up allocations settle before measuring
    const pids = tree(child.pid!);
    const result: RoundResult = {
      startMs,
      emperorRssKb: kb(child.pid!, 'status', 'VmRSS'),
      totalPssKb: pids.reduce((s, p) => s + kb(p, 'smaps_rollup', 'Pss'), 0),
      totalRssKb: pids.reduce((s, p) => s + kb(p, 'status', 'VmRSS'), 0),
      processes: pids.length,
      newFileMs: [],
      stopMs: 0,
    };
    for (let i = 0; i < NEW_FILE_REPS; i++) {
      const name = `extra${i}`;
      const sock = join(run, `${name}.sock`);
      const t = performance.now();
      writeFileSync(join(dir, 'vassals', `${name}.ini`), vassalIni(run, app));
      await allAnswer([sock], 30_000);
      result.newFileMs.push(performance.now() - t);
      unlinkSync(join(dir, 'vassals', `${name}.ini`));
      // Wait until it is gone before the next one (uWSGI leaves the socket file: probe instead of stat).
      const deadline = Date.now() + 30_000;
      while ((await answers(sock)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    }
    const ts = performance.now();
    child.kill('SIGTERM');
    await exited;
    while (groupAlive(child.pid!)) await new Promise((r) => setTimeout(r, 10));
    result.stopMs = performance.now() - ts;
    return result;
  } finally {
    killGroup(child.pid!, 'SIGKILL');
    groups.delete(child.pid!);
    if (opts.keep) process.stdout.write(`kept ${dir} (emperor.log there)\n`);
    else rmSync(dir, { recursive: true, force: true });
  }
}

// ---- report ------------------------------------------------------------------------------------------------------

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

function version(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  return (r.stdout || r.stderr || '').trim().split('\n')[0] ?? '?';
}

async function main(): Promise<void> {
  const results: Record<string, RoundResult[]> = Object.fromEntries(PEERS.map((p) => [p, []]));
  const load = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
  for (let r = 1; r <= ROUNDS; r++) {
    for (const peer of r % 2 ? PEERS : [...PEERS].reverse()) {
      const res = await round(peer);
      results[peer]!.push(res);
      process.stdout.write(`round ${r} ${peer}: ${N} vassals serving in ${res.startMs.toFixed(0)} ms; emperor RSS ${(res.emperorRssKb / 1024).toFixed(1)} MiB; all ${res.processes} processes PSS ${(res.totalPssKb / 1024).toFixed(0)} MiB; new file ${res.newFileMs.map((x) => x.toFixed(0)).join('/')} ms; stop ${res.stopMs.toFixed(0)} ms\n`);
    }
  }
  const mib = (k: number): string => (k / 1024).toFixed(1);
  const rows = PEERS.map((p) => {
    const rs = results[p]!;
    return `| ${p} | ${median(rs.map((x) => x.startMs)).toFixed(0)} | ${mib(median(rs.map((x) => x.emperorRssKb)))} | ${mib(median(rs.map((x) => x.totalPssKb)))} | ${mib(median(rs.map((x) => x.totalPssKb)) / N)} | ${mib(median(rs.map((x) => x.totalRssKb)))} | ${median(rs.map((x) => x.processes))} | ${median(rs.flatMap((x) => x.newFileMs)).toFixed(0)} (max ${Math.max(...rs.flatMap((x) => x.newFileMs)).toFixed(0)}) | ${median(rs.map((x) => x.stopMs)).toFixed(0)} |`;
  });
  const md = `# Emperor: ${N} vassals, tsgi and uWSGI side by side

Produced by \`node dist/bench/emperor/run.js --vassals ${N} --rounds ${ROUNDS} --new-file ${NEW_FILE_REPS}\` (bench/emperor/run.ts), ${new Date().toISOString().slice(0, 10)}.
Both emperors watch a folder of ${N} identical vassal files (hello WSGI app, \`processes = 1\`, one Unix socket each, the
same ini for both); ${version(opts.python!, ['--version'])}, uWSGI ${version('uwsgi', ['--version'])} (Debian, python3 plugin),
Node ${process.version}; ${cpus().length} cores, ${(totalmem() / 2 ** 30).toFixed(0)} GiB; load average at start ${load}.
Medians of ${ROUNDS} rounds, peers alternated.

| peer | start: all ${N} answer (ms) | emperor RSS (MiB) | everything PSS (MiB) | PSS per vassal (MiB) | everything RSS (MiB) | processes | new file answers (ms) | SIGTERM until all gone (ms) |
| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |
${rows.join('\n')}

- *start*: from launching \`--emperor DIR\` until every vassal answered a uwsgi request on its socket.
- *emperor RSS*: the emperor process alone, 1 s after all vassals answered. *everything*: the emperor, every vassal
  master and every worker (PSS counts shared pages once; RSS counts them in every process).
- *new file*: writing one more vassal file until it answers (${NEW_FILE_REPS} per round); the issue's bound is 2 s.
  uWSGI's emperor rescans its folder every \`emperor-freq\` (3 s) seconds; tsgi's watches it (and rescans too).
- *stop*: SIGTERM to the emperor until the emperor and every vassal process are gone. tsgi stops each vassal
  gracefully (its requests finished); uWSGI's emperor, without \`emperor-graceful-shutdown\`, stops them at once.
`;
  writeFileSync(opts.out!, md);
  process.stdout.write(`\n${md}\nwritten to ${opts.out}\n`);
}

main().catch((err) => {
  process.stderr.write(`bench: ${err instanceof Error ? err.stack : err}\n`);
  process.exit(1);
});
