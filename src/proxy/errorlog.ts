/**
 * The error log: "2026/11/24 21:00:00 [error] PID#0: message", filtered by level. Writes are appended
 * asynchronously in batches; `reopen()` (USR1) reopens the file after log rotation.
 */
import { openSync, closeSync, write as fsWrite, writeSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';

export const LEVELS = ['emerg', 'alert', 'crit', 'error', 'warn', 'notice', 'info', 'debug'] as const;
export type Level = (typeof LEVELS)[number];

function stamp(d = new Date()): string {
  const p = (n: number) => (n < 10 ? '0' + n : String(n));
  return `${d.getFullYear()}/${p(d.getMonth() + 1)}/${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

export class ErrorLog {
  private fd = -1;
  private pending: string[] = [];
  private scheduled = false;
  private readonly max: number;

  constructor(readonly path: string, level: string = 'error') {
    this.max = LEVELS.indexOf((LEVELS as readonly string[]).includes(level) ? (level as Level) : 'error');
  }

  /** Opens the file; returns an error message instead of throwing (the caller decides how loud to be). */
  open(): string | undefined {
    if (this.path === 'stderr') {
      this.fd = 2;
      return undefined;
    }
    try {
      mkdirSync(dirname(this.path), { recursive: true });
      this.fd = openSync(this.path, 'a');
      return undefined;
    } catch (e) {
      this.fd = 2;
      return `could not open error log file: open() "${this.path}" failed (${(e as Error).message})`;
    }
  }

  reopen(): void {
    if (this.fd > 2) {
      try {
        closeSync(this.fd);
      } catch {
        // already closed
      }
    }
    this.open();
  }

  enabled(level: Level): boolean {
    return LEVELS.indexOf(level) <= this.max;
  }

  log(level: Level, message: string): void {
    if (!this.enabled(level)) return;
    this.pending.push(`${stamp()} [${level}] ${process.pid}#0: ${message}\n`);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => this.flush());
    }
  }

  /** Writes what is pending; synchronous callers (exit paths) use flushSync. */
  flush(): void {
    this.scheduled = false;
    if (this.pending.length === 0 || this.fd < 0) return;
    const data = this.pending.join('');
    this.pending = [];
    fsWrite(this.fd, data, () => {});
  }

  flushSync(): void {
    this.scheduled = false;
    if (this.pending.length === 0 || this.fd < 0) return;
    const data = this.pending.join('');
    this.pending = [];
    try {
      writeSync(this.fd, data);
    } catch {
      // nothing left to report to
    }
  }
}

/** Several logs at once (nginx allows more than one error_log). */
export class ErrorLogs {
  constructor(public logs: ErrorLog[]) {}
  log(level: Level, message: string): void {
    for (const l of this.logs) l.log(level, message);
  }
  enabled(level: Level): boolean {
    return this.logs.some((l) => l.enabled(level));
  }
  reopen(): void {
    for (const l of this.logs) l.reopen();
  }
  flushSync(): void {
    for (const l of this.logs) l.flushSync();
  }
}
