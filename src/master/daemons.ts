/**
 * attach-daemon, smart-attach-daemon, smart-attach-daemon2: processes the master keeps alive beside the
 * workers (a queue consumer, memcached, a scheduler...). Each runs through /bin/sh -c in its own process group,
 * its output going to tsgi's log.
 *
 *   attach-daemon CMD                 a child of the master; respawned when it dies; stopped and started
 *                                     again on every reload (the reloaded configuration may change it).
 *   smart-attach-daemon PIDFILE CMD   CMD daemonizes itself and writes PIDFILE; the master watches that pid,
 *                                     starts CMD again when it is gone, and leaves it running across reloads.
 *   smart-attach-daemon2 PIDFILE CMD  CMD stays in the foreground: the master writes its pid to PIDFILE and
 *                                     watches it as above.
 *
 * attach-daemon2 (KEY=VAL,...) is one of these three with extras (DaemonExtra: stop and reload signals, touch
 * files, control, uid/gid, chdir...); attach-control-daemon is an attach-daemon whose end stops the instance.
 *
 * A daemon that dies within 10 s of its start is respawned after a delay that grows by a second each time
 * (at most 30 s, or its max_throttle). At stop, every daemon gets SIGTERM (its whole process group for the master's own children),
 * (or its stopsignal), then SIGKILL if it is still there after 3 s. Only created when a daemon is configured.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, statSync, writeFileSync } from 'node:fs';

export interface DaemonSpec {
  kind: 'attach-daemon' | 'smart-attach-daemon' | 'smart-attach-daemon2';
  command: string;
  pidfile: string | undefined;
  /** What attach-daemon2's keys (and attach-control-daemon) add; absent for the other options. */
  extra?: DaemonExtra;
}

/** attach-daemon2's keys, and attach-control-daemon's control. */
export interface DaemonExtra {
  /** When the daemon ends, the instance stops gracefully (dumb daemons only, as in uWSGI). */
  control: boolean;
  stopSignal: NodeJS.Signals | number;
  /** Sent instead of stopSignal when a reload stops it; for notifypid smart daemons, sent at a reload. */
  reloadSignal: NodeJS.Signals | number | undefined;
  /** Files whose modification restarts the daemon (it gets stopSignal, then is started again). */
  touch: string[];
  /** The daemon reads the master's stdin instead of /dev/null. */
  stdin: boolean;
  uid: number | undefined;
  gid: number | undefined;
  chdir: string | undefined;
  /** Cap on the respawn delay of a daemon that keeps dying fast (seconds). */
  maxThrottle: number | undefined;
  /** A smart daemon is told about reloads (reloadSignal, else SIGHUP) and left running. */
  notifyPid: boolean;
  /** As written, so that a reload recognises the same daemon. */
  text: string;
}

const FAST_DEATH_MS = 10_000;
const MAX_THROTTLE_S = 30;
const STOP_MERCY_MS = 3000;
const WATCH_MS = 1000;

