/**
 * The master's loop: it keeps the configured number of workers (and the HTTP router, when there is one)
 * alive on the master's sockets, reloads them without refusing a connection, and stops them without losing
 * an accepted request.
 *
 * Signals and child events only enqueue; `run()` takes events one at a time and is the only place that
 * changes state, so every lifecycle question is answered in this file.
 *
 *   SIGHUP          graceful reload: read the configuration again, start a new generation of workers, and
 *                   once all of them are ready ask the old ones to finish their request and exit.
 *   SIGTERM         graceful stop: the router stops accepting and answers what it has received, then the
 *                   workers finish what they hold and what is queued on the sockets; exit 0.
 *   SIGINT, SIGQUIT stop at once.
 *   SIGUSR1         the stats, to the log.
 *
 * Twice a second the master also looks at its workers (harakiri, memory limits, lifetimes) and at the files
 * that trigger reloads; the master FIFO's one-letter commands arrive as events too.
 *
 * Which worker ids run is the set `running`: all of 1..processes, or with `cheaper` the ones the cheaper
 * algorithm keeps (once a second, from the busy flags of the scoreboard). A worker id outside the set is
 * "cheap": its worker was stopped gracefully, or never started, and nothing respawns it.
 */
import type { ChildProcess } from 'node:child_process';
import { statSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import type { Settings } from '../config/resolve.js';
import type { ProcessLog } from './log.js';
import { memoryOf } from './procinfo.js';
import type { Scoreboard } from './scoreboard.js';
import type { WorkerSnapshot } from './stats.js';

/** A process the master can signal: its own child, or a worker forked by a generation's app loader. */
export interface Signalable {
  kill(signal: NodeJS.Signals): unknown;
}

export interface WorkerHandle {
  id: number;
  slot: number;
  generation: number;
  child: Signalable;
  /** -1 until known (a worker being forked by the app loader). */
  pid: number;
  state: 'starting' | 'ready' | 'stopping';
  spawnedAt: number;
  killTimer: NodeJS.Timeout | undefined;
  /** The worker this one replaces once it is ready (recycling, chain reload). */
  replaces: WorkerHandle | undefined;
  /** A replacement for this worker is starting. */
  recycling: boolean;
  /** Why the master killed it (harakiri, memory), for the exit line. */
  killedFor: string | undefined;
  /** Matches the app loader's answer to the fork request (preloading). */
  token: number;
  /** Stopped by the cheaper algorithm: it finishes its requests and is not respawned. */
  cheaped: boolean;
}

/** A generation's app loader (preloading): a Python process that imported the app and forks the workers. */
interface LoaderHandle {
  child: ChildProcess;
  generation: number;
  ready: boolean;
  /** Workers waiting for the loader to be ready before they can be forked. */
  waiting: WorkerHandle[];
  buffer: string;
  stopping: boolean;
}

export type Milestone = 'ready' | 'reloading' | 'reloaded' | 'reload-failed' | 'stopping';

/** What the master needs from the outside world; kept narrow so the loop reads as policy only. */
export interface MasterHooks {
  /** Starts one worker process with the given settings. */
  spawn(settings: Settings, id: number, slot: number): ChildProcess;
  /** Starts the HTTP router, when the configuration has HTTP sockets, keeping `links` links to the workers. */
  spawnRouter?(settings: Settings, links: number): ChildProcess;
  /**
   * Preloading (no lazy-apps): starts the app loader of a generation, which imports the app once and forks
   * the workers (copy-on-write), as uWSGI's master does. Without it, each worker is spawned and loads the app.
   */
  spawnLoader?(settings: Settings, generation: number): ChildProcess;
  /** Reads the configuration again for a reload; returns an error line when it is not usable. */
  reloadSettings(): Settings | string;
  /** Releases sockets, pidfiles and the scoreboard, then ends the process with `status`. */
  finish(status: number): void;
  /**
   * A graceful stop begins: the master lets go of its copies of the listening sockets (and, with vacuum,
   * the Unix socket files), so that once the workers and the router have emptied the queues and closed
   * theirs, new clients are refused instead of queued with nobody to answer them.
   */
  releaseListeners?(): void;
  /** Reopens the log file (log rotation); returns an error line when it cannot. */
  reopenLog?(): string | undefined;
  /** The size of the log file, for log-maxsize. */
  logSize?(): number;
  /** Rotates the log file (log-maxsize). */
  rotateLog?(): string | undefined;
  /** The stats, as a JSON text, for SIGUSR1 and the FIFO's `s`. */
  statsText?(): string;
  /**
   * Start-up, reload and stop milestones, for whoever supervises the master: systemd, and its emperor when it is a
   * vassal. A reload that is refused or aborted is 'reload-failed' (status: why): the old workers keep serving.
   */
  milestone?(what: Milestone, status: string): void;
}

interface RouterHandle {
  child: ChildProcess;
  pid: number;
  ready: boolean;
  spawnedAt: number;
  killTimer: NodeJS.Timeout | undefined;
}

type MasterEvent =
  | { type: 'signal'; signal: NodeJS.Signals }
  | { type: 'ready'; worker: WorkerHandle }
  | { type: 'recycling'; worker: WorkerHandle }
  | { type: 'exit'; worker: WorkerHandle; code: number | null; signal: NodeJS.Signals | null }
  | { type: 'respawn'; id: number; generation: number }
  | { type: 'router-ready'; router: RouterHandle }
  | { type: 'router-exit'; router: RouterHandle; code: number | null; signal: NodeJS.Signals | null }
  | { type: 'router-respawn' }
  | { type: 'tick' }
  | { type: 'chain-next' }
  | { type: 'loader-line'; loader: LoaderHandle; line: string }
  | { type: 'loader-exit'; loader: LoaderHandle; code: number | null; signal: NodeJS.Signals | null }
  | { type: 'command'; letter: string };

const SIGNAL_NAMES = new Map(Object.entries(osConstants.signals).map(([name, n]) => [n, name as NodeJS.Signals]));
const signalName = (n: number): NodeJS.Signals => SIGNAL_NAMES.get(n) ?? 'SIGKILL';

const EXIT_APP_FAILED = 22;
const EXIT_SOCKET_FAILED = 23;
const EXIT_RECYCLED = 24;
/** How often the master looks at its workers and at the touch files (harakiri's precision). */
const TICK_MS = 500;
/** A worker that dies sooner than this after its start counts as a failed start (for back-off). */
const FAST_DEATH_MS = 1000;
const MAX_BACKOFF_MS = 30_000;
/** How long an immediate stop waits for processes to exit before killing them. */
const IMMEDIATE_STOP_MS = 3000;
/** How often the cheaper algorithm looks at the workers (uWSGI's master cycle): its counts are in these. */
const CHEAPER_CHECK_MS = 1000;

/** The ids of the workers to start for a generation: all, or with cheaper at least `initial` and `keep`. */
function startingIds(s: Settings, keep: number): Set<number> {
  // http-to without an app: the router alone, in front of other instances (as uWSGI's no-workers mode).
  if (s.routerOnly) return new Set();
  const n = s.cheaper ? Math.min(s.processes, Math.max(s.cheaper.initial, keep)) : s.processes;
  return new Set(Array.from({ length: n }, (_, i) => i + 1));
}

export class Master {
  private settings: Settings;
  private readonly workers = new Set<WorkerHandle>();
  private readonly loaders = new Map<number, LoaderHandle>();
  private nextToken = 1;
  private router: RouterHandle | undefined;
  private routerDeaths = 0;
  private readonly queue: MasterEvent[] = [];
  private scheduled = false;
  private state: 'starting' | 'running' | 'reloading' | 'stopping' = 'starting';
  /** During a graceful stop: whether the router is still finishing before the workers are asked to stop. */
  private stopPhase: 'router' | 'workers' | undefined;
  private generation = 1;
  private reloadPending = false;
  private readonly fastDeaths = new Map<number, number>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private exitStatus = 0;
  /** Starts and harakiri kills per worker id, for the stats. */
  private readonly respawns = new Map<number, number>();
  private readonly harakiris = new Map<number, number>();
  /** Worker ids still to be replaced, one at a time, by a chain reload. */
  private chain: number[] | undefined;
  /** The old worker whose exit lets the chain reload go on to the next id. */
  private chainWaiting: WorkerHandle | undefined;
  /** How the old generation is asked to go at the end of this reload. */
  private retireSignal: NodeJS.Signals = 'SIGHUP';
  private readonly touchTimes = new Map<string, number>();
  private ticker: NodeJS.Timeout | undefined;
  private harakiriTimer: NodeJS.Timeout | undefined;
  /** The worker ids that run in the current generation (see the top of this file). */
  private running = new Set<number>();
  /** The running set of the previous generation, while a reload may still be aborted. */
  private runningBefore: Set<number> | undefined;
  /** The previous generation's settings, while a reload may still be aborted (its workers are respawned with them). */
  private settingsBefore: Settings | undefined;
  /** The cheaper algorithm's state: checks in a row with every worker busy, idle checks, the last check. */
  private overloadChecks = 0;
  private idleChecks = 0;
  private cheaperCheckedAt = 0;
  /** Workers asked for (+) or to stop (-) with the master FIFO, applied at the next cheaper check. */
  private cheaperDelta = 0;

  constructor(
    settings: Settings,
    private readonly hooks: MasterHooks,
    private readonly log: ProcessLog,
    private readonly scoreboard: Scoreboard,
  ) {
    this.settings = settings;
  }

  start(): void {
    this.running = startingIds(this.settings, 0);
    const c = this.settings.cheaper;
    if (c) {
      if (c.initialNote) this.log.info(c.initialNote);
      this.log.info(`cheaper (${c.algo}): ${this.running.size} of ${this.settings.processes} worker(s) start; ` +
        `at least ${c.min} run${c.algo === 'spare' ? `, ${c.step} more when all are busy for over ${c.overload} s` : ''}`);
    }
    for (const id of this.running) this.spawn(id, this.generation);
    if (this.hooks.spawnRouter) this.spawnRouter();
    this.rememberTouchTimes();
    this.ticker = setInterval(() => this.enqueue({ type: 'tick' }), TICK_MS);
  }

  /** A master FIFO command. */
  command(letter: string): void {
    this.enqueue({ type: 'command', letter });
  }

  /** Entry point for signals and child events: record, then let the loop act. */
  enqueue(event: MasterEvent): void {
    this.queue.push(event);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => this.run());
    }
  }

  signal(signal: NodeJS.Signals): void {
    this.enqueue({ type: 'signal', signal });
  }

  /** Live workers, for tests and stats. */
  list(): WorkerHandle[] {
    return [...this.workers];
  }

  private run(): void {
    this.scheduled = false;
    while (this.queue.length) {
      const event = this.queue.shift()!;
      try {
        this.handle(event);
        if (this.loaders.size) this.releaseLoaders();
      } catch (err) {
        // The master must never die of its own bug: say it, and keep supervising.
        this.log.info(`internal error while handling ${event.type}: ${(err as Error).stack ?? err}`);
      }
    }
  }

  private handle(e: MasterEvent): void {
    switch (e.type) {
      case 'signal':
        return this.onSignal(e.signal);
      case 'ready':
        return this.onReady(e.worker);
      case 'recycling':
        return this.onRecycling(e.worker);
      case 'exit':
        return this.onExit(e.worker, e.code, e.signal);
      case 'respawn':
        if (this.state !== 'stopping' && e.generation === this.generation && this.running.has(e.id)) this.spawn(e.id, e.generation);
        return;
      case 'router-ready':
        if (this.router === e.router) {
          e.router.ready = true;
          this.checkStarted();
        }
        return;
      case 'router-exit':
        return this.onRouterExit(e.router, e.code, e.signal);
      case 'router-respawn':
        if (this.state !== 'stopping' && !this.router) this.spawnRouter();
        return;
      case 'tick':
        return this.onTick();
      case 'chain-next':
        if (this.state === 'reloading' && this.chain) this.chainNext();
        return;
      case 'loader-line':
        return this.onLoaderLine(e.loader, e.line);
      case 'loader-exit':
        return this.onLoaderExit(e.loader, e.code, e.signal);
      case 'command':
        return this.onCommand(e.letter);
    }
  }

  // ---- signals ---------------------------------------------------------------------------------------------

  private onSignal(signal: NodeJS.Signals): void {
    switch (signal) {
      case 'SIGHUP':
        if (this.state === 'stopping') return;
        if (this.state === 'reloading' || this.state === 'starting') {
          this.reloadPending = true;
          return;
        }
        return this.beginReload();
      case 'SIGTERM':
        if (this.state === 'stopping') return this.stopNow('second SIGTERM');
        return this.stopGracefully();
      case 'SIGINT':
      case 'SIGQUIT':
        return this.stopNow(signal);
      case 'SIGUSR1':
        return this.logStats();
      default:
        return;
    }
  }

  private onCommand(letter: string): void {
    switch (letter) {
      case 'r':
      case 'w':
        return this.onSignal('SIGHUP');
      case 'R':
      case 'W':
        // Reload without mercy: the old workers are stopped at once when the new ones are ready.
        if (this.state === 'running') this.beginReload('SIGINT');
        return;
      case 'c':
        if (this.state === 'running') this.beginChainReload();
        else if (this.state !== 'stopping') this.reloadPending = true;
        return;
      case 'q':
        return this.onSignal('SIGTERM');
      case 'Q':
        return this.stopNow('master FIFO Q');
      case 's':
        return this.logStats();
      case 'l':
        return this.reopenLog('master FIFO l');
      case '+':
      case '-':
        // As uWSGI: one more worker, or one less, at the next cheaper check (whatever the algorithm).
        if (!this.settings.cheaper) this.log.info(`master FIFO: '${letter}' needs cheaper (adaptive process spawning) to be on`);
        else this.cheaperDelta += letter === '+' ? 1 : -1;
        return;
      default:
        this.log.info(`master FIFO: unknown command '${letter}' (r reload, c chain reload, q graceful stop, Q stop now, s stats, l reopen log, + / - one worker more / less with cheaper)`);
    }
  }

  private logStats(): void {
    if (this.hooks.statsText) this.log.info(`stats:\n${this.hooks.statsText()}`);
  }

  private reopenLog(why: string): void {
    const err = this.hooks.reopenLog?.();
    if (err) {
      this.log.info(`cannot reopen the log (${why}): ${err}`);
      return;
    }
    this.signalAll('SIGWINCH');
    this.log.info(`log reopened (${why})`);
  }

  /** Sends a signal to every worker and the router (log reopening). */
  private signalAll(signal: NodeJS.Signals): void {
    for (const w of this.workers) {
      try {
        w.child.kill(signal);
      } catch {
        /* gone */
      }
    }
    try {
      this.router?.child.kill(signal);
    } catch {
      /* gone */
    }
  }

  private later(ms: number, event: MasterEvent): void {
    const t = setTimeout(() => {
      this.timers.delete(t);
      this.enqueue(event);
    }, ms);
    this.timers.add(t);
  }

  // ---- workers ---------------------------------------------------------------------------------------------

  private spawn(id: number, generation: number, replaces?: WorkerHandle): void {
    const slot = this.scoreboard.acquire();
    if (slot === undefined) {
      this.log.info(`no free scoreboard slot for worker ${id}; retrying in 1 second`);
      if (replaces) replaces.recycling = false;
      else this.later(1000, { type: 'respawn', id, generation });
      return;
    }
    this.scoreboard.identify(slot, id, this.respawns.get(id) ?? 0, Date.now());
    const w: WorkerHandle = {
      id,
      slot,
      generation,
      child: { kill: (sig: NodeJS.Signals) => w.pid > 0 && process.kill(w.pid, sig) },
      pid: -1,
      state: 'starting',
      spawnedAt: Date.now(),
      killTimer: undefined,
      replaces,
      recycling: false,
      killedFor: undefined,
      token: this.nextToken++,
      cheaped: false,
    };
    if (this.hooks.spawnLoader) {
      // Preloading: the generation's app loader forks the worker.
      this.workers.add(w);
      this.respawns.set(id, (this.respawns.get(id) ?? 0) + 1);
      const loader = this.loaderFor(generation);
      if (!loader) return;
      if (loader.ready) this.requestFork(loader, w);
      else loader.waiting.push(w);
      return;
    }
    let child: ChildProcess;
    try {
      child = this.hooks.spawn(this.settings, id, slot);
    } catch (err) {
      this.scoreboard.release(slot);
      this.log.info(`cannot start worker ${id}: ${(err as Error).message}`);
      if (this.state === 'starting') return this.fatal(1);
      if (replaces) replaces.recycling = false;
      else this.later(this.backoff(id), { type: 'respawn', id, generation });
      return;
    }
    w.child = child;
    w.pid = child.pid ?? -1;
    this.workers.add(w);
    this.respawns.set(id, (this.respawns.get(id) ?? 0) + 1);
    const control = child.stdio[3];
    // R: ready. M: reached max-requests, finishing its connections (a Node worker; a Python one just exits).
    control?.on('data', (chunk: Buffer) => {
      if (chunk.includes(0x52 /* R */)) this.enqueue({ type: 'ready', worker: w });
      if (chunk.includes(0x4d /* M */)) this.enqueue({ type: 'recycling', worker: w });
    });
    control?.on('error', () => {
      /* the worker's end closing is reported by its exit */
    });
    child.on('exit', (code, sig) => this.enqueue({ type: 'exit', worker: w, code, signal: sig }));
    child.on('error', (err) => {
      this.log.info(`worker ${id}: ${err.message}`);
      if (w.pid === -1) this.enqueue({ type: 'exit', worker: w, code: 1, signal: null });
    });
    this.log.info(`spawned worker ${id} (pid: ${w.pid}${generation > 1 ? `, generation ${generation}` : ''})`);
  }

  // ---- app loaders (preloading) ----------------------------------------------------------------------------

  /** The app loader of a generation, started on first need. */
  private loaderFor(generation: number): LoaderHandle | undefined {
    let loader = this.loaders.get(generation);
    if (loader) return loader;
    let child: ChildProcess;
    try {
      child = this.hooks.spawnLoader!(this.settings, generation);
    } catch (err) {
      this.log.info(`cannot start the app loader: ${(err as Error).message}`);
      this.fatal(1);
      return undefined;
    }
    const l: LoaderHandle = { child, generation, ready: false, waiting: [], buffer: '', stopping: false };
    loader = l;
    this.loaders.set(generation, l);
    child.stdio[3]?.on('data', (chunk: Buffer) => {
      l.buffer += chunk.toString('latin1');
      let nl: number;
      while ((nl = l.buffer.indexOf('\n')) !== -1) {
        const line = l.buffer.slice(0, nl);
        l.buffer = l.buffer.slice(nl + 1);
        this.enqueue({ type: 'loader-line', loader: l, line });
      }
    });
    child.stdio[3]?.on('error', () => {
      /* reported by the exit */
    });
    child.on('exit', (code, sig) => this.enqueue({ type: 'loader-exit', loader: l, code, signal: sig }));
    this.log.info(`spawned the app loader (pid: ${child.pid}${generation > 1 ? `, generation ${generation}` : ''}): the app is imported once, workers are forked from it`);
    return loader;
  }

  private requestFork(loader: LoaderHandle, w: WorkerHandle): void {
    const s = this.settings;
    const maxRequests = s.maxRequests ? s.maxRequests + w.id * s.maxRequestsDelta : 0;
    (loader.child.stdio[3] as NodeJS.WritableStream | null)?.write(`fork ${w.token} ${w.id} ${w.slot} ${maxRequests}\n`);
  }

  private workerByPid(pid: number): WorkerHandle | undefined {
    for (const w of this.workers) if (w.pid === pid) return w;
    return undefined;
  }

  private onLoaderLine(loader: LoaderHandle, line: string): void {
    const [kind, a, b] = line.split(' ');
    if (kind === 'Z') {
      loader.ready = true;
      for (const w of loader.waiting.splice(0)) {
        if (!this.workers.has(w)) continue;
        if (this.state === 'stopping' || w.state === 'stopping') this.onExit(w, null, 'SIGTERM'); // never forked
        else this.requestFork(loader, w);
      }
    } else if (kind === 'F') {
      const token = Number(a);
      for (const w of this.workers) {
        if (w.token !== token) continue;
        w.pid = Number(b);
        this.log.info(`spawned worker ${w.id} (pid: ${w.pid}${w.generation > 1 ? `, generation ${w.generation}` : ''})`);
        // A stop that came while the fork was in flight.
        if (w.state === 'stopping' || w.killedFor) w.child.kill(w.killedFor ? 'SIGKILL' : 'SIGTERM');
      }
    } else if (kind === 'R') {
      const w = this.workerByPid(Number(a));
      if (w) this.onReady(w);
    } else if (kind === 'X') {
      const w = this.workerByPid(Number(a));
      const status = Number(b);
      if (w) this.onExit(w, status >= 0 ? status : null, status < 0 ? signalName(-status) : null);
    }
  }

  private onLoaderExit(loader: LoaderHandle, code: number | null, signal: NodeJS.Signals | null): void {
    this.loaders.delete(loader.generation);
    const orphans = [...this.workers].filter((w) => w.generation === loader.generation);
    if (this.state === 'stopping' || loader.stopping) {
      for (const w of orphans) this.onExit(w, null, 'SIGKILL');
      return this.maybeFinish();
    }
    if (code === EXIT_APP_FAILED || code === EXIT_SOCKET_FAILED) {
      // Its workers were never forked: their failure is the loader's.
      for (const w of orphans) {
        if (w.pid === -1) this.onExit(w, code, null);
      }
      return;
    }
    // The loader died on its own: its workers die with it (they asked to be told); start over.
    const how = signal ? `killed by ${signal}` : `exited with status ${code}`;
    this.log.info(`the app loader of generation ${loader.generation} ${how}; its workers go with it and are started again`);
    for (const w of orphans) {
      if (w.pid > 0) w.child.kill('SIGKILL');
      this.onExit(w, null, 'SIGKILL');
    }
  }

  /** An old generation's loader goes once its last worker has. */
  private releaseLoaders(): void {
    for (const [generation, loader] of this.loaders) {
      if (generation >= this.generation && this.state !== 'stopping') continue;
      if ([...this.workers].some((w) => w.generation === generation)) continue;
      if (!loader.stopping) {
        loader.stopping = true;
        loader.child.kill('SIGTERM');
      }
    }
  }

  private backoff(id: number): number {
    const k = this.fastDeaths.get(id) ?? 0;
    return k === 0 ? 0 : Math.min(1000 * 2 ** (k - 1), MAX_BACKOFF_MS);
  }

  private onReady(w: WorkerHandle): void {
    if (w.state !== 'starting' || !this.workers.has(w)) return;
    w.state = 'ready';
    const old = w.replaces;
    if (old) {
      // A replacement serves: the worker it replaces may go now.
      w.replaces = undefined;
      if (this.workers.has(old) && old.state !== 'stopping') this.retire(old, this.retireSignal, this.settings.workerReloadMercy);
    }
    if (this.state === 'starting') this.checkStarted();
    else if (this.state === 'reloading' && w.generation === this.generation) {
      // In a chain reload the next worker starts when the old one it replaced has gone (see onExit).
      if (this.chain && !this.chainWaiting) this.chainNext();
      else if (!this.chain && this.allReady(this.generation)) this.finishReload();
    }
  }

  /**
   * A worker has reached max-requests and no longer accepts, but may take a while to finish (a Node worker
   * answers each kept-alive connection once more, or waits for its keep-alive timeout): its replacement
   * starts now rather than when it exits, so that someone is accepting meanwhile.
   */
  private onRecycling(w: WorkerHandle): void {
    if (!this.workers.has(w) || w.state !== 'ready' || w.recycling || this.state !== 'running') return;
    this.log.info(`worker ${w.id} (pid: ${w.pid}) reached max-requests and finishes its connections; its replacement starts now`);
    this.fastDeaths.set(w.id, 0);
    this.retire(w, 'SIGHUP', this.settings.workerReloadMercy);
    this.spawn(w.id, w.generation);
  }

  /** Start-up is over once every worker is ready and the router (if any) listens. */
  private checkStarted(): void {
    if (this.state !== 'starting' || !this.allReady(this.generation)) return;
    if (this.hooks.spawnRouter && !this.router?.ready) return;
    this.state = 'running';
    const n = this.running.size;
    const of = this.settings.cheaper ? ` (cheaper: ${this.settings.cheaper.min} to ${this.settings.processes})` : '';
    this.log.info(`ready: ${n} worker(s) serving${of}${this.router ? ', router listening' : ''} (master pid: ${process.pid})`);
    this.hooks.milestone?.('ready', `${n} workers serving`);
    if (this.reloadPending) {
      this.reloadPending = false;
      this.beginReload();
    }
  }

  private allReady(generation: number): boolean {
    let n = 0;
    for (const w of this.workers) {
      if (w.generation !== generation || w.cheaped) continue;
      if (w.state !== 'ready') return false;
      n++;
    }
    return n >= this.running.size;
  }

  private onExit(w: WorkerHandle, code: number | null, signal: NodeJS.Signals | null): void {
    if (!this.workers.delete(w)) return;
    if (w.killTimer) clearTimeout(w.killTimer);
    this.scoreboard.release(w.slot);
    const how = w.killedFor ? `killed (${w.killedFor})` : signal ? `killed by ${signal}` : `exited with status ${code}`;
    if (this.chainWaiting === w) {
      // The chain reload goes on once the old worker is gone and its replacement serves.
      this.chainWaiting = undefined;
      const replaced = [...this.workers].some((x) => x.id === w.id && x.generation === this.generation && x.state === 'ready');
      if (replaced) setImmediate(() => this.enqueue({ type: 'chain-next' }));
    }

    if (this.state === 'stopping') {
      this.log.info(`worker ${w.id} (pid: ${w.pid}) stopped (${how})`);
      return this.maybeFinish();
    }
    if (w.state === 'stopping') {
      if (w.cheaped) this.log.info(`worker ${w.id} (pid: ${w.pid}) cheaped (${how})`);
      else this.log.info(`worker ${w.id} (pid: ${w.pid}, generation ${w.generation}) retired (${how})`);
      return;
    }
    const appFailed = code === EXIT_APP_FAILED;
    if (this.state === 'starting' && (appFailed || code === EXIT_SOCKET_FAILED)) {
      this.log.info(appFailed ? 'the app could not be loaded (traceback above); stopping, as need-app asks' : 'a socket could not be listened on (see above); stopping');
      return this.fatal(1);
    }
    if (this.state === 'reloading' && w.generation === this.generation && appFailed) {
      return this.abortReload('the new app could not be loaded (traceback above)');
    }
    if (w.generation < this.generation) {
      this.log.info(`worker ${w.id} (pid: ${w.pid}, generation ${w.generation}) ${how}; not respawned, a reload replaces it`);
      return;
    }
    if (w.recycling) {
      // Its replacement is on the way: nothing to start.
      this.log.info(`worker ${w.id} (pid: ${w.pid}) ${how}; its replacement is starting`);
      return;
    }
    if (!this.running.has(w.id)) {
      this.log.info(`worker ${w.id} (pid: ${w.pid}) ${how}; not respawned, cheaper keeps it stopped`);
      return;
    }
    if (code === EXIT_RECYCLED) {
      this.log.info(`worker ${w.id} (pid: ${w.pid}) recycled itself (max-requests); respawning`);
      this.fastDeaths.set(w.id, 0);
      return this.spawn(w.id, w.generation);
    }
    if (w.killedFor) this.fastDeaths.set(w.id, 0);
    const lived = Date.now() - w.spawnedAt;
    const fast = !w.killedFor && (lived < FAST_DEATH_MS || w.state === 'starting');
    this.fastDeaths.set(w.id, fast ? (this.fastDeaths.get(w.id) ?? 0) + 1 : 0);
    const delay = this.backoff(w.id);
    this.log.info(
      `worker ${w.id} (pid: ${w.pid}) ${how}${appFailed ? ' (app failed to load)' : ''}; ` +
        (delay ? `respawning in ${delay / 1000} s (it keeps dying at start)` : 'respawning'),
    );
    if (w.replaces) {
      // A replacement that failed: try again (with back-off); the worker it replaces keeps serving meanwhile.
      const old = w.replaces;
      if (delay) {
        old.recycling = false; // the next check will start another replacement
        return;
      }
      return this.spawn(w.id, w.generation, old);
    }
    if (delay) this.later(delay, { type: 'respawn', id: w.id, generation: w.generation });
    else this.spawn(w.id, w.generation);
  }

  // ---- the HTTP router -------------------------------------------------------------------------------------

  private spawnRouter(): void {
    let child: ChildProcess;
    try {
      child = this.hooks.spawnRouter!(this.settings, this.linksWanted());
    } catch (err) {
      this.log.info(`cannot start the HTTP router: ${(err as Error).message}`);
      return this.fatal(1);
    }
    const r: RouterHandle = { child, pid: child.pid ?? -1, ready: false, spawnedAt: Date.now(), killTimer: undefined };
    this.router = r;
    child.on('message', (m: { type?: string }) => {
      if (m?.type === 'ready') this.enqueue({ type: 'router-ready', router: r });
    });
    child.on('exit', (code, sig) => this.enqueue({ type: 'router-exit', router: r, code, signal: sig }));
    child.on('error', (err) => this.log.info(`router: ${err.message}`));
    this.log.info(`spawned HTTP router (pid: ${r.pid})`);
  }

  private onRouterExit(r: RouterHandle, code: number | null, signal: NodeJS.Signals | null): void {
    if (this.router !== r) return;
    this.router = undefined;
    if (r.killTimer) clearTimeout(r.killTimer);
    const how = signal ? `killed by ${signal}` : `exited with status ${code}`;
    if (this.state === 'stopping') {
      this.log.info(`HTTP router (pid: ${r.pid}) stopped (${how})`);
      if (this.stopPhase === 'router') this.stopWorkers();
      return this.maybeFinish();
    }
    if (this.state === 'starting' && !r.ready) {
      this.log.info(`the HTTP router could not start (${how}); stopping`);
      return this.fatal(1);
    }
    const fast = Date.now() - r.spawnedAt < FAST_DEATH_MS;
    this.routerDeaths = fast ? this.routerDeaths + 1 : 0;
    const delay = this.routerDeaths === 0 ? 0 : Math.min(1000 * 2 ** (this.routerDeaths - 1), MAX_BACKOFF_MS);
    this.log.info(`HTTP router (pid: ${r.pid}) ${how}; respawning${delay ? ` in ${delay / 1000} s` : ''}`);
    if (delay) this.later(delay, { type: 'router-respawn' });
    else this.spawnRouter();
  }

  // ---- reload ----------------------------------------------------------------------------------------------

  /** Reads the configuration again and opens a new generation; false when the reload is refused. */
  private prepareReload(kind: string): boolean {
    const next = this.hooks.reloadSettings();
    if (typeof next === 'string') {
      this.log.info(`reload refused, still serving with the previous configuration: ${next}`);
      this.hooks.milestone?.('reload-failed', next);
      return false;
    }
    if (this.settings.logReopen) this.reopenLog('log-reopen on reload');
    this.settingsBefore = this.settings;
    this.settings = next;
    this.state = 'reloading';
    this.generation++;
    // With cheaper, the new generation starts cheaper-initial workers, or as many as run now when that is more:
    // a reload under load keeps its capacity.
    this.runningBefore = this.running;
    this.running = startingIds(next, this.running.size);
    this.overloadChecks = 0;
    this.idleChecks = 0;
    this.fastDeaths.clear();
    this.hooks.milestone?.('reloading', `${kind} to generation ${this.generation}`);
    return true;
  }

  private beginReload(retireSignal: NodeJS.Signals = 'SIGHUP'): void {
    if (!this.prepareReload('graceful reload')) return;
    this.retireSignal = retireSignal;
    this.chain = undefined;
    this.log.info(`graceful reload: starting ${this.running.size} new worker(s) (generation ${this.generation})`);
    for (const id of this.running) this.spawn(id, this.generation);
    // http-to without an app: no worker to wait for.
    if (this.running.size === 0) this.finishReload();
  }

  /** Chain reload: replace the workers one at a time, each new one serving before the old one stops. */
  private beginChainReload(): void {
    if (!this.prepareReload('chain reload')) return;
    this.retireSignal = 'SIGHUP';
    this.chain = [...this.running].sort((a, b) => a - b);
    this.log.info(`chain reload: replacing ${this.chain.length} worker(s) one at a time (generation ${this.generation})`);
    this.chainNext();
  }

  private chainNext(): void {
    const id = this.chain?.shift();
    if (id === undefined) {
      this.chain = undefined;
      return this.finishReload();
    }
    let old: WorkerHandle | undefined;
    for (const w of this.workers) {
      if (w.id === id && w.generation < this.generation && w.state !== 'stopping') old = w;
    }
    if (old) old.recycling = true;
    this.chainWaiting = old;
    this.spawn(id, this.generation, old);
  }

  private finishReload(): void {
    this.state = 'running';
    this.runningBefore = undefined;
    this.settingsBefore = undefined;
    for (const w of this.workers) {
      if (w.generation < this.generation && w.state !== 'stopping') this.retire(w, this.retireSignal, this.settings.workerReloadMercy);
    }
    this.retireSignal = 'SIGHUP';
    this.hooks.milestone?.('reloaded', `generation ${this.generation} serving`);
    this.tellRouterLinks();
    this.log.info(`graceful reload done: generation ${this.generation} serving`);
    if (this.reloadPending) {
      this.reloadPending = false;
      this.beginReload();
    }
  }

  private abortReload(why: string): void {
    this.log.info(`reload failed: ${why}; the previous workers keep serving`);
    for (const w of this.workers) {
      if (w.generation === this.generation) this.retire(w, 'SIGKILL', 0);
      else w.recycling = false;
    }
    this.chain = undefined;
    this.chainWaiting = undefined;
    this.generation--;
    if (this.runningBefore) this.running = this.runningBefore;
    this.runningBefore = undefined;
    if (this.settingsBefore) this.settings = this.settingsBefore;
    this.settingsBefore = undefined;
    this.state = 'running';
    this.hooks.milestone?.('reload-failed', why);
  }

  /** Asks a process to finish and exit; kills it when it takes longer than `mercy` seconds. */
  private retire(w: WorkerHandle | RouterHandle, signal: NodeJS.Signals, mercy: number): void {
    if ('state' in w) w.state = 'stopping';
    try {
      w.child.kill(signal);
    } catch {
      /* already gone */
    }
    if (w.killTimer) clearTimeout(w.killTimer);
    if (signal !== 'SIGKILL') {
      w.killTimer = setTimeout(() => {
        this.log.info(`pid ${w.pid} did not finish within ${mercy} s; killing it`);
        w.child.kill('SIGKILL');
      }, mercy * 1000);
    }
  }

  // ---- every tick ---------------------------------------------------------------------------------------

  private onTick(): void {
    if (this.state === 'stopping') return;
    const now = Date.now();
    const s = this.settings;
    for (const w of [...this.workers]) {
      if (w.killedFor || w.state === 'starting') continue;
      if (s.harakiri > 0) this.checkHarakiri(w, now);
      if (w.killedFor) continue;
      if (s.evilReloadOnRss > 0 || s.reloadOnRss > 0) {
        const mb = memoryOf(w.pid).rss / (1024 * 1024);
        if (s.evilReloadOnRss > 0 && mb > s.evilReloadOnRss) {
          this.kill(w, `evil-reload-on-rss: ${Math.round(mb)} MB > ${s.evilReloadOnRss} MB`);
          continue;
        }
        if (s.reloadOnRss > 0 && mb > s.reloadOnRss) this.recycle(w, `reload-on-rss: ${Math.round(mb)} MB > ${s.reloadOnRss} MB`);
      }
      const lifetime = s.maxWorkerLifetime > 0 ? (s.maxWorkerLifetime + w.id * s.maxWorkerLifetimeDelta) * 1000 : 0;
      if (lifetime && now - w.spawnedAt > lifetime) this.recycle(w, `max-worker-lifetime: ${Math.round((now - w.spawnedAt) / 1000)} s`);
    }
    if (s.cheaper && this.state === 'running' && now - this.cheaperCheckedAt >= CHEAPER_CHECK_MS - TICK_MS / 2) {
      this.cheaperCheckedAt = now;
      this.checkCheaper(s.cheaper);
    }
    this.checkTouchFiles();
    if (s.logMaxsize > 0 && this.hooks.logSize && this.hooks.logSize() > s.logMaxsize) {
      const err = this.hooks.rotateLog?.();
      if (err) this.log.info(`cannot rotate the log (log-maxsize): ${err}`);
      else {
        this.signalAll('SIGWINCH');
        this.log.info(`log rotated (log-maxsize ${s.logMaxsize})`);
      }
    }
  }

  private checkHarakiri(w: WorkerHandle, now: number): void {
    const slot = this.scoreboard.read(w.slot);
    for (const core of slot.cores) {
      if (core.requestStartMs === 0) continue;
      const ran = (now - core.requestStartMs) / 1000;
      if (ran <= this.settings.harakiri) {
        // Due before the next tick: look again exactly then, so harakiri keeps its word to the second.
        const due = core.requestStartMs + this.settings.harakiri * 1000 + 5 - now;
        if (due < TICK_MS && !this.harakiriTimer) {
          this.harakiriTimer = setTimeout(() => {
            this.harakiriTimer = undefined;
            this.enqueue({ type: 'tick' });
          }, due);
        }
        continue;
      }
      this.harakiris.set(w.id, (this.harakiris.get(w.id) ?? 0) + 1);
      this.log.info(`harakiri: worker ${w.id} (pid: ${w.pid}) killed: "${core.request}" ran for ${ran.toFixed(1)} s (harakiri ${this.settings.harakiri})`);
      if (this.settings.harakiriVerbose) {
        // The worker prints every thread's stack on SIGUSR2 (faulthandler); then it is killed.
        try {
          w.child.kill('SIGUSR2');
        } catch {
          /* gone */
        }
        w.killedFor = 'harakiri';
        setTimeout(() => w.child.kill('SIGKILL'), 300);
      } else this.kill(w, 'harakiri');
      return;
    }
  }

  private kill(w: WorkerHandle, why: string): void {
    if (!w.killedFor) this.log.info(`worker ${w.id} (pid: ${w.pid}) killed now: ${why}`);
    w.killedFor = why;
    try {
      w.child.kill('SIGKILL');
    } catch {
      /* gone */
    }
  }

  /** Replaces a serving worker without losing capacity: a new one starts, the old one goes once it is ready. */
  private recycle(w: WorkerHandle, reason: string): void {
    if (w.state !== 'ready' || w.recycling || this.state !== 'running') return;
    w.recycling = true;
    this.log.info(`recycling worker ${w.id} (pid: ${w.pid}): ${reason}; its replacement starts first`);
    this.spawn(w.id, w.generation, w);
  }

  // ---- cheaper ---------------------------------------------------------------------------------------------

  /** Links the router keeps: one per core of every running worker. */
  private linksWanted(): number {
    return this.running.size * this.settings.threads;
  }

  private tellRouterLinks(): void {
    this.router?.child.send?.({ type: 'links', links: this.linksWanted() });
  }

  /**
   * One check of the cheaper algorithm (once a second). spare, as in uWSGI 2.0: a check that finds every
   * running worker busy counts towards overload, one that finds an idle worker counts it back down. Once more
   * than `overload` checks in a row found them all busy, `step` more workers start. When none is busy any more,
   * exactly one idle worker is the stable state; otherwise every `overload`-th such check stops the oldest
   * worker, down to `cheaper`. The busy flags are the workers' own, in the scoreboard: no message per request.
   */
  private checkCheaper(c: NonNullable<Settings['cheaper']>): void {
    if (this.cheaperDelta !== 0) {
      const delta = this.cheaperDelta;
      this.cheaperDelta = 0;
      if (delta > 0) this.cheaperStart(delta, `master FIFO: ${delta} more asked`);
      else if (this.running.size <= c.min) this.log.info(`cheaper: master FIFO: one less asked, but only cheaper (${c.min}) worker(s) run`);
      else this.cheapOldest('master FIFO: one less asked');
      return;
    }
    if (c.algo !== 'spare') return;
    let active = 0;
    let busy = 0;
    for (const w of this.workers) {
      // A replacement that is starting (recycling) stands for the same id as the worker it replaces.
      if (w.generation !== this.generation || w.state === 'stopping' || w.replaces || !this.running.has(w.id)) continue;
      active++;
      if (w.state === 'ready' && this.scoreboard.isBusy(w.slot)) busy++;
    }
    if (active === 0) return;
    if (busy < active) {
      if (this.overloadChecks > 0) this.overloadChecks--;
    } else {
      this.overloadChecks++;
      this.idleChecks = 0;
    }
    if (this.overloadChecks > c.overload) {
      this.overloadChecks = 0;
      this.cheaperStart(c.step, `all ${active} worker(s) busy for ${c.overload + 1} s`);
      return;
    }
    if (this.overloadChecks !== 0 || active - busy === 1) return; // one spare worker: the stable state
    this.idleChecks++;
    if (active > c.min && this.idleChecks % c.overload === 0) this.cheapOldest(`${active - busy} of ${active} worker(s) idle`);
  }

  /** Starts up to `n` workers among the cheap ids (the lowest first). */
  private cheaperStart(n: number, why: string): void {
    const live = new Set<number>();
    for (const w of this.workers) if (w.generation === this.generation) live.add(w.id);
    const ids: number[] = [];
    for (let id = 1; id <= this.settings.processes && ids.length < n; id++) {
      // A cheaped worker still finishing its request keeps its id until it has exited (as in uWSGI).
      if (!this.running.has(id) && !live.has(id)) ids.push(id);
    }
    if (ids.length === 0) return;
    this.log.info(`cheaper: ${why}; starting worker${ids.length > 1 ? 's' : ''} ${ids.join(', ')} (${this.running.size + ids.length} of ${this.settings.processes})`);
    for (const id of ids) {
      this.running.add(id);
      this.fastDeaths.set(id, 0);
      this.spawn(id, this.generation);
    }
    this.tellRouterLinks();
  }

  /** Stops the oldest running worker, gracefully (it finishes its requests), unless only `cheaper` run. */
  private cheapOldest(why: string): void {
    const c = this.settings.cheaper;
    if (!c || this.running.size <= c.min) return;
    let oldest: WorkerHandle | undefined;
    for (const w of this.workers) {
      if (w.generation !== this.generation || w.state !== 'ready' || w.recycling || w.cheaped || !this.running.has(w.id)) continue;
      if (!oldest || w.spawnedAt < oldest.spawnedAt) oldest = w;
    }
    if (!oldest) return;
    const busy = this.scoreboard.isBusy(oldest.slot);
    this.running.delete(oldest.id);
    oldest.cheaped = true;
    this.log.info(`cheaper: ${why}; stopping worker ${oldest.id} (pid: ${oldest.pid}), the oldest` +
      `${busy ? ', once it has finished its request' : ''} (${this.running.size} of ${this.settings.processes} left)`);
    this.retire(oldest, 'SIGHUP', this.settings.workerReloadMercy);
    this.tellRouterLinks();
  }

  private mtime(path: string): number {
    try {
      return statSync(path).mtimeMs;
    } catch {
      return 0;
    }
  }

  private rememberTouchTimes(): void {
    const s = this.settings;
    for (const f of [...s.touchReload, ...s.touchChainReload, ...s.touchLogreopen]) this.touchTimes.set(f, this.mtime(f));
  }

  private touched(files: readonly string[]): string | undefined {
    let hit: string | undefined;
    for (const f of files) {
      const t = this.mtime(f);
      const before = this.touchTimes.get(f);
      this.touchTimes.set(f, t);
      if (before !== undefined && t !== before && t !== 0) hit = f;
    }
    return hit;
  }

  private checkTouchFiles(): void {
    const s = this.settings;
    const logFile = this.touched(s.touchLogreopen);
    if (logFile) this.reopenLog(`touch-logreopen ${logFile}`);
    if (this.state !== 'running') return;
    const reload = this.touched(s.touchReload);
    const chain = this.touched(s.touchChainReload);
    if (reload) {
      this.log.info(`touch-reload: ${reload} changed`);
      this.beginReload();
    } else if (chain) {
      this.log.info(`touch-chain-reload: ${chain} changed`);
      this.beginChainReload();
    }
    if (this.state !== 'running') this.rememberTouchTimes();
  }

  /** The workers as the stats see them; with cheaper, the ids that do not run are there too, as 'cheap'. */
  snapshotWorkers(): WorkerSnapshot[] {
    const live: WorkerSnapshot[] = [...this.workers]
      .sort((a, b) => a.id - b.id || a.generation - b.generation)
      .map((w) => ({
        id: w.id,
        pid: w.pid,
        state: w.cheaped ? 'cheap' : w.state,
        spawnedAtMs: w.spawnedAt,
        respawns: this.respawns.get(w.id) ?? 1,
        harakiriCount: this.harakiris.get(w.id) ?? 0,
        slot: this.scoreboard.read(w.slot),
        ...memoryOf(w.pid),
      }));
    if (!this.settings.cheaper) return live;
    const shown = new Set(live.map((w) => w.id));
    const cheap: WorkerSnapshot[] = [];
    for (let id = 1; id <= this.settings.processes; id++) {
      if (shown.has(id) || this.running.has(id)) continue;
      cheap.push({
        id,
        pid: 0,
        state: 'cheap',
        spawnedAtMs: 0,
        respawns: this.respawns.get(id) ?? 0,
        harakiriCount: this.harakiris.get(id) ?? 0,
        slot: this.scoreboard.empty(),
        rss: 0,
        vsz: 0,
      });
    }
    return [...live, ...cheap].sort((a, b) => a.id - b.id);
  }

  // ---- stopping --------------------------------------------------------------------------------------------

  private cancelTimers(): void {
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    if (this.ticker) clearInterval(this.ticker);
    this.ticker = undefined;
    this.hooks.milestone?.('stopping', 'stopping');
  }

  private stopGracefully(): void {
    this.state = 'stopping';
    this.cancelTimers();
    this.hooks.releaseListeners?.();
    if (this.router) {
      // The router first: it answers every request it has received (workers still serve them), then exits.
      this.stopPhase = 'router';
      this.log.info('graceful stop: the router finishes the requests it has received');
      this.retire(this.router, 'SIGTERM', this.settings.reloadMercy);
      return;
    }
    this.stopWorkers();
  }

  private stopWorkers(): void {
    this.stopPhase = 'workers';
    this.log.info(`graceful stop: waiting for ${this.workers.size} worker(s) to finish their requests`);
    if (this.workers.size === 0) return this.maybeFinish();
    for (const w of this.workers) this.retire(w, 'SIGTERM', this.settings.reloadMercy);
  }

  private stopNow(why: string): void {
    this.state = 'stopping';
    this.stopPhase = 'workers';
    this.cancelTimers();
    this.log.info(`stopping now (${why})`);
    if (this.router) this.retire(this.router, 'SIGINT', IMMEDIATE_STOP_MS / 1000);
    for (const w of this.workers) this.retire(w, 'SIGINT', IMMEDIATE_STOP_MS / 1000);
    for (const l of this.loaders.values()) {
      l.stopping = true;
      l.child.kill('SIGINT');
    }
    this.maybeFinish();
  }

  private fatal(status: number): void {
    this.exitStatus = status;
    this.stopNow(`exit status ${status}`);
  }

  private maybeFinish(): void {
    if (this.state !== 'stopping' || this.workers.size !== 0 || this.router) return;
    if (this.loaders.size) return this.releaseLoaders();
    this.hooks.finish(this.exitStatus);
  }
}
