/**
 * The mules (docs/mules.md): extra Python processes for an app's background work. Each loads the app as a worker
 * does, runs the post-fork hooks (where uwsgidecorators' @mule, @muleloop and @mulemsg take over), then runs its
 * script or function (`mule = FILE.py` / `mule = MODULE:FUNC`) or, for a generic mule, waits for messages and
 * hands each to uwsgi.mule_msg_hook (python/tsgi_worker/mules.py).
 *
 * Messages (uwsgi.mule_msg) travel over one Unix datagram socket per mule, bound by the mule itself in the
 * master's private directory (RUN_DIR/mule-N); Node cannot create Unix datagram sockets, so the master only
 * owns the directory. The master respawns a mule that dies, restarts them all on a reload, stops them on
 * shutdown (SIGTERM, then SIGKILL after reload-mercy), and lists them in the stats. Only created when a mule is
 * configured.
 */
import type { ChildProcess } from 'node:child_process';
import { killSupervised, removeRunDir, stopSupervised } from './supervised.js';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import type { MuleSettings, Settings } from '../config/resolve.js';

export interface MuleStats {
  id: number;
  pid: number;
  respawns: number;
  /** Messages handled by the current process of this mule (its generic loop). */
  messages: number;
}

class MuleProcess {
  child: ChildProcess | undefined;
  pid = 0;
  respawns = 0;
  messages = 0;
  spawnedAt = 0;
  timer: NodeJS.Timeout | undefined;
  constructor(readonly id: number) {}
}

const FAST_DEATH_MS = 1000;

export class Mules {
  readonly runDir: string;
  private procs: MuleProcess[] = [];
  private stopping = false;

  constructor(
    private settings: Settings,
    private readonly spawnOne: (s: Settings, id: number) => ChildProcess,
    private readonly log: (line: string) => void,
  ) {
    this.runDir = mkdtempSync(join(tmpdir(), 'tsgi-mules-'));
  }

  private get conf(): MuleSettings {
    return this.settings.mules!;
  }

  start(): void {
    this.procs = this.conf.mules.map((_, i) => new MuleProcess(i + 1));
    for (const p of this.procs) this.spawn(p);
  }

  private spawn(p: MuleProcess): void {
    p.timer = undefined;
    if (this.stopping) return;
    let child: ChildProcess;
    try {
      child = this.spawnOne(this.settings, p.id);
    } catch (err) {
      this.log(`mule ${p.id}: cannot start: ${(err as Error).message}`);
      return;
    }
    p.child = child;
    p.pid = child.pid ?? 0;
    p.messages = 0;
    p.spawnedAt = Date.now();
    this.log(`spawned tsgi mule ${p.id} (pid: ${p.pid})`);
    // The control channel: one 'M' line per message a generic mule has handled (the stats' count).
    (child.stdio[3] as Readable | null)?.on('data', (chunk: Buffer) => {
      for (const b of chunk) if (b === 0x4d) p.messages++;
    });
    child.on('error', (err) => this.log(`mule ${p.id}: ${err.message}`));
    child.on('exit', (code, signal) => {
      if (p.child !== child) return;
      p.child = undefined;
      if (this.stopping) return;
      const how = signal === 'SIGALRM' ? `killed by mule-harakiri (${this.conf.harakiri} s)` : signal ? `killed by ${signal}` : `exited with status ${code}`;
      this.log(`mule ${p.id} (pid: ${p.pid}) ${how}; respawning`);
      p.respawns++;
      // One that dies at once (an app that cannot load, a script that returns) is not respawned in a tight loop.
      const delay = Date.now() - p.spawnedAt < FAST_DEATH_MS ? FAST_DEATH_MS : 0;
      p.timer = setTimeout(() => this.spawn(p), delay);
    });
  }

  /** A reload: the mules stop and start again with the reloaded configuration. */
  reload(next: Settings): void {
    if (!next.mules || !next.mules.mules.length) {
      this.log('note: a reload cannot remove the mules; they keep running until the next restart');
      return;
    }
    const old = this.procs;
    this.settings = next;
    this.procs = [];
    for (const p of old) p.child?.removeAllListeners('exit');
    void this.stopAll(old, next.reloadMercy).then(() => {
      if (!this.stopping) this.start();
    });
  }

  /** SIGTERM to each, SIGKILL after `mercyS`; resolves when all are gone. */
  private stopAll(procs: MuleProcess[], mercyS: number): Promise<void> {
    return stopSupervised(procs, mercyS, (p) => `mule ${p.id}`, this.log);
  }

  stop(mercyS: number): Promise<void> {
    this.stopping = true;
    return this.stopAll(this.procs, mercyS).then(() => removeRunDir(this.runDir));
  }

  killNow(): void {
    this.stopping = true;
    killSupervised(this.procs);
  }

  stats(): MuleStats[] {
    return this.procs.map((p) => ({ id: p.id, pid: p.child ? p.pid : 0, respawns: p.respawns, messages: p.messages }));
  }
}