/** Whether pid names a live process (a zombie counts as dead: tsgi may be PID 1 in a container, and reap nothing). */
export function pidAlive(pid: number): boolean {
  if (!(pid > 0)) return false;
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

function readPid(path: string): number {
  try {
    const n = Number.parseInt(readFileSync(path, 'latin1').trim(), 10);
    return Number.isFinite(n) ? n : 0;
  } catch {
    return 0;
  }
}

class Daemon {
  /** The master's own child (the shell running CMD), while it runs. */
  child: ChildProcess | undefined;
  /** smart: the pid read from the pidfile and watched. */
  watched = 0;
  spawnedAt = 0;
  fastDeaths = 0;
  respawnTimer: NodeJS.Timeout | undefined;
  stopping = false;

  constructor(readonly spec: DaemonSpec, private readonly owner: Daemons) {}

  get smart(): boolean {
    return this.spec.kind !== 'attach-daemon';
  }

  get label(): string {
    return `"${this.spec.command}"`;
  }

  start(respawn = false): void {
    this.respawnTimer = undefined;
    if (this.stopping) return;
    const fd = this.owner.logFd();
    const x = this.spec.extra;
    let child: ChildProcess;
    try {
      child = spawn('/bin/sh', ['-c', this.spec.command], {
        stdio: [x?.stdin ? 'inherit' : 'ignore', fd, fd], detached: true,
        ...(x?.uid !== undefined ? { uid: x.uid } : {}), ...(x?.gid !== undefined ? { gid: x.gid } : {}), ...(x?.chdir ? { cwd: x.chdir } : {}),
      });
    } catch (err) {
      this.owner.log(`daemon ${this.label}: cannot start: ${(err as Error).message}`);
      return this.died();
    }
    this.child = child;
    this.spawnedAt = Date.now();
    child.on('error', (err) => this.owner.log(`daemon ${this.label}: ${err.message}`));
    child.on('exit', (code, sig) => this.onChildExit(child, code, sig));
    if (this.spec.kind === 'smart-attach-daemon2' && child.pid) {
      try {
        writeFileSync(this.spec.pidfile!, `${child.pid}\n`);
      } catch (err) {
        this.owner.log(`daemon ${this.label}: cannot write the pidfile ${this.spec.pidfile} (${(err as NodeJS.ErrnoException).code})`);
      }
      this.watched = child.pid;
    }
    this.owner.log(`daemon ${this.label} ${respawn ? 'respawned' : 'started'} (pid: ${child.pid})`);
  }

  private onChildExit(child: ChildProcess, code: number | null, sig: NodeJS.Signals | null): void {
    if (this.child !== child) return;
    this.child = undefined;
    const how = sig ? `killed by ${sig}` : `exited with status ${code}`;
    if (this.stopping) {
      this.owner.log(`daemon ${this.label} (pid: ${child.pid}) stopped (${how})`);
      return;
    }
    if (this.spec.kind === 'smart-attach-daemon') {
      // The launcher is done: the daemon it started should now be in the pidfile.
      const pid = readPid(this.spec.pidfile!);
      if (pidAlive(pid)) {
        this.watched = pid;
        this.owner.log(`daemon ${this.label} is running as pid ${pid} (from ${this.spec.pidfile})`);
        return;
      }
      this.owner.log(`daemon ${this.label} (pid: ${child.pid}) ${how} and ${this.spec.pidfile} names no live process`);
      return this.died();
    }
    this.watched = 0;
    this.owner.log(`daemon ${this.label} (pid: ${child.pid}) ${how}`);
    if (this.spec.extra?.control && this.spec.kind === 'attach-daemon') {
      this.owner.log(`daemon ${this.label} is a control daemon: stopping the instance`);
      this.owner.onControlDeath();
      return;
    }
    this.died();
  }

  /** smart daemons: the watched pid is gone (or changed in the pidfile). */
  watch(): void {
    if (!this.smart || this.stopping || this.child && this.spec.kind === 'smart-attach-daemon2' || this.respawnTimer) return;
    if (this.child) return; // the launcher is still running
    if (this.watched && pidAlive(this.watched)) return;
    const pid = readPid(this.spec.pidfile!);
    if (pid !== this.watched && pidAlive(pid)) {
      this.owner.log(`daemon ${this.label}: ${this.spec.pidfile} now names pid ${pid}${this.watched ? ` (was ${this.watched})` : ''}`);
      this.watched = pid;
      return;
    }
    if (this.watched) this.owner.log(`daemon ${this.label} (pid: ${this.watched}) is gone`);
    this.watched = 0;
    this.died();
  }

  private died(): void {
    const fast = Date.now() - this.spawnedAt < FAST_DEATH_MS;
    this.fastDeaths = fast ? this.fastDeaths + 1 : 0;
    const delay = Math.min(this.fastDeaths, this.spec.extra?.maxThrottle ?? MAX_THROTTLE_S);
    if (delay) this.owner.log(`daemon ${this.label}: respawning in ${delay} s (it died ${this.fastDeaths} time(s) in a row within ${FAST_DEATH_MS / 1000} s of its start)`);
    this.respawnTimer = setTimeout(() => this.start(true), delay * 1000);
  }

  /** At start: a smart daemon whose pidfile names a live process is adopted rather than started again. */
  adoptOrStart(): void {
    if (this.smart) {
      const pid = readPid(this.spec.pidfile!);
      if (pidAlive(pid)) {
        this.watched = pid;
        this.owner.log(`daemon ${this.label} already running (pid: ${pid}, from ${this.spec.pidfile})`);
        return;
      }
    }
    this.start();
  }

  /** Asks it to stop (`reloading`: for a reload, which sends reloadsignal when there is one); true when there is something to wait for. */
  stop(reloading = false): boolean {
    this.stopping = true;
    if (this.respawnTimer) clearTimeout(this.respawnTimer);
    this.respawnTimer = undefined;
    const pid = this.child?.pid ?? this.watched;
    if (!pid) return false;
    this.owner.log(`stopping daemon ${this.label} (pid: ${pid})`);
    const x = this.spec.extra;
    this.signal((reloading ? x?.reloadSignal : undefined) ?? x?.stopSignal ?? 'SIGTERM');
    return this.running();
  }

  /** touch=: the modification times seen last, by file (undefined: absent). */
  private touched: Map<string, number | undefined> | undefined;

  /** touch=: a touched file restarts the daemon. Called every second by the watcher. */
  checkTouch(): void {
    const files = this.spec.extra?.touch;
    if (!files?.length || this.stopping) return;
    const first = this.touched === undefined;
    this.touched ??= new Map();
    let changed: string | undefined;
    for (const f of files) {
      let m: number | undefined;
      try {
        m = statSync(f).mtimeMs;
      } catch {
        m = undefined;
      }
      if (!first && m !== undefined && m !== this.touched.get(f)) changed ??= f;
      this.touched.set(f, m);
    }
    if (changed === undefined) return;
    const pid = this.child?.pid ?? this.watched;
    this.owner.log(`daemon ${this.label}: ${changed} was touched; restarting it${pid ? ` (pid: ${pid})` : ''}`);
    // A stopped daemon is respawned as after any death: by its exit (dumb) or by the pidfile watch (smart).
    if (pid) this.signal(this.spec.extra!.stopSignal);
  }

  /** notifypid: a reload is announced to a smart daemon, which keeps running. */
  notifyReload(): void {
    const x = this.spec.extra;
    if (!x?.notifyPid || !this.smart) return;
    const pid = this.child?.pid ?? this.watched;
    if (!pid) return;
    this.owner.log(`daemon ${this.label}: telling pid ${pid} about the reload`);
    this.signal(x.reloadSignal ?? 'SIGHUP');
  }

  signal(sig: NodeJS.Signals | number): void {
    const targets = this.child?.pid ? [-this.child.pid, this.watched] : [this.watched];
    for (const t of targets) {
      if (!t) continue;
      try {
        process.kill(t, sig);
      } catch {
        /* already gone */
      }
    }
  }

  running(): boolean {
    return this.child !== undefined || (this.watched !== 0 && pidAlive(this.watched));
  }
}

export class Daemons {
  private daemons: Daemon[] = [];
  private watcher: NodeJS.Timeout | undefined;

  constructor(specs: readonly DaemonSpec[], readonly log: (line: string) => void, readonly logFd: () => number,
    /** A control daemon ended: the master stops the instance. */
    readonly onControlDeath: () => void = () => undefined) {
    this.daemons = specs.map((s) => new Daemon(s, this));
  }

  start(): void {
    for (const d of this.daemons) d.adoptOrStart();
    for (const d of this.daemons) d.checkTouch();
    this.watcher = setInterval(() => {
      for (const d of this.daemons) {
        d.checkTouch();
        d.watch();
      }
    }, WATCH_MS);
    this.watcher.unref();
    // Never leave a daemon behind, whatever way the master ends.
    process.on('exit', () => {
      for (const d of this.daemons) if (d.running()) d.signal('SIGKILL');
    });
  }

  /**
   * A reload: attach-daemons are stopped and started again (from the new configuration); smart daemons that are
   * still configured keep running, new ones start, those no longer configured are stopped.
   */
  reload(specs: readonly DaemonSpec[]): void {
    const key = (s: DaemonSpec): string => `${s.kind}\0${s.pidfile ?? ''}\0${s.command}\0${s.extra?.text ?? ''}`;
    const kept = new Map(this.daemons.filter((d) => d.smart).map((d) => [key(d.spec), d]));
    const leaving = this.daemons.filter((d) => !d.smart || !specs.some((s) => key(s) === key(d.spec)));
    const next: Daemon[] = [];
    for (const s of specs) next.push(s.kind !== 'attach-daemon' && kept.has(key(s)) ? kept.get(key(s))! : new Daemon(s, this));
    this.daemons = next;
    for (const d of next) if (kept.has(key(d.spec))) d.notifyReload();
    const fresh = next.filter((d) => !kept.has(key(d.spec)) || d.spec.kind === 'attach-daemon');
    const starting = (): void => {
      for (const d of fresh) d.adoptOrStart();
    };
    this.stopSome(leaving, true).then(starting, starting);
  }

  private stopSome(list: readonly Daemon[], reloading = false): Promise<void> {
    const waiting = list.filter((d) => d.stop(reloading));
    if (waiting.length === 0) return Promise.resolve();
    return new Promise((done) => {
      const check = setInterval(() => {
        if (waiting.every((d) => !d.running())) finish();
      }, 100);
      const kill = setTimeout(() => {
        for (const d of waiting) {
          if (!d.running()) continue;
          this.log(`daemon ${d.label} did not stop within ${STOP_MERCY_MS / 1000} s; killing it`);
          d.signal('SIGKILL');
        }
        setTimeout(finish, 200);
      }, STOP_MERCY_MS);
      const finish = (): void => {
        clearInterval(check);
        clearTimeout(kill);
        done();
      };
    });
  }

  /** Stops every daemon: SIGTERM, SIGKILL after the mercy; resolves when they are gone. */
  stop(): Promise<void> {
    if (this.watcher) clearInterval(this.watcher);
    this.watcher = undefined;
    return this.stopSome(this.daemons);
  }
}
