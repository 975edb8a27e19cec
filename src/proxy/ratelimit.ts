/**
 * limit_rate: the response body of one request leaves at most `rate` bytes a second after the first
 * `after` bytes (limit_rate_after), as nginx paces it: what may have been sent by now is
 * after + rate × seconds since the response started; the rest waits on a timer. Installed on the
 * response only when a rate applies, by replacing its write/end with a paced queue (a `pipe` into it
 * waits on 'drain' as usual).
 */
import type { ServerResponse } from 'node:http';

type Write = (chunk: unknown, ...rest: unknown[]) => boolean;
type End = (...args: unknown[]) => ServerResponse;

export function paceResponse(res: ServerResponse, rate: number, after: number): void {
  const write = res.write.bind(res) as Write;
  const end = res.end.bind(res) as End;
  const queue: Buffer[] = [];
  const start = Date.now();
  let sent = 0;
  let ending = false;
  let timer: NodeJS.Timeout | undefined;
  let blocked = false;
  const toBuf = (c: unknown, enc?: unknown): Buffer => (Buffer.isBuffer(c) ? c : typeof c === 'string' ? Buffer.from(c, (typeof enc === 'string' ? enc : 'utf8') as BufferEncoding) : Buffer.from(c as Uint8Array));
  const pump = (): void => {
    timer = undefined;
    if (res.destroyed) return;
    while (queue.length) {
      const allowed = Math.floor(after + (rate * (Date.now() - start)) / 1000) - sent;
      if (allowed <= 0) {
        // The time until one more second's share is due, at least a few ms.
        timer = setTimeout(pump, Math.max(10, Math.ceil(((sent - after + 1) * 1000) / rate - (Date.now() - start))));
        return;
      }
      const head = queue[0]!;
      const piece = head.length <= allowed ? head : head.subarray(0, allowed);
      if (piece === head) queue.shift();
      else queue[0] = head.subarray(allowed);
      sent += piece.length;
      write(piece);
    }
    if (ending) {
      ending = false;
      end();
      return;
    }
    if (blocked) {
      blocked = false;
      res.emit('drain');
    }
  };
  res.write = function (chunk: unknown, enc?: unknown, cb?: unknown): boolean {
    const buf = toBuf(chunk, enc);
    if (buf.length) queue.push(buf);
    if (typeof enc === 'function') process.nextTick(enc as () => void);
    else if (typeof cb === 'function') process.nextTick(cb as () => void);
    if (timer === undefined) pump();
    if (queue.length) blocked = true;
    return queue.length === 0;
  } as typeof res.write;
  res.end = function (chunk?: unknown, enc?: unknown, cb?: unknown): ServerResponse {
    if (chunk !== undefined && typeof chunk !== 'function') {
      const buf = toBuf(chunk, enc);
      if (buf.length) queue.push(buf);
    }
    const done = [chunk, enc, cb].find((x) => typeof x === 'function') as (() => void) | undefined;
    if (done) res.once('finish', done);
    ending = true;
    if (timer === undefined) pump();
    return res;
  } as typeof res.end;
  res.once('close', () => clearTimeout(timer));
}
