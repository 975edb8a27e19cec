/**
 * The process log: stderr, or the `logto` file (opened for appending before privileges are dropped, as uWSGI
 * does). Workers receive the same descriptor as their stdout and stderr and write their request lines to it
 * directly, one write() per line (atomic on an O_APPEND file or a pipe), so no request passes through the
 * master. The master writes its own events here.
 */
import { openSync, writeSync } from 'node:fs';

export class ProcessLog {
  readonly fd: number;

  constructor(logto: string | undefined) {
    this.fd = logto ? openSync(logto, 'a', 0o640) : 2;
  }

  /** A master event: `tsgi: ...`. Master events are rare, so a synchronous write keeps their order exact. */
  info(message: string): void {
    try {
      writeSync(this.fd, `tsgi: ${message}\n`);
    } catch {
      /* a log that cannot be written must not take the master down */
    }
  }
}
