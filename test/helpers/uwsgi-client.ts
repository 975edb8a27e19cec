/** A raw uwsgi client for tests: builds packets byte by byte and reads the whole response until close. */
import net from 'node:net';
import { parseResponses, type RawHttpResponse } from './http-raw.js';

export type Vars = Record<string, string>;

export function uwsgiPacket(vars: Vars, modifier1 = 0): Buffer {
  const parts: Buffer[] = [];
  for (const [k, v] of Object.entries(vars)) {
    const kb = Buffer.from(k, 'latin1');
    const vb = Buffer.from(v, 'latin1');
    const kl = Buffer.alloc(2);
    kl.writeUInt16LE(kb.length);
    const vl = Buffer.alloc(2);
    vl.writeUInt16LE(vb.length);
    parts.push(kl, kb, vl, vb);
  }
  const body = Buffer.concat(parts);
  const head = Buffer.alloc(4);
  head.writeUInt8(modifier1, 0);
  head.writeUInt16LE(body.length, 1);
  head.writeUInt8(0, 3);
  return Buffer.concat([head, body]);
}

export function getVars(path = '/', extra: Vars = {}): Vars {
  const [p, q] = path.split('?', 2);
  return {
    REQUEST_METHOD: 'GET',
    REQUEST_URI: path,
    PATH_INFO: p ?? '/',
    QUERY_STRING: q ?? '',
    SERVER_PROTOCOL: 'HTTP/1.1',
    SERVER_NAME: 'localhost',
    SERVER_PORT: '80',
    REMOTE_ADDR: '127.0.0.1',
    REMOTE_PORT: '40000',
    HTTP_HOST: 'localhost',
    ...extra,
  };
}

export type Address = string | { host: string; port: number };

function connect(addr: Address): net.Socket {
  return typeof addr === 'string' ? net.connect(addr) : net.connect(addr.port, addr.host);
}

/** Sends raw bytes (optionally half-closing) and resolves with everything received until the server closes. */
export function rawExchange(addr: Address, data: Buffer, opts: { end?: boolean; timeoutMs?: number } = {}): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const s = connect(addr);
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`no close from the server within ${opts.timeoutMs ?? 30000} ms; got ${Buffer.concat(chunks).length} bytes`));
    }, opts.timeoutMs ?? 30_000);
    s.on('connect', () => {
      s.write(data);
      if (opts.end) s.end();
    });
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ECONNRESET' || err.code === 'EPIPE') return; // treated as a close
      clearTimeout(timer);
      reject(err);
    });
    s.on('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks));
    });
  });
}

export interface ParsedResponse {
  statusLine: string;
  status: number;
  headers: Array<[string, string]>;
  body: Buffer;
}

export function parseResponse(raw: Buffer): ParsedResponse {
  const end = raw.indexOf('\r\n\r\n');
  if (end === -1) throw new Error(`no header block in response: ${JSON.stringify(raw.toString('latin1').slice(0, 200))}`);
  const lines = raw.subarray(0, end).toString('latin1').split('\r\n');
  const statusLine = lines[0]!;
  const headers = lines.slice(1).map((l) => {
    const i = l.indexOf(':');
    return [l.slice(0, i), l.slice(i + 1).trim()] as [string, string];
  });
  return { statusLine, status: Number(statusLine.split(' ')[1]), headers, body: raw.subarray(end + 4) };
}

export async function uwsgiRequest(addr: Address, vars: Vars, body?: Buffer): Promise<ParsedResponse> {
  const packet = uwsgiPacket(body ? { ...vars, CONTENT_LENGTH: String(body.length) } : vars);
  return parseResponse(await rawExchange(addr, body ? Buffer.concat([packet, body]) : packet));
}

/**
 * One connection to a uwsgi socket, several requests in turn (each sent once the response before it is whole):
 * every response, and the index of the request after which the server closed the connection (-1: it did not).
 */
export async function conversation(sock: string, requests: ReadonlyArray<{ vars: Vars; head?: boolean }>, waitMs = 30_000): Promise<{ responses: RawHttpResponse[]; closedAfter: number }> {
  const c = net.connect(sock);
  await new Promise((r) => c.once('connect', r));
  let data = Buffer.alloc(0);
  let closed = false;
  c.on('data', (d: Buffer) => (data = Buffer.concat([data, d])));
  c.on('close', () => (closed = true));
  const heads = new Set<number>();
  // The responses received whole: a last one still short of its Content-Length is not counted yet.
  const complete = (): RawHttpResponse[] => {
    const all = parseResponses(data, heads);
    const last = all[all.length - 1];
    if (last && !heads.has(all.length - 1) && last.headers.has('content-length') && last.body.length < Number(last.headers.get('content-length'))) all.pop();
    return all;
  };
  try {
    for (const [i, rq] of requests.entries()) {
      if (rq.head) heads.add(i);
      c.write(uwsgiPacket(rq.vars));
      for (let t = 0; t < waitMs / 20 && complete().length <= i && !closed; t++) await new Promise((r) => setTimeout(r, 20));
      if (closed) return { responses: complete(), closedAfter: i };
    }
    return { responses: complete(), closedAfter: -1 };
  } finally {
    c.destroy();
  }
}
