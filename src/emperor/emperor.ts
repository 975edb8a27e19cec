/**
 * The vassal table and its supervision: one entry per vassal file, one tsgi master per entry, each in its own
 * process group, so that one vassal's failure (a bad file, a crash, a start that keeps failing) never touches
 * another.
 *
 *   new file           start it (at most a few at a time: a folder of 50 files must not start 50 at once)
 *   touched file       SIGHUP: the vassal re-reads its file and reloads gracefully (its sockets stay open)
 *   removed file       the vassal stops gracefully and removes its Unix sockets
 *   crashed vassal     started again once what it left behind has gone; with back-off while it keeps failing
 *   bad configuration  its one error line, logged once; started again when the file changes
 *   emperor-tyrant     the vassal runs as its file's owner; a changed owner restarts it as the new one
 *
 *   SIGTERM  every vassal stops gracefully (no request in flight is lost), then the emperor exits 0
 *   SIGINT, SIGQUIT   every vassal stops at once;  SIGHUP  every vassal reloads;  SIGUSR1  the table in the log
 *
 * Scans, child events and signals all arrive on Node's one thread, so each handler runs to its end before the
 * next starts: there is no lock and no queue to get wrong.
 */
import type { ChildProcess } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { ConfigError } from '../config/errors.js';
import type { EmperorSettings } from '../config/resolve.js';
import type { MonitorSpec } from './config.js';
import type { Milestone } from '../master/arbiter.js';
import type { VassalMessage } from './link.js';
import { spawnVassal, vassalCommand } from './spawn.js';
import { contentChanged, type FileStamp, type FoundFile, type ScanResult } from './watch.js';

export type VassalStatus = 'queued' | 'starting' | 'ready' | 'reloading' | 'stopping' | 'backoff' | 'invalid';

export interface Vassal {
  /** The file as the monitor names it (absolute): the vassal's identity. */
  path: string;
  /** Its file name, as logs and stats show it. */
  name: string;
  monitor: MonitorSpec;
  stamp: FileStamp;
  present: boolean;
  status: VassalStatus;
  child: ChildProcess | undefined;
  pid: number | undefined;
  uid: number;
  gid: number;
  /** The sockets its master bound, as it reported them when ready. */
  sockets: string[];
  /** Times its master was started again after it died. */
  restarts: number;
  /** Graceful reloads asked of it (file touched, emperor SIGHUP). */
  reloads: number;
  /** Consecutive failed starts (or deaths soon after one), for the back-off. */
  failures: number;
  firstStart: number | undefined;
  lastStart: number | undefined;
  readyAt: number | undefined;
  nextStart: number | undefined;
  lastExit: string | undefined;
  lastError: string | undefined;
  /** Set by the vassal when it could not start, until its process exits. */
  fatal: { kind: 'config' | 'startup'; error: string } | undefined;
  reloadPending: boolean;
  stopFor: 'removed' | 'restart' | 'emperor' | undefined;
  timer: NodeJS.Timeout | undefined;
  killTimer: NodeJS.Timeout | undefined;
}

export interface EmperorOptions {
  settings: EmperorSettings;
  env: NodeJS.ProcessEnv;
  cwd: string;
  /** stdout and stderr of every vassal (the emperor's log). */
  logFd: number;
  /** Seconds a stopping vassal is given before its process group is killed (reload-mercy; the vassal gets 10 s more to clean up). */
  mercy: number;
  log: (line: string) => void;
  /** Ends the emperor's process once every vassal is gone. */
  finish: (status: number) => void;
  /**
   * The emperor's own milestones, for whoever supervises it: systemd (READY=1 with STATUS=, RELOADING=1, STOPPING=1)
   * and a parent emperor.
   */
  milestone?: (what: Milestone, status: string) => void;
}

