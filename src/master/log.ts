/**
 * The process log: stderr, or the `logto` file (opened for appending before privileges are dropped, as uWSGI
 * does). Workers receive the same descriptor as their stdout and stderr and write their request lines to it
 * directly, one write() per line (atomic on an O_APPEND file or a pipe), so no request passes through the
 * master. The master writes its own events here. On a reopen (log rotation) the master opens the file again
 * and tells the workers, which do the same.
 *
 * With a log master (logger, req-logger, log-encoder, alarm-log, log-master: src/master/logmaster.ts) workers get
 * its pipe instead, and the master's events go through its loggers too; this descriptor is then the master's
 * alone (where lines go when no logger takes them).
 */
import { closeSync, fstatSync, openSync, renameSync, writeSync } from 'node:fs';
import { logDatePrefix } from '../config/strftime.js';

export class ProcessLog {
  private current: number;
  /** log-date: 'true' or a strftime format; undefined when off. */
  logDate: string | undefined;

  constructor(private readonly path: string | undefined) {
    this.current = path ? openSync(path, 'a', 0o640) : 2;
  }

  /** The log master, when there is one: it gives workers its pipe and takes the master's lines. */
  private master: { readonly fd: number; dispatch(line: string, req: boolean, alarms: boolean): void } | undefined;

  attach(master: { readonly fd: number; dispatch(line: string, req: boolean, alarms: boolean): void }): void {
    this.master = master;
  }

  /** The descriptor new workers get as their stdout and stderr. */
  get fd(): number {
    return this.master ? this.master.fd : this.current;
  }

  /** Text written as is to stderr or the logto file (the log master's default output and its own troubles). */
  writeRaw(text: string | Buffer): void {
    try {
      if (typeof text === 'string') writeSync(this.current, text);
      else writeSync(this.current, text);
    } catch {
      /* a log that cannot be written must not take the master down */
    }
  }

  /** A master event: `tsgi: ...`. Master events are rare, so a synchronous write keeps their order exact. */
  info(message: string): void {
    const line = `${this.logDate === undefined ? '' : logDatePrefix(this.logDate, Date.now())}tsgi: ${message}\n`;
    if (this.master) return this.master.dispatch(line, false, true);
    try {
      writeSync(this.current, line);
    } catch {
      /* a log that cannot be written must not take the master down */
    }
  }

  /** Opens the log file again (after an external rotation); returns an error line, or undefined. */
  reopen(): string | undefined {
    if (!this.path) return 'the log is stderr (no logto file to reopen)';
    let fd: number;
    try {
      fd = openSync(this.path, 'a', 0o640);
    } catch (err) {
      return `${this.path}: ${(err as NodeJS.ErrnoException).code}`;
    }
    const old = this.current;
    this.current = fd;
    // Workers spawned before still hold the old descriptor until they reopen; the master's copy can go.
    if (old !== 2) closeSync(old);
    return undefined;
  }

  size(): number {
    if (!this.path) return 0;
    try {
      return fstatSync(this.current).size;
    } catch {
      return 0;
    }
  }

  /** log-maxsize: the current file becomes FILE.UNIXTIME and a new one is opened. */
  rotate(): string | undefined {
    if (!this.path) return 'the log is stderr';
    try {
      renameSync(this.path, `${this.path}.${Math.floor(Date.now() / 1000)}`);
    } catch (err) {
      return `${this.path}: ${(err as NodeJS.ErrnoException).code}`;
    }
    return this.reopen();
  }
}
