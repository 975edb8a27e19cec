/**
 * The spooler processes (docs/spooler.md): `spooler-processes` Python processes per `spooler` directory, each
 * loading the app as a worker does and then running the tasks of its directory (python/tsgi_worker/spooler.py).
 * The master respawns one that dies, restarts them all on a reload (the reloaded configuration may change them),
 * stops them on shutdown (SIGTERM: a task in progress finishes, within reload-mercy, then SIGKILL), and lists them
 * in the stats ("spoolers", as uWSGI's). An immediate stop kills them at once, as uWSGI does. Only created when a
 * spooler is configured.
 *
 * Workers learn the spoolers' pids (uwsgi.spooler_pid(), and the SIGUSR1 that uwsgi.spool() sends so a task runs
 * at once) from `RUN_DIR/spoolers`, rewritten when a spooler is ready or gone; a spooler is listed only once its
 * SIGUSR1 handler is installed (it writes `R` on its control channel), since SIGUSR1 would otherwise kill it.
 */
import type { ChildProcess } from 'node:child_process';
import { killSupervised, removeRunDir, stopSupervised } from './supervised.js';
import { mkdtempSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import type { Settings, SpoolerSettings } from '../config/resolve.js';

export interface SpoolerStats {
  dir: string;
  pid: number;
  tasks: number;
  respawns: number;
  running: number;
}

class SpoolerProcess {
  child: ChildProcess | undefined;
  pid = 0;
  ready = false;
  /** A task is in progress (stats' "running"). */
  running = false;
  tasks = 0;
  respawns = 0;
  spawnedAt = 0;
  timer: NodeJS.Timeout | undefined;
  constructor(readonly dir: string) {}
}

const FAST_DEATH_MS = 1000;

export class Spoolers {
  readonly runDir: string;
  private procs: SpoolerProcess[] = [];
  private stopping = false;

  constructor(
    private settings: Settings,
    private readonly spawnOne: (s: Settings, dir: string) => ChildProcess,
    private readonly log: (line: string) => void,
  ) {
    this.runDir = mkdtempSync(join(tmpdir(), 'tsgi-spooler-'));
    this.writePids();
  }

  private get conf(): SpoolerSettings {
    return this.settings.spooler!;
  }

  start(): void {
    for (const dir of this.conf.dirs) for (let i = 0; i < this.conf.processes; i++) this.procs.push(new SpoolerProcess(dir));
    for (const p of this.procs) this.spawn(p);
  }

  private spawn(p: SpoolerProcess): void {
    p.timer = undefined;
    if (this.stopping) return;
    let child: ChildProcess;
    try {
      child = this.spawnOne(this.settings, p.dir);
    } catch (err) {
      this.log(`spooler ${p.dir}: cannot start: ${(err as Error).message}`);
      return;
    }
    p.child = child;
    p.pid = child.pid ?? 0;
    p.ready = false;
    p.tasks = 0;   // counted per process, as uWSGI's
    p.running = false;
    p.spawnedAt = Date.now();
    this.log(`spawned the tsgi spooler on dir ${p.dir} with pid ${p.pid}`);
    let pending = '';
    (child.stdio[3] as Readable | null)?.on('data', (chunk: Buffer) => {
      pending += chunk.toString('latin1');
      let nl: number;
      while ((nl = pending.indexOf('\n')) >= 0) {
        const line = pending.slice(0, nl);
        pending = pending.slice(nl + 1);
        if (line === 'R') {
          p.ready = true;
          this.writePids();
          // A task spooled after the spooler's first scan but before it was listed here got no SIGUSR1 (the
          // worker did not know the pid yet): one wake-up now makes it scan again, so no task waits for
          // spooler-frequency. Tasks spooled from now on signal it themselves.
          try {
            child.kill('SIGUSR1');
          } catch {
            /* already gone: 'exit' follows */
          }
        } else if (line === 'B') {
          p.running = true;
        } else if (line.startsWith('T ')) {
          p.tasks = Number(line.slice(2)) || 0;
          p.running = false;
        }
      }
    });
    child.on('error', (err) => this.log(`spooler ${p.dir}: ${err.message}`));
    child.on('exit', (code, signal) => {
      if (p.child !== child) return;
      p.child = undefined;
      p.ready = false;
      this.writePids();
      if (this.stopping) return;
      const how = signal === 'SIGALRM' ? `killed by spooler-harakiri (${this.conf.harakiri} s)` : signal ? `killed by ${signal}` : `exited with status ${code}`;
      this.log(`spooler ${p.dir} (pid: ${p.pid}) ${how}; respawning`);
      p.respawns++;
      // One that dies at once (an app that cannot load) is not respawned in a tight loop.
      const delay = Date.now() - p.spawnedAt < FAST_DEATH_MS ? FAST_DEATH_MS : 0;
      p.timer = setTimeout(() => this.spawn(p), delay);
    });
  }

  /** RUN_DIR/spoolers: "PID DIR" per ready spooler, replaced atomically. */
  private writePids(): void {
    const text = this.procs.filter((p) => p.ready && p.child).map((p) => `${p.pid} ${p.dir}\n`).join('');
    try {
      const tmp = join(this.runDir, 'spoolers.tmp');
      writeFileSync(tmp, text);
      renameSync(tmp, join(this.runDir, 'spoolers'));
    } catch {
      /* the directory is gone: the master is finishing */
    }
  }

  /** A reload: the spoolers stop (their tasks in progress finish) and start again with the new configuration. */
  reload(next: Settings): void {
    if (!next.spooler || !next.spooler.dirs.length) {
      this.log('note: a reload cannot remove the spoolers; they keep running until the next restart');
      return;
    }
    const old = this.procs;
    const mercy = this.settings.reloadMercy;
    this.settings = next;
    this.procs = [];
    for (const p of old) p.child?.removeAllListeners('exit');
    void this.stopAll(old, mercy).then(() => {
      if (this.stopping) return;
      this.start();
    });
    // The old ones are not respawned: their exit listeners were replaced by stopAll's.
    for (const p of old) {
      const child = p.child;
      child?.once('exit', () => {
        p.child = undefined;
      });
    }
    this.writePids();
  }

  /** SIGTERM to each (a task in progress finishes), SIGKILL after `mercyS`; resolves when all are gone. */
  private stopAll(procs: SpoolerProcess[], mercyS: number): Promise<void> {
    return stopSupervised(procs, mercyS, (p) => `spooler ${p.dir}`, this.log);
  }

  stop(mercyS: number): Promise<void> {
    this.stopping = true;
    return this.stopAll(this.procs, mercyS).then(() => removeRunDir(this.runDir));
  }

  /** An immediate stop: every spooler is killed now (a task in progress stays spooled). */
  killNow(): void {
    this.stopping = true;
    killSupervised(this.procs);
  }

  stats(): SpoolerStats[] {
    return this.procs.map((p) => ({ dir: p.dir, pid: p.child ? p.pid : 0, tasks: p.tasks, respawns: p.respawns, running: p.child && p.running ? 1 : 0 }));
  }
}
