/**
 * http-to (docs/https.md): the router in front of other uwsgi servers (another tsgi, the real uWSGI) instead of
 * this instance's workers. One plain uwsgi connection per request, as uWSGI's router opens them (uWSGI
 * backends have no keep-alive), to the next address round robin. An address that refuses the connection is
 * skipped for the next one, each tried once per request; when none takes it the client gets a 502 (uWSGI's
 * router closes the client's connection without an answer instead). The response is HTTP (a uwsgi server
 * answers with a status line and headers); its head is parsed here and handed to the request, which frames it
 * for the client as it frames a worker's.
 */
import net from 'node:net';
import type { SocketAddress } from '../config/resolve.js';
import type { Exchange } from './links.js';

export interface UpstreamTarget {
  address: SocketAddress;
  text: string;
}

/** Longest response head accepted from a backend. */
const MAX_HEAD = 65536;

export class UpstreamPool {
  private next = 0;
  private readonly open = new Map<Exchange, net.Socket>();
  private stopping = false;

  constructor(
    private readonly targets: readonly UpstreamTarget[],
    private readonly log: (line: string) => void,
  ) {}

  get isStopping(): boolean {
    return this.stopping;
  }

  submit(ex: Exchange): boolean {
    const first = this.next;
    this.next = (this.next + 1) % this.targets.length;
    this.attempt(ex, first, 0, []);
    return true;
  }

  withdraw(ex: Exchange): void {
    const s = this.open.get(ex);
    if (s === undefined) return;
    this.open.delete(ex);
    s.destroy();
  }

  beginStop(): void {
    this.stopping = true;
  }

  close(): void {
    for (const s of this.open.values()) s.destroy();
    this.open.clear();
  }

  /** Tries target `index` (the `tried`-th of this request); a refused connection moves on to the next one. */
  private attempt(ex: Exchange, index: number, tried: number, refused: string[]): void {
    const target = this.targets[index]!;
    const a = target.address;
    const socket = a.kind === 'unix' ? net.connect(a.path) : net.connect(a.port, a.host);
    socket.setNoDelay?.(true);
    this.open.set(ex, socket);
    let connected = false;
    let headDone = false;
    let head: Buffer = Buffer.alloc(0);
    let finished = false;
    const done = (): void => {
      finished = true;
      if (this.open.get(ex) === socket) this.open.delete(ex);
    };
    socket.on('connect', () => {
      connected = true;
      ex.bindFlow(() => socket.pause(), () => socket.resume());
      socket.cork();
      for (const p of ex.payload) socket.write(p);
      socket.uncork();
    });
    // How the backend frames its body: a uwsgi server answers with HTTP, so Content-Length, chunked (an app that
    // sets Transfer-Encoding itself, a tsgi Node worker) or the end of the connection (uWSGI for a generator).
    // The body reaches the request decoded; it frames it again for its client, so keep-alive is kept.
    let remaining = -1; // bytes left when framed by Content-Length
    let chunks: ChunkDecoder | undefined;
    const finish = (): void => {
      done();
      socket.destroy();
      ex.end();
    };
    const feed = (data: Buffer): void => {
      if (chunks !== undefined) {
        const r = chunks.push(data, (piece) => ex.body(piece));
        if (r === 'done') return finish();
        if (r === 'bad') return this.bad(ex, socket, target, 'a malformed chunked body');
        return;
      }
      if (remaining >= 0) {
        if (data.length >= remaining) {
          if (remaining > 0) ex.body(data.length === remaining ? data : data.subarray(0, remaining));
          remaining = 0;
          return finish();
        }
        remaining -= data.length;
      }
      ex.body(data);
    };
    socket.on('data', (chunk: Buffer) => {
      if (finished) return;
      if (headDone) return feed(chunk);
      head = head.length === 0 ? chunk : Buffer.concat([head, chunk]);
      const end = head.indexOf('\r\n\r\n');
      if (end === -1) {
        if (head.length > MAX_HEAD) this.bad(ex, socket, target, 'a response head over 64 KB');
        return;
      }
      const parsed = parseHead(head.subarray(0, end).toString('latin1'));
      if (parsed === undefined) return this.bad(ex, socket, target, 'a response that is not HTTP');
      headDone = true;
      const code = Number(parsed.status.slice(0, 3));
      const framing = bodyFraming(parsed.headers);
      if (framing === undefined) return this.bad(ex, socket, target, 'a Transfer-Encoding or Content-Length HTTP cannot frame');
      ex.head(parsed.status, parsed.headers);
      if (finished) return; // the request refused the head (502)
      if (code < 200 || code === 204 || code === 304 || ex.method === 'HEAD') return finish();
      if (framing === 'chunked') chunks = new ChunkDecoder();
      else remaining = framing;
      const rest = head.subarray(end + 4);
      head = Buffer.alloc(0);
      if (rest.length > 0) feed(rest);
      else if (remaining === 0) finish();
    });
    socket.on('end', () => {
      if (finished) return;
      done();
      if (!headDone) {
        this.log(`http-to ${target.text} closed the connection without a response; answered 502`);
        return ex.fail('abort');
      }
      if (chunks !== undefined) {
        // The last chunk never came: the client must not take a cut body for a whole one.
        this.log(`http-to ${target.text} closed the connection in the middle of a chunked body`);
        return ex.fail('abort');
      }
      // Close-delimited, or a Content-Length the backend did not fill (the request tells that to its client).
      ex.end();
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      if (finished) return;
      if (!connected) {
        // Nothing was sent: another address may take the request.
        refused.push(`${target.text} (${err.code ?? err.message})`);
        if (tried + 1 < this.targets.length && this.open.get(ex) === socket) {
          this.log(`http-to ${target.text}: ${err.code ?? err.message}; the request goes to the next address`);
          return this.attempt(ex, (index + 1) % this.targets.length, tried + 1, refused);
        }
        done();
        this.log(`http-to: no backend took the request (${refused.join(', ')}); answered 502`);
        return ex.fail('abort');
      }
      done();
      this.log(`http-to ${target.text}: ${err.code ?? err.message} during a response`);
      ex.fail('abort');
    });
  }

