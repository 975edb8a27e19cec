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
 */
import type { ChildProcess } from 'node:child_process';
import type { Settings } from '../config/resolve.js';
import type { ProcessLog } from './log.js';
import type { Scoreboard } from './scoreboard.js';

export interface WorkerHandle {
  id: number;
  slot: number;
  generation: number;
  child: ChildProcess;
  pid: number;
  state: 'starting' | 'ready' | 'stopping';
  spawnedAt: number;
  killTimer: NodeJS.Timeout | undefined;
}

/** What the master needs from the outside world; kept narrow so the loop reads as policy only. */
export interface MasterHooks {
  /** Starts one worker process with the given settings. */
  spawn(settings: Settings, id: number, slot: number): ChildProcess;
  /** Starts the HTTP router, when the configuration has HTTP sockets. */
  spawnRouter?(settings: Settings): ChildProcess;
  /** Reads the configuration again for a reload; returns an error line when it is not usable. */
  reloadSettings(): Settings | string;
  /** Releases sockets, pidfiles and the scoreboard, then ends the process with `status`. */
  finish(status: number): void;
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
  | { type: 'exit'; worker: WorkerHandle; code: number | null; signal: NodeJS.Signals | null }
  | { type: 'respawn'; id: number; generation: number }
  | { type: 'router-ready'; router: RouterHandle }
  | { type: 'router-exit'; router: RouterHandle; code: number | null; signal: NodeJS.Signals | null }
  | { type: 'router-respawn' };

const EXIT_APP_FAILED = 22;
const EXIT_SOCKET_FAILED = 23;
/** A worker that dies sooner than this after its start counts as a failed start (for back-off). */
const FAST_DEATH_MS = 1000;
const MAX_BACKOFF_MS = 30_000;
/** How long an immediate stop waits for processes to exit before killing them. */
const IMMEDIATE_STOP_MS = 3000;

export class Master {
  private settings: Settings;
  private readonly workers = new Map<number, WorkerHandle>();
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

  constructor(
    settings: Settings,
    private readonly hooks: MasterHooks,
    private readonly log: ProcessLog,
    private readonly scoreboard: Scoreboard,
  ) {
    this.settings = settings;
  }

  start(): void {
    for (let id = 1; id <= this.settings.processes; id++) this.spawn(id, this.generation);
    if (this.hooks.spawnRouter) this.spawnRouter();
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
    return [...this.workers.values()];
  }

