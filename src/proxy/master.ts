/**
 * The master process: owns the listening sockets (through Node's cluster, which shares one handle with every
 * worker so workers accept directly), keeps worker_processes workers running, writes the pid file, and
 * turns signals into actions. Signals only enqueue; actions run one at a time from the queue.
 *   HUP  reload: load and check the configuration, start new workers on it, then let the old ones finish
 *        gracefully (the sockets stay open throughout, so no connection is refused).
 *   QUIT graceful stop; TERM, INT fast stop; USR1 reopen log files.
 */
import cluster, { type Worker } from 'node:cluster';
import { spawn } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { writeFileSync, unlinkSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { DiskFs, type ConfSnapshot } from './conf/fs.js';
import { loadConf, type LoadedConf } from './conf/load.js';
import { ProxyConfError } from './conf/errors.js';
import { DEFAULTS, type CliOptions } from './cli.js';
import { openErrorLogs } from './logs.js';
import type { ErrorLogs } from './errorlog.js';
import type { FromWorker, ToWorker } from './worker-main.js';
import { Front } from './front.js';
import { PRODUCT } from './vars.js';
import { dropPrivileges } from './privileges.js';
import { sumCounts, type Counts } from './stats.js';

export interface MasterStart {
  options: CliOptions;
  paths: { prefix: string; conf: string; errorLog: string };
  loaded: LoadedConf;
  snapshot: ConfSnapshot;
}

const DAEMON_ENV = 'TSGI_PROXY_DAEMONIZED';

interface Generation {
  conf: LoadedConf;
  snapshot: ConfSnapshot;
  workers: Set<Worker>;
}

function say(line: string): void {
  process.stderr.write(`${PRODUCT}: ${line}\n`);
}

/** Runs the daemon child and waits for it to report that it serves (or why it could not). */
function daemonize(): Promise<number> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, process.argv.slice(1), {
      detached: true,
      stdio: ['ignore', 'ignore', 'ignore', 'ipc'],
      env: { ...process.env, [DAEMON_ENV]: '1' },
    });
    child.once('message', (m: { ok: boolean; message?: string }) => {
      if (!m.ok) say(`[emerg] ${m.message}`);
      child.disconnect();
      child.unref();
      resolve(m.ok ? 0 : 1);
    });
    child.once('exit', (code) => resolve(code ?? 1));
  });
}

export async function startMaster(start: MasterStart): Promise<number> {
  const { paths } = start;
  const main = start.loaded.main;
  if (main.daemon !== false && process.env[DAEMON_ENV] !== '1') return daemonize();
  const report = (ok: boolean, message?: string) => {
    if (process.env[DAEMON_ENV] === '1' && process.send) {
      process.send({ ok, message });
      process.disconnect?.();
    }
  };
  const { logs, problems } = openErrorLogs(start.loaded, paths.errorLog);
  for (const p of problems) say(`[alert] ${p}`);
  const pidFile = main.pid ?? DEFAULTS.pid;

  if (main.masterProcess === false) return single(start, logs, pidFile, report);

  const master = new Master(start, logs, pidFile);
  const err = await master.begin();
  if (err) {
    say(`[emerg] ${err}`);
    logs.log('emerg', err);
    logs.flushSync();
    report(false, err);
    return 1;
  }
  report(true);
  return master.finished;
}

function writePid(pidFile: string): string | undefined {
  if (!pidFile) return undefined;
  try {
    mkdirSync(dirname(pidFile), { recursive: true });
    writeFileSync(pidFile, `${process.pid}\n`);
    return undefined;
  } catch (e) {
    return `open() "${pidFile}" failed (${(e as Error).message})`;
  }
}

function removePid(pidFile: string): void {
  if (!pidFile) return;
  try {
    unlinkSync(pidFile);
  } catch {
    // already gone
  }
}

