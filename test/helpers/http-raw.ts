/** Raw HTTP/1.x over a socket, for what node's client hides: pipelining, slow senders, exact bytes. */
import net from 'node:net';

export interface RawHttpResponse {
  status: number;
  statusLine: string;
  headers: Map<string, string>;
  body: Buffer;
}

/** Parses every complete response in `data` (Content-Length, chunked, or to the end for the last one). */
export function parseResponses(data: Buffer, headRequests = new Set<number>()): RawHttpResponse[] {
  const out: RawHttpResponse[] = [];
  let off = 0;
  while (off < data.length) {
    const end = data.indexOf('\r\n\r\n', off);
    if (end === -1) break;
    const lines = data.subarray(off, end).toString('latin1').split('\r\n');
    const statusLine = lines[0]!;
    const headers = new Map<string, string>();
    for (const l of lines.slice(1)) {
      const i = l.indexOf(':');
      headers.set(l.slice(0, i).trim().toLowerCase(), l.slice(i + 1).trim());
    }
    const status = Number(statusLine.split(' ')[1]);
    let pos = end + 4;
    let body: Buffer;
    if (headRequests.has(out.length) || status === 204 || status === 304 || (status >= 100 && status < 200)) {
      body = Buffer.alloc(0);
    } else if (headers.get('transfer-encoding')?.toLowerCase() === 'chunked') {
      const parts: Buffer[] = [];
      for (;;) {
        const lineEnd = data.indexOf('\r\n', pos);
        if (lineEnd === -1) return out;
        const size = parseInt(data.subarray(pos, lineEnd).toString('latin1'), 16);
        pos = lineEnd + 2;
        if (size === 0) {
          const trailerEnd = data.indexOf('\r\n', pos);
          pos = trailerEnd + 2;
          break;
        }
        parts.push(data.subarray(pos, pos + size));
        pos += size + 2;
      }
      body = Buffer.concat(parts);
    } else if (headers.has('content-length')) {
      const n = Number(headers.get('content-length'));
      body = data.subarray(pos, pos + n);
      pos += n;
    } else {
      body = data.subarray(pos);
      pos = data.length;
    }
    out.push({ status, statusLine, headers, body });
    off = pos;
  }
  return out;
}

/** Writes `data` on a new connection and reads until the server closes (or `idleMs` of silence). */
export function rawHttp(port: number, data: Buffer | string, opts: { idleMs?: number; host?: string } = {}): Promise<{ bytes: Buffer; closedByServer: boolean }> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, opts.host ?? '127.0.0.1');
    const chunks: Buffer[] = [];
    let timer: NodeJS.Timeout | undefined;
    const idle = opts.idleMs ?? 10_000;
    const arm = (): void => {
      if (timer) clearTimeout(timer);
      timer = setTimeout(() => {
        s.destroy();
        resolve({ bytes: Buffer.concat(chunks), closedByServer: false });
      }, idle);
    };
    s.on('connect', () => {
      s.write(data);
      arm();
    });
    s.on('data', (c: Buffer) => {
      chunks.push(c);
      arm();
    });
    s.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ECONNRESET') return;
      if (timer) clearTimeout(timer);
      reject(err);
    });
    s.on('close', () => {
      if (timer) clearTimeout(timer);
      resolve({ bytes: Buffer.concat(chunks), closedByServer: true });
    });
  });
}

/**
 * One kept-alive HTTP/1.1 connection, a request at a time: `get` resolves with the response once it is
 * complete, and rejects when the connection ends (or is reset) before it is.
 */
export class KeptAliveConnection {
  private data = Buffer.alloc(0);
  private pending: { resolve(r: RawHttpResponse): void; reject(e: Error): void } | undefined;
  private ended: Error | undefined;
  /** Resolves when the server has closed the connection. */
  readonly closed: Promise<void>;
  private readonly socket: net.Socket;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.on('data', (c: Buffer) => {
      this.data = Buffer.concat([this.data, c]);
      const [r] = parseResponses(this.data);
      const cl = r?.headers.get('content-length');
      if (!r || !this.pending || (cl !== undefined && r.body.length < Number(cl))) return;
      this.data = Buffer.alloc(0);
      const p = this.pending;
      this.pending = undefined;
      p.resolve(r);
    });
    this.closed = new Promise((resolve) => {
      const end = (why: string): void => {
        this.ended ??= new Error(`the connection ended (${why}) with ${this.data.length} bytes of an incomplete response`);
        this.pending?.reject(this.ended);
        this.pending = undefined;
        resolve();
      };
      socket.on('error', (err) => end(err.message));
      socket.on('close', () => end('closed'));
    });
  }

  static open(port: number, host = '127.0.0.1'): Promise<KeptAliveConnection> {
    return new Promise((resolve, reject) => {
      const s = net.connect(port, host, () => {
        s.off('error', reject);
        resolve(new KeptAliveConnection(s));
      });
      s.on('error', reject);
    });
  }

  get(path: string): Promise<RawHttpResponse> {
    if (this.ended) return Promise.reject(this.ended);
    return new Promise((resolve, reject) => {
      this.pending = { resolve, reject };
      this.socket.write(`GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`);
    });
  }

  close(): void {
    this.socket.destroy();
  }
}