  private run(): void {
    this.scheduled = false;
    while (this.queue.length) {
      const event = this.queue.shift()!;
      try {
        this.handle(event);
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
      case 'exit':
        return this.onExit(e.worker, e.code, e.signal);
      case 'respawn':
        if (this.state !== 'stopping' && e.generation === this.generation) this.spawn(e.id, e.generation);
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
      default:
        return;
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

  private spawn(id: number, generation: number): void {
    const slot = this.scoreboard.acquire();
    if (slot === undefined) {
      this.log.info(`no free scoreboard slot for worker ${id}; retrying in 1 second`);
      this.later(1000, { type: 'respawn', id, generation });
      return;
    }
    let child: ChildProcess;
    try {
      child = this.hooks.spawn(this.settings, id, slot);
    } catch (err) {
      this.scoreboard.release(slot);
      this.log.info(`cannot start worker ${id}: ${(err as Error).message}`);
      if (this.state === 'starting') return this.fatal(1);
      this.later(this.backoff(id), { type: 'respawn', id, generation });
      return;
    }
    const w: WorkerHandle = {
      id,
      slot,
      generation,
      child,
      pid: child.pid ?? -1,
      state: 'starting',
      spawnedAt: Date.now(),
      killTimer: undefined,
    };
    this.workers.set(w.pid, w);
    const control = child.stdio[3];
    control?.on('data', (chunk: Buffer) => {
      if (chunk.includes(0x52 /* R */)) this.enqueue({ type: 'ready', worker: w });
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

  private backoff(id: number): number {
    const k = this.fastDeaths.get(id) ?? 0;
    return k === 0 ? 0 : Math.min(1000 * 2 ** (k - 1), MAX_BACKOFF_MS);
  }

  private onReady(w: WorkerHandle): void {
    if (w.state !== 'starting' || !this.workers.has(w.pid)) return;
    w.state = 'ready';
    if (this.state === 'starting') this.checkStarted();
    else if (this.state === 'reloading' && w.generation === this.generation && this.allReady(this.generation)) this.finishReload();
  }

  /** Start-up is over once every worker is ready and the router (if any) listens. */
  private checkStarted(): void {
    if (this.state !== 'starting' || !this.allReady(this.generation)) return;
    if (this.hooks.spawnRouter && !this.router?.ready) return;
    this.state = 'running';
    this.log.info(`ready: ${this.settings.processes} worker(s) serving${this.router ? ', router listening' : ''} (master pid: ${process.pid})`);
    if (this.reloadPending) {
      this.reloadPending = false;
      this.beginReload();
    }
  }

  private allReady(generation: number): boolean {
    let n = 0;
    for (const w of this.workers.values()) {
      if (w.generation !== generation) continue;
      if (w.state !== 'ready') return false;
      n++;
    }
    return n >= this.settings.processes;
  }

  private onExit(w: WorkerHandle, code: number | null, signal: NodeJS.Signals | null): void {
    if (!this.workers.delete(w.pid)) return;
    if (w.killTimer) clearTimeout(w.killTimer);
    this.scoreboard.release(w.slot);
    const how = signal ? `killed by ${signal}` : `exited with status ${code}`;

    if (this.state === 'stopping') {
      this.log.info(`worker ${w.id} (pid: ${w.pid}) stopped (${how})`);
      return this.maybeFinish();
    }
    if (w.state === 'stopping') {
      this.log.info(`worker ${w.id} (pid: ${w.pid}, generation ${w.generation}) retired (${how})`);
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
    const lived = Date.now() - w.spawnedAt;
    const fast = lived < FAST_DEATH_MS || w.state === 'starting';
    this.fastDeaths.set(w.id, fast ? (this.fastDeaths.get(w.id) ?? 0) + 1 : 0);
    const delay = this.backoff(w.id);
    this.log.info(
      `worker ${w.id} (pid: ${w.pid}) ${how}${appFailed ? ' (app failed to load)' : ''}; ` +
        (delay ? `respawning in ${delay / 1000} s (it keeps dying at start)` : 'respawning'),
    );
    if (delay) this.later(delay, { type: 'respawn', id: w.id, generation: w.generation });
    else this.spawn(w.id, w.generation);
  }

  // ---- the HTTP router -------------------------------------------------------------------------------------

  private spawnRouter(): void {
    let child: ChildProcess;
    try {
      child = this.hooks.spawnRouter!(this.settings);
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

  private beginReload(): void {
    const next = this.hooks.reloadSettings();
    if (typeof next === 'string') {
      this.log.info(`reload refused, still serving with the previous configuration: ${next}`);
      return;
    }
    this.settings = next;
    this.state = 'reloading';
    this.generation++;
    this.fastDeaths.clear();
    this.log.info(`graceful reload: starting ${next.processes} new worker(s) (generation ${this.generation})`);
    for (let id = 1; id <= next.processes; id++) this.spawn(id, this.generation);
  }

  private finishReload(): void {
    this.state = 'running';
    for (const w of this.workers.values()) {
      if (w.generation < this.generation) this.retire(w, 'SIGHUP', this.settings.workerReloadMercy);
    }
    // The router keeps one link per worker.
    this.router?.child.send?.({ type: 'links', links: this.settings.processes });
    this.log.info(`graceful reload done: generation ${this.generation} serving`);
    if (this.reloadPending) {
      this.reloadPending = false;
      this.beginReload();
    }
  }

  private abortReload(why: string): void {
    this.log.info(`reload failed: ${why}; the previous workers keep serving`);
    for (const w of this.workers.values()) {
      if (w.generation === this.generation) this.retire(w, 'SIGKILL', 0);
    }
    this.generation--;
    this.state = 'running';
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

  // ---- stopping --------------------------------------------------------------------------------------------

  private cancelTimers(): void {
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
  }

  private stopGracefully(): void {
    this.state = 'stopping';
    this.cancelTimers();
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
    for (const w of this.workers.values()) this.retire(w, 'SIGTERM', this.settings.reloadMercy);
  }

  private stopNow(why: string): void {
    this.state = 'stopping';
    this.stopPhase = 'workers';
    this.cancelTimers();
    this.log.info(`stopping now (${why})`);
    if (this.router) this.retire(this.router, 'SIGINT', IMMEDIATE_STOP_MS / 1000);
    for (const w of this.workers.values()) this.retire(w, 'SIGINT', IMMEDIATE_STOP_MS / 1000);
    this.maybeFinish();
  }

  private fatal(status: number): void {
    this.exitStatus = status;
    this.stopNow(`exit status ${status}`);
  }

  private maybeFinish(): void {
    if (this.state === 'stopping' && this.workers.size === 0 && !this.router) this.hooks.finish(this.exitStatus);
  }
}
