/**
 * Memory of the guide's deployment: a master and 5 workers serving the hello app and a Django app, tsgi next
 * to uWSGI, both loading the app once and forking (each server's default) and with lazy-apps (each worker
 * imports the app itself). Every worker serves requests before it is measured, so the pages a request
 * touches are counted.
 *
 *   npm run bench:memory -- [--apps hello,django] [--modes preload,lazy] [--processes 5] [--rounds 3]
 *
 * Prints PSS, USS and RSS summed over each server's processes (and per process in the JSON), and the ratio
 * tsgi/uWSGI; writes bench/results/memory.json and bench/results/memory.md.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { encodeVars } from '../src/protocol/uwsgi.js';
import { cleanEnv } from './lib/peers.js';
import { memoryOf, processTree, type Memory } from './lib/proc-stats.js';
import { installCleanup, startGroup, stopGroup } from './lib/procs.js';
import { systemInfo } from './lib/system.js';
import { repoRoot } from './lib/repo.js';

type AppName = 'hello' | 'django';
type Mode = 'preload' | 'lazy';
type PeerName = 'tsgi' | 'uwsgi';

const APPS: Record<AppName, string> = {
  hello: resolve(repoRoot, 'bench/apps/hello.py'),
  django: resolve(repoRoot, 'bench/apps/django_hello.py'),
};

const USAGE = `Usage: npm run bench:memory -- [options]

  --apps LIST        hello,django (default both)
  --modes LIST       preload (load once in the master's Python, fork workers: both servers' default),
                     lazy (--lazy-apps: every worker imports the app) (default both)
  --peers LIST       tsgi,uwsgi (default both)
  --processes N      workers (default 5, the guide's)
  --requests N       requests served before measuring, 10 at a time (default 2000)
  --rounds N         start, load and measure each server this many times; the median PSS is kept (default 3)
  --python PATH      the Python both servers run (default /usr/bin/python3)
  --json PATH        default bench/results/memory.json
  --markdown PATH    default bench/results/memory.md
`;

function fail(message: string): never {
  process.stderr.write(`bench:memory: ${message}\n`);
  process.exit(2);
}

function list<T extends string>(name: string, text: string, allowed: readonly T[]): T[] {
  const items = text.split(',').map((s) => s.trim()).filter(Boolean) as T[];
  for (const i of items) if (!allowed.includes(i)) fail(`--${name}: unknown '${i}' (choose from ${allowed.join(', ')})`);
  return items;
}

/** A uwsgi packet for GET / (what nginx's uwsgi_params would send, trimmed to what the apps read). */
const REQUEST = encodeVars([
  ['REQUEST_METHOD', 'GET'], ['REQUEST_URI', '/'], ['PATH_INFO', '/'], ['QUERY_STRING', ''],
  ['SERVER_PROTOCOL', 'HTTP/1.1'], ['SERVER_NAME', 'localhost'], ['SERVER_PORT', '80'],
  ['REMOTE_ADDR', '127.0.0.1'], ['HTTP_HOST', 'localhost'],
]);

function ask(socket: string): Promise<string> {
  return new Promise((resolveAsk, reject) => {
    const c = net.createConnection(socket);
    const chunks: Buffer[] = [];
    c.on('connect', () => c.write(REQUEST));
    c.on('data', (d) => chunks.push(d));
    c.on('end', () => resolveAsk(Buffer.concat(chunks).toString('latin1')));
    c.on('error', reject);
  });
}