  private bad(ex: Exchange, socket: net.Socket, target: UpstreamTarget, what: string): void {
    this.open.delete(ex);
    socket.destroy();
    this.log(`http-to ${target.text} sent ${what}; answered 502`);
    ex.fail('abort');
  }
}

/** `HTTP/1.x 200 OK` and its header lines → the status (`200 OK`) and [name, value, ...]. */
function parseHead(text: string): { status: string; headers: string[] } | undefined {
  const lines = text.split('\r\n');
  const m = /^HTTP\/\d\.\d (\d{3}(?: .*)?)$/.exec(lines[0]!);
  if (m === null) return undefined;
  const headers: string[] = [];
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    const colon = line.indexOf(':');
    if (colon <= 0) return undefined;
    headers.push(line.slice(0, colon), line.slice(colon + 1).trim());
  }
  return { status: m[1]!, headers };
}

/**
 * The backend's framing from its headers: 'chunked', a Content-Length, -1 for the end of the connection, or
 * undefined for what HTTP/1.1 cannot frame (a coding other than chunked last, conflicting lengths).
 */
function bodyFraming(headers: string[]): 'chunked' | number | undefined {
  let length = -1;
  let chunked = false;
  for (let i = 0; i < headers.length; i += 2) {
    const name = headers[i]!.toLowerCase();
    if (name === 'transfer-encoding') {
      const codings = headers[i + 1]!.toLowerCase().split(',').map((c) => c.trim()).filter(Boolean);
      if (codings.at(-1) !== 'chunked') return undefined;
      chunked = true;
    } else if (name === 'content-length') {
      const v = headers[i + 1]!;
      const n = /^\d+$/.test(v) ? Number(v) : NaN;
      if (!Number.isSafeInteger(n) || (length >= 0 && n !== length)) return undefined;
      length = n;
    }
  }
  // Both: chunked wins (RFC 9112 6.3), and the length must not reach the client.
  if (chunked) {
    for (let i = headers.length - 2; i >= 0; i -= 2) if (headers[i]!.toLowerCase() === 'content-length') headers.splice(i, 2);
    return 'chunked';
  }
  return length;
}

const enum ChunkState { Size, Data, DataEnd, Trailer }

/** Decodes a chunked body as it arrives, in pieces of any size; chunk extensions and trailers are dropped. */
export class ChunkDecoder {
  private state = ChunkState.Size;
  private line = '';
  private left = 0;

  /** Feeds bytes; data goes to `out`. 'done' after the last chunk and its trailers, 'bad' on a framing error. */
  push(data: Buffer, out: (piece: Buffer) => void): 'more' | 'done' | 'bad' {
    let i = 0;
    while (i < data.length) {
      if (this.state === ChunkState.Data) {
        const n = Math.min(this.left, data.length - i);
        out(data.subarray(i, i + n));
        i += n;
        this.left -= n;
        if (this.left === 0) this.state = ChunkState.DataEnd;
        continue;
      }
      // A line: the size line, the CRLF after a chunk's data, or a trailer line.
      const nl = data.indexOf(10, i);
      const upto = nl === -1 ? data.length : nl + 1;
      this.line += data.toString('latin1', i, upto);
      i = upto;
      if (this.line.length > 4096) return 'bad';
      if (nl === -1) break;
      const line = this.line.endsWith('\r\n') ? this.line.slice(0, -2) : this.line.slice(0, -1);
      this.line = '';
      if (this.state === ChunkState.DataEnd) {
        if (line !== '') return 'bad';
        this.state = ChunkState.Size;
      } else if (this.state === ChunkState.Size) {
        const m = /^([0-9a-fA-F]{1,12})[ \t]*(?:;.*)?$/.exec(line);
        if (m === null) return 'bad';
        this.left = parseInt(m[1]!, 16);
        this.state = this.left === 0 ? ChunkState.Trailer : ChunkState.Data;
      } else if (line === '') {
        return 'done';
      }
    }
    return 'more';
  }
}