/** master_process off: serve in this process (no reload; a debugging mode in nginx too). */
async function single(start: MasterStart, logs: ErrorLogs, pidFile: string, report: (ok: boolean, m?: string) => void): Promise<number> {
  const front = new Front(start.loaded, logs);
  try {
    await front.listen(true);
  } catch (e) {
    say(`[emerg] ${(e as Error).message}`);
    logs.log('emerg', (e as Error).message);
    logs.flushSync();
    report(false, (e as Error).message);
    return 1;
  }
  const perr = writePid(pidFile) ?? dropPrivileges(start.loaded);
  if (perr) logs.log('alert', perr);
  report(true);
  return new Promise((resolve) => {
    const stop = (graceful: boolean) => {
      void front.shutdown(graceful, start.loaded.main.workerShutdownTimeoutMs ?? 0).then(() => {
        removePid(pidFile);
        logs.flushSync();
        resolve(0);
        process.exit(0);
      });
    };
    process.on('SIGQUIT', () => stop(true));
    process.on('SIGTERM', () => stop(false));
    process.on('SIGINT', () => stop(false));
    process.on('SIGUSR1', () => front.reopenLogs());
    process.on('SIGHUP', () => logs.log('notice', 'reload is not available with "master_process off"'));
  });
}

class Master {
  private current!: Generation;
  private readonly old = new Set<Generation>();
  private queue: Promise<void> = Promise.resolve();
  private exiting = false;
  private resolveFinished!: (code: number) => void;
  readonly finished = new Promise<number>((r) => (this.resolveFinished = r));
  private readonly genOf = new Map<Worker, Generation>();
  /** stub_status: what workers that have left counted (accepts, handled, requests), and the sums in progress. */
  private readonly retired: Counts = [0, 0, 0, 0, 0, 0];
  private readonly statsQueries = new Map<number, { waiting: Set<Worker>; got: Counts[]; finish: () => void }>();
  private statsIds = 0;

  constructor(private readonly start: MasterStart, private readonly logs: ErrorLogs, private pidFile: string) {
    cluster.schedulingPolicy = cluster.SCHED_NONE;
    const exec = fileURLToPath(new URL('./worker-main.js', import.meta.url));
    cluster.setupPrimary({ exec, args: [], serialization: 'advanced' });
    cluster.on('exit', (w, code, signal) => this.onExit(w, code, signal));
  }

  private count(conf: LoadedConf): number {
    const n = conf.main.workerProcesses;
    return n === undefined ? 1 : n === 0 ? availableParallelism() : n;
  }

  /** Starts the first generation; returns an error message when it could not serve. */
  async begin(): Promise<string | undefined> {
    const gen: Generation = { conf: this.start.loaded, snapshot: this.start.snapshot, workers: new Set() };
    const err = await this.spawnGeneration(gen, true);
    if (err) {
      await this.stopGeneration(gen, false);
      return err;
    }
    this.current = gen;
    const perr = writePid(this.pidFile);
    if (perr) this.logs.log('alert', perr);
    this.logs.log('notice', `${PRODUCT} master process started (${gen.workers.size} worker processes)`);
    const enqueue = (fn: () => Promise<void>) => {
      this.queue = this.queue.then(fn, fn);
    };
    process.on('SIGHUP', () => enqueue(() => this.reload()));
    process.on('SIGQUIT', () => enqueue(() => this.stop(true)));
    process.on('SIGTERM', () => enqueue(() => this.stop(false)));
    process.on('SIGINT', () => enqueue(() => this.stop(false)));
    process.on('SIGUSR1', () => enqueue(async () => this.reopen()));
    return undefined;
  }

  private forkWorker(gen: Generation, first: boolean): Promise<string | undefined> {
    const w = cluster.fork();
    w.on('message', (m: FromWorker) => this.onStats(w, m));
    gen.workers.add(w);
    this.genOf.set(w, gen);
    const msg: ToWorker = {
      t: 'start', snapshot: gen.snapshot, confFile: gen.conf.confFile, prefix: gen.conf.prefix, globals: this.start.options.globals,
      errorLog: this.start.paths.errorLog,
    };
    void first;
    return new Promise((resolve) => {
      const onMsg = (m: FromWorker) => {
        if (m.t === 'hello') w.send(msg);
        else if (m.t === 'ready') {
          w.off('message', onMsg);
          resolve(undefined);
        } else if (m.t === 'failed') {
          w.off('message', onMsg);
          resolve(m.message);
        }
      };
      w.on('message', onMsg);
      // A failure message may still be queued behind the exit: give it a turn to arrive.
      w.once('exit', () => setTimeout(() => resolve('worker process exited before it was ready'), 50));
    });
  }