async function waitServing(socket: string, log: () => string, alive: () => boolean): Promise<void> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (!alive()) fail(`the server exited before serving:\n${log()}`);
    try {
      if ((await ask(socket)).endsWith('Hello World')) return;
    } catch {
      /* not listening yet */
    }
    if (Date.now() > deadline) fail(`nothing served on ${socket} within 60 s:\n${log()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function load(socket: string, requests: number): Promise<void> {
  let next = 0;
  const one = async (): Promise<void> => {
    while (next < requests) {
      next++;
      const answer = await ask(socket);
      if (!/^HTTP\/1\.[01] 200 /.test(answer) || !answer.endsWith('Hello World')) fail(`unexpected answer: ${JSON.stringify(answer.slice(0, 200))}`);
    }
  };
  await Promise.all(Array.from({ length: 10 }, one));
}

function launch(peer: PeerName, app: string, mode: Mode, socket: string, processes: number): { cmd: string; args: string[] } {
  const lazy = mode === 'lazy' ? ['--lazy-apps'] : [];
  if (peer === 'tsgi') {
    return {
      cmd: process.execPath,
      args: [resolve(repoRoot, 'bin/tsgi'), '--master', '--processes', String(processes), '--socket', socket, '--wsgi-file', app, '--disable-logging', ...lazy],
    };
  }
  return {
    cmd: '/usr/bin/uwsgi',
    args: ['--plugin', 'python3', '--master', '--processes', String(processes), '--socket', socket, '--wsgi-file', app, '--disable-logging', ...lazy],
  };
}

interface Measured {
  app: AppName;
  mode: Mode;
  peer: PeerName;
  memory: Memory;
}

const mb = (kb: number): string => (kb / 1024).toFixed(1);

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      apps: { type: 'string', default: 'hello,django' },
      modes: { type: 'string', default: 'preload,lazy' },
      peers: { type: 'string', default: 'tsgi,uwsgi' },
      processes: { type: 'string', default: '5' },
      requests: { type: 'string', default: '2000' },
      rounds: { type: 'string', default: '3' },
      python: { type: 'string', default: '/usr/bin/python3' },
      json: { type: 'string', default: resolve(repoRoot, 'bench/results/memory.json') },
      markdown: { type: 'string', default: resolve(repoRoot, 'bench/results/memory.md') },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(USAGE);
    return;
  }
  const apps = list('apps', values.apps!, ['hello', 'django'] as const);
  const modes = list('modes', values.modes!, ['preload', 'lazy'] as const);
  const peers = list('peers', values.peers!, ['tsgi', 'uwsgi'] as const);
  const processes = Number(values.processes);
  const requests = Number(values.requests);
  const rounds = Number(values.rounds);
  if (!Number.isInteger(processes) || processes < 1) fail('--processes: expected an integer ≥ 1');
  if (!Number.isInteger(rounds) || rounds < 1) fail('--rounds: expected an integer ≥ 1');

  const tmp = mkdtempSync(join(tmpdir(), 'tsgi-bench-memory-'));
  installCleanup(() => rmSync(tmp, { recursive: true, force: true }));
  const env = cleanEnv(values.python!);

  const info = systemInfo(repoRoot, values.python!);
  const results: Measured[] = [];
  let n = 0;
  for (const app of apps) {
    for (const mode of modes) {
      for (const peer of peers) {
        const samples: Memory[] = [];
        for (let round = 0; round < rounds; round++) {
          const socket = join(tmp, `s${n++}.sock`);
          const { cmd, args } = launch(peer, APPS[app], mode, socket, processes);
          const server = startGroup(`${peer}-${app}-${mode}`, cmd, args, { cwd: dirname(APPS[app]), env, logFile: join(tmp, `${peer}-${n}.log`) });
          try {
            await waitServing(socket, server.log, server.isAlive);
            await load(socket, requests);
            await new Promise((r) => setTimeout(r, 1000));
            const pids = processTree(server.pid);
            samples.push(memoryOf(pids));
          } finally {
            await stopGroup(server, 'SIGINT');
          }
        }
        samples.sort((a, b) => a.pssKb - b.pssKb);
        const memory = samples[Math.floor(samples.length / 2)]!;
        results.push({ app, mode, peer, memory });
        process.stdout.write(`${app.padEnd(7)} ${mode.padEnd(8)} ${peer.padEnd(6)} ${memory.processes} processes  PSS ${mb(memory.pssKb)} MB  USS ${mb(memory.ussKb)} MB  RSS ${mb(memory.rssKb)} MB\n`);
      }
    }
  }

  const rows = [
    '| app | mode | server | processes | PSS MB | USS MB | RSS MB | PSS tsgi/uWSGI |',
    '|---|---|---|---|---|---|---|---|',
  ];
  for (const r of results) {
    const peerOf = results.find((o) => o.app === r.app && o.mode === r.mode && o.peer === 'uwsgi');
    const ratio = r.peer === 'tsgi' && peerOf ? `${(r.memory.pssKb / peerOf.memory.pssKb).toFixed(2)}x` : '';
    rows.push(`| ${r.app} | ${r.mode} | ${r.peer} | ${r.memory.processes} | ${mb(r.memory.pssKb)} | ${mb(r.memory.ussKb)} | ${mb(r.memory.rssKb)} | ${ratio} |`);
  }
  const perProcess = results.map((r) => `- ${r.app}/${r.mode}/${r.peer}: ${r.memory.each.map((e) => `${e.command.split(' ')[0]!.split('/').pop()} ${mb(e.pssKb)}`).join(', ')}`);
  const md = [
    `Run ${info.date}, ${info.cpus} CPUs (${info.cpuModel}), ${info.versions.tsgi}, ${info.versions.uwsgi}, ${info.versions.python}, Node ${info.versions.node}.`,
    `${processes} workers, ${requests} requests served before measuring, median PSS of ${rounds} starts.`,
    '',
    ...rows,
    '',
    'PSS per process (MB), master first:',
    '',
    ...perProcess,
    '',
  ].join('\n');
  process.stdout.write(`\n${md}`);
  mkdirSync(dirname(values.json!), { recursive: true });
  writeFileSync(values.json!, JSON.stringify({ system: info, processes, requests, rounds, results }, null, 2));
  writeFileSync(values.markdown!, md);
}

main().catch((err: unknown) => fail((err as Error).stack ?? String(err)));
