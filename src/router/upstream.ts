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
    socket.on('data', (chunk: Buffer) => {
      if (finished) return;
      if (headDone) return ex.body(chunk);
      head = head.length === 0 ? chunk : Buffer.concat([head, chunk]);
      const end = head.indexOf('\r\n\r\n');
      if (end === -1) {
        if (head.length > MAX_HEAD) this.bad(ex, socket, target, 'a response head over 64 KB');
        return;
      }
      const parsed = parseHead(head.subarray(0, end).toString('latin1'));
      if (parsed === undefined) return this.bad(ex, socket, target, 'a response that is not HTTP');
      headDone = true;
      ex.head(parsed.status, parsed.headers);
      const rest = head.subarray(end + 4);
      head = Buffer.alloc(0);
      if (rest.length > 0) ex.body(rest);
    });
    socket.on('end', () => {
      if (finished) return;
      done();
      if (!headDone) {
        this.log(`http-to ${target.text} closed the connection without a response; answered 502`);
        return ex.fail('abort');
      }
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