/** Back-off after failed starts: 1 s, 2 s, 4 s ... up to 30 s. */
const MAX_BACKOFF_MS = 30_000;
/** A vassal that dies sooner than this after it was ready counts as a failed start. */
const QUICK_DEATH_MS = 1000;
/** How long a crashed vassal's leftovers (workers finishing their request) are awaited before they are killed. */
const DRAIN_MS = 10_000;
const DRAIN_POLL_MS = 100;
/** Extra time a stopping vassal gets beyond its mercy, to stop its own workers and clean up. */
const STOP_GRACE_MS = 10_000;
/** How long an immediate stop waits before killing. */
const IMMEDIATE_STOP_MS = 5000;

function describeExit(code: number | null, signal: NodeJS.Signals | null): string {
  return signal ? `killed by ${signal}` : `exited with status ${code}`;
}

/** Sends a signal to a vassal's whole process group (its master, workers and router). */
function killGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    try {
      process.kill(pid, signal);
    } catch {
      /* gone */
    }
  }
}

function groupAlive(pid: number): boolean {
  try {
    process.kill(-pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export class Emperor {
  readonly vassals = new Map<string, Vassal>();
  private state: 'starting' | 'running' | 'stopping' = 'starting';
  private initial: Set<string> | undefined;
  private readonly maxStarting = Math.max(4, 2 * availableParallelism());
  private readonly queue: Vassal[] = [];
  private reloadWaiting: Set<Vassal> | undefined;
  readonly startedAt = Date.now();
  private readonly myUid = process.getuid?.() ?? 0;
  private readonly myGid = process.getgid?.() ?? 0;

  constructor(private readonly o: EmperorOptions) {}

  get stopping(): boolean {
    return this.state === 'stopping';
  }

  // ---- what the folders hold ---------------------------------------------------------------------------------

  /** Brings the table in line with a scan of the folders. */
  onScan(scan: ScanResult): void {
    if (this.state === 'stopping') return;
    const found = scan.found;
    for (const f of found.values()) {
      const v = this.vassals.get(f.path);
      if (!v) {
        this.add(f);
        continue;
      }
      const was = v.stamp;
      v.stamp = f.stamp;
      const returned = !v.present;
      v.present = true;
      if (this.o.settings.tyrant && (was.uid !== f.stamp.uid || was.gid !== f.stamp.gid)) {
        this.o.log(`vassal ${v.name}: its owner changed to uid ${f.stamp.uid}, gid ${f.stamp.gid}; restarting it as the new owner`);
        this.restart(v);
        continue;
      }
      if (contentChanged(was, f.stamp) || returned) this.onChanged(v);
    }
    for (const v of this.vassals.values()) {
      if (found.has(v.path) || !v.present || scan.uncertain.has(v.path) || scan.failed.has(v.monitor)) continue;
      this.onRemoved(v);
    }
    if (!this.initial) this.initial = new Set(found.keys());
    this.checkSettled();
  }

  private add(f: FoundFile): void {
    const v: Vassal = {
      path: f.path,
      name: f.name,
      monitor: f.monitor,
      stamp: f.stamp,
      present: true,
      status: 'queued',
      child: undefined,
      pid: undefined,
      uid: this.myUid,
      gid: this.myGid,
      sockets: [],
      restarts: 0,
      reloads: 0,
      failures: 0,
      firstStart: undefined,
      lastStart: undefined,
      readyAt: undefined,
      nextStart: undefined,
      lastExit: undefined,
      lastError: undefined,
      fatal: undefined,
      reloadPending: false,
      stopFor: undefined,
      timer: undefined,
      killTimer: undefined,
    };
    this.vassals.set(v.path, v);
    this.enqueue(v);
  }

  private onChanged(v: Vassal): void {
    switch (v.status) {
      case 'queued':
        return; // it will read the file as it is when it starts
      case 'invalid':
      case 'backoff':
        this.clearTimer(v);
        v.failures = 0;
        this.o.log(`vassal ${v.name}: file changed; starting it`);
        return this.enqueue(v);
      case 'starting':
      case 'reloading':
        v.reloadPending = true;
        return;
      case 'ready':
        return this.reload(v, 'file changed');
      case 'stopping':
        if (v.stopFor === 'removed') v.stopFor = 'restart';
        return;
    }
  }

  private onRemoved(v: Vassal): void {
    v.present = false;
    this.removeFromQueue(v);
    this.clearTimer(v);
    if (v.child) {
      // Also when it is stopping already (for a restart, or by itself): it must not come back, nor its sockets stay.
      this.o.log(`vassal ${v.name}: file removed; stopping it gracefully`);
      this.stop(v, 'removed', 'SIGTERM');
      return;
    }
    this.vassals.delete(v.path);
    this.o.log(`vassal ${v.name}: file removed`);
    this.pump();
  }

  // ---- starting ----------------------------------------------------------------------------------------------

  private enqueue(v: Vassal): void {
    if (this.state === 'stopping') return;
    v.status = 'queued';
    v.nextStart = undefined;
    if (!this.queue.includes(v)) this.queue.push(v);
    this.pump();
  }

  private removeFromQueue(v: Vassal): void {
    const i = this.queue.indexOf(v);
    if (i !== -1) this.queue.splice(i, 1);
  }

  /** Starts queued vassals while fewer than maxStarting are starting (a folder of many files starts in waves). */
  private pump(): void {
    if (this.state === 'stopping') return;
    let starting = 0;
    for (const v of this.vassals.values()) if (v.status === 'starting') starting++;
    while (starting < this.maxStarting && this.queue.length) {
      const v = this.queue.shift()!;
      if (v.status !== 'queued') continue;
      if (this.start(v)) starting++;
    }
  }

  private invalid(v: Vassal, error: string): void {
    v.status = 'invalid';
    v.lastError = error;
    this.o.log(`vassal ${v.name}: configuration error: ${error} (it starts when the file changes)`);
  }

  /** Starts the vassal's master; false when it could not even be spawned. */
  private start(v: Vassal): boolean {
    if (!v.present) {
      this.vassals.delete(v.path);
      return false;
    }
    const s = this.o.settings;
    if (s.tyrant) {
      const { uid, gid } = v.stamp;
      if (uid === 0 || gid === 0) {
        this.invalid(v, `emperor-tyrant: ${v.path} belongs to root (uid ${uid}, gid ${gid}); a tyrant runs each vassal as its file's owner, never as root: chown the file to the app's user and group`);
        return false;
      }
      if (this.myUid !== 0 && (uid !== this.myUid || gid !== this.myGid)) {
        this.invalid(v, `emperor-tyrant: cannot run it as uid ${uid}, gid ${gid} (the owner of ${v.path}): the emperor is not root`);
        return false;
      }
    }
    let child: ChildProcess;
    try {
      const cmd = vassalCommand({ path: v.path, name: v.name, monitor: v.monitor, stamp: v.stamp }, s, this.o.env, this.o.cwd);
      child = spawnVassal(cmd, this.o.logFd);
      v.uid = cmd.uid ?? this.myUid;
      v.gid = cmd.gid ?? this.myGid;
    } catch (err) {
      if (err instanceof ConfigError) {
        this.invalid(v, err.message);
        return false;
      }
      v.fatal = { kind: 'startup', error: `cannot start its master: ${(err as Error).message}` };
      this.afterDeath(v, undefined, 'not started');
      return false;
    }
    v.child = child;
    v.pid = child.pid;
    v.status = 'starting';
    v.fatal = undefined;
    v.readyAt = undefined;
    v.nextStart = undefined;
    v.lastStart = Date.now();
    v.firstStart ??= v.lastStart;
    child.on('message', (m: VassalMessage) => this.onMessage(v, child, m));
    // 'close', not 'exit': it comes once the link is closed too, so every message the vassal sent (its fatal error
    // line above all) has been read before its end is handled.
    child.on('close', (code, signal) => this.onExit(v, child, code, signal));
    child.on('error', (err) => {
      // A spawn that failed (no 'close' need follow one without a pid); other errors are the link's, told by the close.
      if (child.pid === undefined && v.child === child) {
        v.fatal = { kind: 'startup', error: `cannot start its master: ${err.message}` };
        this.onExit(v, child, 1, null);
      }
    });
    child.channel?.on?.('error', () => {
      /* a channel broken by the vassal's death: its exit tells */
    });
    if (child.pid !== undefined) {
      const as = s.tyrant ? ` as uid ${v.uid}, gid ${v.gid}` : '';
      this.o.log(`vassal ${v.name}: spawned its master (pid ${child.pid}${as})`);
    }
    return true;
  }

  // ---- what vassals say --------------------------------------------------------------------------------------

  private onMessage(v: Vassal, child: ChildProcess, m: VassalMessage): void {
    if (v.child !== child || !m || typeof m !== 'object') return;
    this.onVassalMessage(v, m);
    this.checkReloaded();
  }

  private onVassalMessage(v: Vassal, m: VassalMessage): void {
    if (m.type === 'fatal') {
      v.fatal = { kind: m.kind === 'config' ? 'config' : 'startup', error: String(m.error) };
      return;
    }
    if (m.type !== 'milestone') return;
    switch (m.what) {
      case 'ready': {
        if (v.status !== 'starting') return;
        v.status = 'ready';
        v.readyAt = Date.now();
        v.sockets = Array.isArray(m.sockets) ? m.sockets.map(String) : [];
        const took = ((v.readyAt - (v.lastStart ?? v.readyAt)) / 1000).toFixed(2);
        this.o.log(`vassal ${v.name}: serving (pid ${v.pid}, ready in ${took} s${v.sockets.length ? ` on ${v.sockets.join(', ')}` : ''})`);
        this.pump();
        if (v.reloadPending) this.reload(v, 'file changed while it started');
        this.checkSettled();
        return;
      }
      case 'reloading':
        if (v.status === 'ready') v.status = 'reloading';
        return;
      case 'reloaded':
      case 'reload-failed':
        if (m.what === 'reload-failed') v.lastError = String(m.status);
        if (v.status !== 'reloading') return;
        v.status = 'ready';
        if (v.reloadPending) this.reload(v, 'file changed while it reloaded');
        return;
      case 'stopping':
        // Stopped by someone else (a signal sent to it directly): it is started again when it has gone.
        if (v.status !== 'stopping' && v.status !== 'starting') v.status = 'stopping';
        return;
    }
  }

  private onExit(v: Vassal, child: ChildProcess, code: number | null, signal: NodeJS.Signals | null): void {
    if (v.child !== child) return;
    this.onVassalExit(v, code, signal);
    this.checkReloaded();
  }

  private onVassalExit(v: Vassal, code: number | null, signal: NodeJS.Signals | null): void {
    const pid = v.pid;
    v.child = undefined;
    v.pid = undefined;
    if (v.killTimer) clearTimeout(v.killTimer);
    v.killTimer = undefined;
    const how = describeExit(code, signal);
    v.lastExit = how;
    const stopFor = v.stopFor;
    v.stopFor = undefined;
    if (this.state === 'stopping') {
      this.o.log(`vassal ${v.name}: stopped (${how})`);
      this.vassals.delete(v.path);
      return this.maybeFinish();
    }
    if (stopFor === 'removed' && !v.present) {
      this.o.log(`vassal ${v.name}: stopped (${how}); its file is gone, so is it`);
      this.vassals.delete(v.path);
      return this.pump();
    }
    if (stopFor === 'removed' || stopFor === 'restart') {
      this.o.log(`vassal ${v.name}: stopped (${how}); starting it again`);
      this.enqueue(v);
      return;
    }
    this.afterDeath(v, pid, how);
  }

  /** A vassal that was not asked to stop has gone: its error is recorded, and it is started again in time. */
  private afterDeath(v: Vassal, pid: number | undefined, how: string): void {
    const fatal = v.fatal;
    v.fatal = undefined;
    if (fatal?.kind === 'config') {
      this.invalid(v, fatal.error);
      this.pump();
      return this.checkSettled();
    }
    const now = Date.now();
    const wasReady = v.readyAt !== undefined;
    const quick = !wasReady || now - v.readyAt! < QUICK_DEATH_MS;
    v.failures = quick ? v.failures + 1 : 0;
    const delay = v.failures === 0 ? 0 : Math.min(1000 * 2 ** (v.failures - 1), MAX_BACKOFF_MS);
    v.lastError = fatal?.error ?? (wasReady ? `its master ${how}` : `its master ${how} before it was ready (its log says why)`);
    const what = fatal ? `could not start: ${fatal.error}` : `master${pid ? ` (pid ${pid})` : ''} ${how}${wasReady ? '' : ' before it was ready'}`;
    this.o.log(`vassal ${v.name}: ${what}; starting it again${delay ? ` in ${delay / 1000} s` : ''}`);
    v.status = 'backoff';
    v.nextStart = now + delay;
    v.timer = setTimeout(() => {
      v.timer = undefined;
      this.afterLeftovers(v, pid, Date.now() + DRAIN_MS);
    }, delay);
    this.pump();
    this.checkSettled();
  }

  /**
   * Starts a dead vassal again once its process group is empty: workers of a killed master finish their request
   * and exit (they are told when their master dies), and a new master must not find them on its sockets.
   */
  private afterLeftovers(v: Vassal, pgid: number | undefined, deadline: number): void {
    if (this.state === 'stopping' || v.status !== 'backoff' || this.vassals.get(v.path) !== v) return;
    if (pgid !== undefined && groupAlive(pgid)) {
      if (Date.now() < deadline) {
        v.timer = setTimeout(() => {
          v.timer = undefined;
          this.afterLeftovers(v, pgid, deadline);
        }, DRAIN_POLL_MS);
        return;
      }
      this.o.log(`vassal ${v.name}: what its dead master left running did not end within ${DRAIN_MS / 1000} s; killing it`);
      killGroup(pgid, 'SIGKILL');
    }
    v.restarts++;
    this.enqueue(v);
  }

  // ---- reloading and stopping one vassal ---------------------------------------------------------------------

  private reload(v: Vassal, why: string): void {
    if (!v.child) return;
    v.reloadPending = false;
    v.reloads++;
    v.status = 'reloading';
    this.o.log(`vassal ${v.name}: ${why}; reloading it gracefully`);
    v.child.kill('SIGHUP');
  }

  /** Stops a running vassal and starts it again (its owner changed). */
  private restart(v: Vassal): void {
    if (v.child) return this.stop(v, 'restart', 'SIGTERM');
    this.clearTimer(v);
    this.enqueue(v);
  }

  private stop(v: Vassal, why: 'removed' | 'restart' | 'emperor', signal: 'SIGTERM' | 'SIGINT'): void {
    const child = v.child;
    if (!child || v.pid === undefined) return;
    if (v.stopFor !== 'emperor') v.stopFor = why;
    v.status = 'stopping';
    v.reloadPending = false;
    this.removeFromQueue(v);
    if (why === 'removed' && signal === 'SIGTERM' && child.connected) {
      // Through the link, so the vassal also removes its sockets (nothing will serve on them again); a signal if
      // the link fails.
      child.send({ type: 'stop', vacuum: true }, undefined, undefined, (err) => {
        if (err && v.child === child) child.kill(signal);
      });
    } else child.kill(signal);
    if (v.killTimer) clearTimeout(v.killTimer);
    const pid = v.pid;
    const wait = signal === 'SIGINT' ? IMMEDIATE_STOP_MS : this.o.mercy * 1000 + STOP_GRACE_MS;
    v.killTimer = setTimeout(() => {
      this.o.log(`vassal ${v.name}: did not stop within ${wait / 1000} s; killing it (pid ${pid}) and all it started`);
      killGroup(pid, 'SIGKILL');
    }, wait);
    v.killTimer.unref?.();
  }

  private clearTimer(v: Vassal): void {
    if (v.timer) clearTimeout(v.timer);
    v.timer = undefined;
  }

  // ---- the emperor's own life --------------------------------------------------------------------------------

  /** Once every vassal found at start has started or failed: the emperor is ready (logged once, and notified). */
  private checkSettled(): void {
    if (this.state !== 'starting' || !this.initial) return;
    const found = [...this.initial].map((p) => this.vassals.get(p)).filter((v): v is Vassal => v !== undefined);
    if (found.some((v) => v.status === 'queued' || v.status === 'starting')) return;
    this.state = 'running';
    const serving = found.filter((v) => v.status === 'ready' || v.status === 'reloading');
    const failed = found.filter((v) => !serving.includes(v));
    const status = `${serving.length} vassal(s) serving${failed.length ? `, ${failed.length} not: ${failed.map((v) => v.name).join(', ')}` : ''}`;
    this.o.log(`ready: ${status} (emperor pid: ${process.pid})`);
    this.o.milestone?.('ready', status);
  }

  signal(signal: NodeJS.Signals): void {
    switch (signal) {
      case 'SIGTERM':
        if (this.state === 'stopping') return this.stopAll('SIGINT', 'a second SIGTERM: stopping every vassal at once');
        return this.stopAll('SIGTERM', 'graceful stop: every vassal finishes its requests');
      case 'SIGINT':
      case 'SIGQUIT':
        return this.stopAll('SIGINT', `stopping every vassal at once (${signal})`);
      case 'SIGHUP':
        return this.reloadAll();
      case 'SIGUSR1':
        for (const line of this.describe()) this.o.log(line);
        return;
      default:
        return;
    }
  }

  private reloadAll(): void {
    if (this.state === 'stopping') return;
    this.o.log('SIGHUP: reloading every vassal');
    this.o.milestone?.('reloading', 'reloading every vassal');
    const waiting = new Set<Vassal>();
    for (const v of this.vassals.values()) {
      if (v.status === 'ready') this.reload(v, 'emperor reload');
      else if (v.status === 'starting' || v.status === 'reloading') v.reloadPending = true;
      else if (v.status === 'invalid' || v.status === 'backoff') {
        this.clearTimer(v);
        this.enqueue(v);
        continue;
      } else continue;
      waiting.add(v);
    }
    this.reloadWaiting = waiting;
    this.checkReloaded();
  }

  /** After an emperor reload: once no vassal it asked is still reloading, the emperor is ready again. */
  private checkReloaded(): void {
    const waiting = this.reloadWaiting;
    if (!waiting) return;
    for (const v of waiting) {
      const busy = this.vassals.get(v.path) === v && (v.status === 'reloading' || v.status === 'starting' || v.reloadPending);
      if (!busy) waiting.delete(v);
    }
    if (waiting.size) return;
    this.reloadWaiting = undefined;
    if (this.state === 'stopping') return;
    let serving = 0;
    for (const v of this.vassals.values()) if (v.status === 'ready') serving++;
    this.o.log(`reload done: ${serving} vassal(s) serving`);
    this.o.milestone?.('reloaded', `${serving} vassal(s) serving`);
  }

  private stopAll(signal: 'SIGTERM' | 'SIGINT', why: string): void {
    const first = this.state !== 'stopping';
    this.state = 'stopping';
    if (first) this.o.milestone?.('stopping', why);
    this.o.log(why);
    this.queue.length = 0;
    for (const v of [...this.vassals.values()]) {
      this.clearTimer(v);
      if (v.child) this.stop(v, 'emperor', signal);
      else this.vassals.delete(v.path);
    }
    this.maybeFinish();
  }

  private maybeFinish(): void {
    if (this.state !== 'stopping') return;
    for (const v of this.vassals.values()) if (v.child) return;
    this.o.finish(0);
  }

  /** The table, one line per vassal (SIGUSR1). */
  describe(): string[] {
    const lines = [`${this.vassals.size} vassal(s):`];
    for (const v of this.vassals.values()) {
      lines.push(`  ${v.name}: ${v.status}${v.pid ? `, pid ${v.pid}` : ''}, restarts ${v.restarts}, reloads ${v.reloads}${v.lastError ? `, last error: ${v.lastError}` : ''}`);
    }
    return lines;
  }
}
