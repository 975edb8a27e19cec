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
