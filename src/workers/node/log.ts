/**
 * The worker's log: request lines and errors, on the descriptor the master gave as stderr (the terminal, or
 * the `logto` file opened O_APPEND). Lines written in one turn of the event loop leave in one write() (at
 * most ~3.5 KB, under PIPE_BUF, so lines of different workers never interleave on a pipe): under load that
 * is one syscall for many requests, not one per request. Everything pending is written at exit.
 */
import { writeSync } from 'node:fs';
import type { LogWhen } from '../../config/resolve.js';
import { logDatePrefix } from '../../config/strftime.js';

const FLUSH_AT = 3500;
const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

const two = (n: number): string => (n < 10 ? `0${n}` : String(n));

let ctimeSecond = -1;
let ctimeText = '';

/** C's ctime() without the newline (what uWSGI prints in request lines), computed once per second. */
export function ctime(ms: number): string {
  const sec = Math.floor(ms / 1000);
  if (sec !== ctimeSecond) {
    const d = new Date(sec * 1000);
    ctimeSecond = sec;
    // The day of the month is padded with a space, as C's ctime() (and so uWSGI) prints it: 'Dec  5'.
    ctimeText = `${DAYS[d.getDay()]} ${MONTHS[d.getMonth()]} ${String(d.getDate()).padStart(2, ' ')} ${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())} ${d.getFullYear()}`;
  }
  return ctimeText;
}

/** Conditional logging (log-4xx, log-5xx, log-slow, log-big, log-zero): any one condition is enough. */
export function logWanted(w: LogWhen, status: number, usec: number, bodyBytes: number): boolean {
  return (
    (w.status4xx && status >= 400 && status <= 499) ||
    (w.status5xx && status >= 500 && status <= 599) ||
    (w.slowMs > 0 && Math.floor(usec / 1000) > w.slowMs) ||
    (w.bigBytes > 0 && bodyBytes >= w.bigBytes) ||
    (w.zero && bodyBytes === 0)
  );
}

export class WorkerLog {
  private pending = '';
  private scheduled = false;
  private readonly flushSoon = (): void => {
    this.scheduled = false;
    this.flush();
  };

  constructor(
    private readonly fd: number,
    private readonly prefix: string,
    /** log-date: 'true' or a strftime format, before every error line. */
    private readonly logDate?: string,
  ) {}

  /** req-logger: request lines are batched and written apart, on the log master's request pipe. */
  private requests: WorkerLog | undefined;

  sendRequestsTo(fd: number): void {
    this.requests = new WorkerLog(fd, this.prefix);
  }

  /** A request line (with its newline): with the other lines, unless req-logger set a pipe of its own. */
  request(text: string): void {
    if (this.requests === undefined) this.line(text);
    else this.requests.line(text);
  }

  /** A complete line (with its newline). */
  line(text: string): void {
    this.pending += text;
    if (this.pending.length >= FLUSH_AT) this.flush();
    else if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.flushSoon);
    }
  }

  /** `[pid: N|worker W] message`: an error or event of this worker. */
  error(message: string): void {
    this.line(`${this.logDate === undefined ? '' : logDatePrefix(this.logDate, Date.now())}${this.prefix} ${message}\n`);
  }

  flush(): void {
    this.requests?.flush();
    if (this.pending === '') return;
    const text = this.pending;
    this.pending = '';
    try {
      writeSync(this.fd, text);
    } catch {
      /* a log that cannot be written must not take the worker down */
    }
  }
}