  /**
   * stub_status across workers: a worker's question goes to every live worker (every generation, as nginx's
   * counters outlive a reload); the answer is their sum plus what retired workers counted. A worker that does
   * not answer within half a second is left out rather than holding the page.
   */
  private onStats(w: Worker, m: FromWorker): void {
    if (m.t === 'stats-final') {
      for (let i = 0; i < 3; i++) this.retired[i]! += m.counts[i]!;
    } else if (m.t === 'stats-is') {
      const q = this.statsQueries.get(m.id);
      if (!q || !q.waiting.delete(w)) return;
      q.got.push(m.counts);
      if (q.waiting.size === 0) q.finish();
    } else if (m.t === 'stats-ask') {
      const id = ++this.statsIds;
      const workers = [...this.genOf.keys()].filter((x) => x.isConnected());
      const q = {
        waiting: new Set(workers),
        got: [] as Counts[],
        finish: () => {
          clearTimeout(timer);
          this.statsQueries.delete(id);
          if (w.isConnected()) w.send({ t: 'stats-sum', id: m.id, counts: sumCounts([this.retired, ...q.got]) } satisfies ToWorker);
        },
      };
      const timer = setTimeout(q.finish, 500);
      this.statsQueries.set(id, q);
      for (const x of workers) x.send({ t: 'stats-get', id } satisfies ToWorker);
    }
  }

  private async spawnGeneration(gen: Generation, first: boolean): Promise<string | undefined> {
    const n = this.count(gen.conf);
    const results = await Promise.all(Array.from({ length: n }, () => this.forkWorker(gen, first)));
    return results.find((r) => r !== undefined);
  }

  private stopGeneration(gen: Generation, graceful: boolean): Promise<void> {
    const waits: Promise<void>[] = [];
    for (const w of gen.workers) {
      waits.push(new Promise((res) => (w.isDead() ? res() : w.once('exit', () => res()))));
      const m: ToWorker = { t: graceful ? 'quit' : 'stop' };
      try {
        if (w.isConnected()) w.send(m);
        else w.process.kill('SIGKILL');
      } catch {
        w.process.kill('SIGKILL');
      }
    }
    return Promise.all(waits).then(() => undefined);
  }

  private onExit(w: Worker, code: number, signal: string | null): void {
    const gen = this.genOf.get(w);
    this.genOf.delete(w);
    if (!gen) return;
    gen.workers.delete(w);
    if (this.exiting || gen !== this.current || (code === 0 && signal === null)) return;
    // A worker of the current generation died: say so and start another, as nginx's master does.
    this.logs.log('alert', `worker process ${w.process.pid} exited ${signal ? `on signal ${signal}` : `with code ${code}`}`);
    void this.forkWorker(gen, false).then((err) => {
      if (err) this.logs.log('alert', `could not start a worker process: ${err}`);
    });
  }

  private async reload(): Promise<void> {
    if (this.exiting) return;
    this.logs.log('notice', 'signal 1 (SIGHUP) received, reconfiguring');
    const fs = new DiskFs();
    let conf: LoadedConf;
    try {
      conf = await loadConf({ confFile: this.start.paths.conf, prefix: this.start.paths.prefix, globals: this.start.options.globals, fs });
    } catch (e) {
      const m = e instanceof ProxyConfError ? e.message : (e as Error).message;
      this.logs.log('emerg', m);
      return;
    }
    const gen: Generation = { conf, snapshot: fs.snapshot, workers: new Set() };
    const err = await this.spawnGeneration(gen, false);
    if (err) {
      this.logs.log('emerg', err);
      await this.stopGeneration(gen, false);
      return;
    }
    const prev = this.current;
    this.current = gen;
    const newPid = conf.main.pid ?? DEFAULTS.pid;
    if (newPid !== this.pidFile) {
      removePid(this.pidFile);
      this.pidFile = newPid;
      writePid(newPid);
    }
    this.old.add(prev);
    void this.stopGeneration(prev, true).then(() => this.old.delete(prev));
  }

  private reopen(): void {
    this.logs.reopen();
    for (const g of [this.current, ...this.old]) {
      for (const w of g.workers) if (w.isConnected()) w.send({ t: 'reopen' } satisfies ToWorker);
    }
  }

  private async stop(graceful: boolean): Promise<void> {
    if (this.exiting && graceful) return;
    this.exiting = true;
    await Promise.all([this.current, ...this.old].map((g) => this.stopGeneration(g, graceful)));
    removePid(this.pidFile);
    this.logs.log('notice', 'exit');
    this.logs.flushSync();
    this.resolveFinished(0);
    setImmediate(() => process.exit(0));
  }
}
