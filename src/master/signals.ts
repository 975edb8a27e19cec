/**
 * uWSGI's signal framework for Python apps (docs/signals.md): the master routes signals. A Python process that
 * registers a handler, raises a signal or adds a timer, cron entry or file monitor connects to the master's
 * Unix stream socket (RUN_DIR/signals) and sends lines:
 *   hello ROLE ID PID        ROLE: worker | mule (once per process, first)
 *   reg NUM TARGET           uwsgi.register_signal: the first registration of NUM in the instance wins
 *   raise NUM                uwsgi.signal
 *   timer NUM SECS | rbtimer NUM SECS | cron NUM MIN HOUR DAY MONTH WEEK | filemon NUM PATH
 * and receives `NUM\n` for each signal to handle. Every process imports the app (each mule, lazy workers), so
 * the same timer arrives once per process: a timer, cron entry or file monitor is kept once per signal.
 */
import { mkdtempSync, rmSync, watch, type FSWatcher } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cronMatches, type CronSchedule } from './cron.js';

interface Client {
  sock: net.Socket;
  role: string;
  id: number;
  pid: number;
}

/** The targets uWSGI 2.0.21's register_signal accepts that tsgi delivers to. */
export const SIGNAL_TARGET = /^(|worker|workers|worker\d+|mule|mules|mule\d+)$/;

export class SignalHub {
  readonly path: string;
  private readonly dir: string;
  private readonly server: net.Server;
  private clients = new Set<Client>();
  private targets = new Map<number, string>();
  private timers = new Map<number, NodeJS.Timeout>();
  private crons = new Map<number, { s: CronSchedule; last: number }>();
  private cronTimer: NodeJS.Timeout | undefined;
  private monitors = new Map<number, FSWatcher>();
  private turn = 0;
  /** Signals raised before their target connected (a cron entry or timer firing while the mules start). */
  private waiting: number[] = [];

  constructor(private readonly log: (line: string) => void) {
    this.dir = mkdtempSync(join(tmpdir(), 'tsgi-signals-'));
    this.path = join(this.dir, 'signals');
    this.server = net.createServer((sock) => this.accept(sock));
    this.server.listen(this.path);
    this.server.unref();
  }

  private accept(sock: net.Socket): void {
    const c: Client = { sock, role: '', id: 0, pid: 0 };
    this.clients.add(c);
    let pending = '';
    sock.on('data', (chunk) => {
      pending += chunk.toString('utf8');
      let nl: number;
      while ((nl = pending.indexOf('\n')) >= 0) {
        const line = pending.slice(0, nl);
        pending = pending.slice(nl + 1);
        this.command(c, line);
      }
    });
    sock.on('error', () => undefined);
    sock.on('close', () => this.clients.delete(c));
  }

  private command(c: Client, line: string): void {
    const parts = line.split(' ');
    const num = Number(parts[1]);
    switch (parts[0]) {
      case 'hello':
        c.role = parts[1] ?? '';
        c.id = Number(parts[2]) || 0;
        c.pid = Number(parts[3]) || 0;
        if (this.waiting.length) {
          const again = this.waiting;
          this.waiting = [];
          for (const n of again) this.raise(n, true);
        }
        return;
      case 'reg':
        if (!this.targets.has(num)) this.targets.set(num, parts.slice(2).join(' '));
        return;
      case 'raise':
        this.raise(num);
        return;
      case 'timer':
      case 'rbtimer': {
        if (this.timers.has(num)) return;
        const secs = Number(parts[2]);
        const t = setInterval(() => this.raise(num), secs * 1000);
        t.unref();
        this.timers.set(num, t);
        return;
      }
      case 'cron': {
        if (this.crons.has(num)) return;
        const [minute, hour, mday, month, wday] = parts.slice(2, 7).map(Number) as [number, number, number, number, number];
        this.crons.set(num, { s: { minute, hour, mday, month, wday }, last: 0 });
        this.cronTimer ??= setInterval(() => this.checkCron(new Date()), 1000);
        this.cronTimer.unref();
        this.checkCron(new Date());
        return;
      }
      case 'filemon': {
        if (this.monitors.has(num)) return;
        const path = parts.slice(2).join(' ');
        try {
          const w = watch(path, () => this.raise(num));
          w.unref();
          this.monitors.set(num, w);
        } catch (err) {
          this.log(`signal ${num}: cannot monitor ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
        }
        return;
      }
      default:
    }
  }

  /** A cron entry raises its signal once in each minute it matches. */
  checkCron(now: Date): void {
    const minute = Math.floor(now.getTime() / 60_000);
    for (const [num, entry] of this.crons) {
      if (entry.last !== minute && cronMatches(entry.s, now)) {
        entry.last = minute;
        this.raise(num);
      }
    }
  }

  /** Sends NUM to the process(es) its registration names. */
  raise(num: number, retry = false): void {
    const target = this.targets.get(num);
    if (target === undefined) {
      this.log(`signal ${num}: no handler is registered for it`);
      return;
    }
    const m = /^(worker|mule)(s|\d+)?$/.exec(target || 'worker')!;
    const role = m[1]!;
    const pool = [...this.clients].filter((c) => c.role === role);
    let chosen: Client[];
    if (m[2] === 's') chosen = pool;
    else if (m[2]) chosen = pool.filter((c) => c.id === Number(m[2]));
    else chosen = pool.length ? [pool[this.turn++ % pool.length]!] : [];
    if (!chosen.length) {
      // Kept for a process that is still starting, as uWSGI's per-process queues keep it (a bounded number).
      if (this.waiting.length < 64) this.waiting.push(num);
      else if (!retry) this.log(`signal ${num}: no ${target || 'worker'} to deliver it to (${this.waiting.length} signals waiting already)`);
      return;
    }
    for (const c of chosen) c.sock.write(`${num}\n`);
  }

  /** A reload: the new processes register their signals, timers and monitors again, as after uWSGI's re-exec. */
  reset(): void {
    for (const t of this.timers.values()) clearInterval(t);
    for (const w of this.monitors.values()) w.close();
    this.timers.clear();
    this.monitors.clear();
    this.crons.clear();
    this.targets.clear();
  }

  close(): void {
    for (const t of this.timers.values()) clearInterval(t);
    if (this.cronTimer) clearInterval(this.cronTimer);
    for (const w of this.monitors.values()) w.close();
    for (const c of this.clients) c.sock.destroy();
    this.server.close();
    try {
      rmSync(this.dir, { recursive: true, force: true });
    } catch {
      /* nothing to do */
    }
  }
}
