/**
 * The fast lane for plain HTTP/1.x: on a socket without TLS or HTTP/2, requests without a body are parsed here
 * (with node's own llhttp binding) and answered through light request and response objects instead of
 * node:http's IncomingMessage and ServerResponse, which cost ~9 µs of the ~28 µs node:http spends per request
 * on 2 cores (measured: llhttp over a raw socket answers in ~17 µs). The pipeline cannot tell the difference:
 *
 * - FastRequest has what the pipeline reads of a request (method, url, headers built by node's own rules,
 *   rawHeaders, versions, socket), and the stream of an empty body.
 * - FastResponse writes the head node:http would write (same header order, Date, Connection, Keep-Alive,
 *   Transfer-Encoding) and the body in one write when the response is `writeHead(...)` then `end(body)`,
 *   the case of every buffered upstream response and of tsgi-proxy's own pages. Any other use (write(),
 *   setHeader(), a filter's wrapped end, piping a file) turns it into a real ServerResponse on the socket,
 *   given what was done so far, and everything after goes to that: node:http's behaviour, unchanged.
 *
 * Anything else goes to node:http, which gets the connection from the start of that request on (its bytes
 * are put back in the socket) and keeps it: a request with a body or an Expect, an upgrade, CONNECT, an
 * HTTP/1.1 request without Host, anything llhttp refuses, a head that did not come whole in what was read.
 * So bodies, errors, limits and slow clients are node:http's as before, and only the common case is new.
 */
import { EventEmitter } from 'node:events';
import { IncomingMessage, ServerResponse, STATUS_CODES, type Server } from 'node:http';
import type { Socket } from 'node:net';
import { createRequire } from 'node:module';
import { httpDate } from './special.js';

interface Parser {
  initialize(type: number, resource: object, maxHeaderSize: number, lenient: number): void;
  execute(data: Buffer): number | Error;
  free(): void;
  close(): void;
  [callback: number]: unknown;
}
interface ParserClass {
  new (): Parser;
  REQUEST: number;
  kOnHeaders: number;
  kOnHeadersComplete: number;
  kOnBody: number;
  kOnMessageComplete: number;
  kLenientNone: number;
  kLenientAll: number;
}
// node:http's own modules (public since Node 0.x, used the same way by undici's tests and by exchange.ts).
const common = createRequire(import.meta.url)('_http_common') as {
  HTTPParser: ParserClass;
  methods: string[];
  _checkIsHttpToken(s: string): boolean;
  _checkInvalidHeaderChar(s: string): boolean;
  isLenient(): boolean;
};
const { HTTPParser, methods } = common;
const checkToken = common._checkIsHttpToken;
const badValue = common._checkInvalidHeaderChar;
const addHeaderLine = (IncomingMessage.prototype as unknown as { _addHeaderLine(name: string, value: string, dest: Record<string, unknown>): void })._addHeaderLine;

const HEAD_END = Buffer.from('\r\n\r\n');
const TE_CHUNKED = /(?:^|\W)chunked(?:$|\W)/i;
/** Bodies up to this size are copied behind the head (one write); larger ones go out beside it (writev). */
const COPY_BELOW = 16384;
/** Past this much unanswered pipelined data, the socket stops being read until the responses catch up. */
const MAX_BUFFERED = 65536;

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

export interface FastLaneOptions {
  maxHeaderSize: number;
  /** client_header_timeout: a connection that sends no request head within it is closed. */
  headersTimeoutMs: number;
  /** Called when a connection goes to node:http, with why (for the error log's debug level); null: not asked. */
  onHandOver: ((socket: Socket, why: string) => void) | null;
}

/** The fast lane of one node:http server: it takes the server's connections and hands them to node:http when it must. */
export class FastLane {
  private readonly nodeConnection: (socket: Socket) => void;
  readonly conns = new Set<FastConn>();
  private readonly parsers: Parser[] = [];
  private readonly lenient: number;

  constructor(readonly server: Server, readonly handler: Handler, readonly opts: FastLaneOptions) {
    // node:http's connection listener (its first); the lane calls it for a connection it hands over.
    this.nodeConnection = server.listeners('connection')[0] as (socket: Socket) => void;
    server.removeListener('connection', this.nodeConnection);
    server.prependListener('connection', (s: Socket) => this.conns.add(new FastConn(this, s)));
    const insecure = (server as { insecureHTTPParser?: boolean }).insecureHTTPParser;
    this.lenient = (insecure === undefined ? common.isLenient() : insecure) ? HTTPParser.kLenientAll : HTTPParser.kLenientNone;
  }

  parser(): Parser {
    const p = this.parsers.pop() ?? new HTTPParser();
    p.initialize(HTTPParser.REQUEST, {}, this.opts.maxHeaderSize, this.lenient);
    return p;
  }

  freeParser(p: Parser): void {
    p[HTTPParser.kOnHeaders] = p[HTTPParser.kOnHeadersComplete] = p[HTTPParser.kOnBody] = p[HTTPParser.kOnMessageComplete] = null;
    p.free();
    if (this.parsers.length < 256) this.parsers.push(p);
    else p.close();
  }

  handOver(socket: Socket): void {
    this.nodeConnection.call(this.server, socket);
  }

  /** Graceful stop: idle connections close now; busy ones close after their response (shouldKeepAlive off). */
  closeIdle(): void {
    for (const c of this.conns) c.closeIfIdle();
  }
}

/** What llhttp said of the head being parsed. */
interface Head {
  major: number;
  minor: number;
  headers: string[];
  method: number;
  url: string;
  upgrade: boolean;
  keepAlive: boolean;
}

class FastConn {
  private buf: Buffer | null = null;
  private busy = false;
  private gone = false;
  private clientEnded = false;
  private parser: Parser | null;
  private head: Head | null = null;
  private complete = false;
  private partHeaders: string[] | null = null;
  private partUrl = '';
  private served = 0;
  res: FastResponse | null = null;

  constructor(readonly lane: FastLane, readonly socket: Socket) {
    const p = (this.parser = lane.parser());
    p[HTTPParser.kOnHeaders] = (headers: string[], url: string) => {
      // More than llhttp's batch of header pairs: they come in parts before the head completes.
      this.partHeaders = this.partHeaders === null ? headers : this.partHeaders.concat(headers);
      this.partUrl += url;
    };
    p[HTTPParser.kOnHeadersComplete] = (major: number, minor: number, headers: string[] | undefined, method: number, url: string | undefined, _status: unknown, _message: unknown, upgrade: boolean, keepAlive: boolean) => {
      if (this.partHeaders !== null) {
        headers = headers === undefined ? this.partHeaders : this.partHeaders.concat(headers);
        url = this.partUrl + (url ?? '');
        this.partHeaders = null;
        this.partUrl = '';
      }
      this.head = { major, minor, headers: headers ?? [], method, url: url ?? '', upgrade, keepAlive };
      return 0;
    };
    p[HTTPParser.kOnBody] = () => {
      this.head = null; // a body: not this lane's
    };
    p[HTTPParser.kOnMessageComplete] = () => {
      this.complete = true;
    };
    socket.on('data', this.onData);
    socket.on('end', this.onEnd);
    socket.on('timeout', this.onTimeout);
    socket.on('error', this.onError);
    socket.on('close', this.onClose);
    if (lane.opts.headersTimeoutMs > 0) socket.setTimeout(lane.opts.headersTimeoutMs);
  }

  private readonly onData = (d: Buffer): void => {
    this.buf = this.buf === null ? d : Buffer.concat([this.buf, d]);
    if (!this.busy) this.next();
    else if (this.buf.length > MAX_BUFFERED) this.socket.pause();
  };

  private readonly onEnd = (): void => {
    this.clientEnded = true;
    if (!this.busy) this.next();
  };

  private readonly onTimeout = (): void => {
    // As node:http: a response that listens for its socket's timeout (res.setTimeout) decides; else it closes.
    if (this.res !== null && this.res.timedOut()) return;
    this.socket.destroy();
  };

  private readonly onError = (): void => {
    this.socket.destroy();
  };

  private readonly onClose = (): void => {
    this.gone = true;
    this.lane.conns.delete(this);
    this.releaseParser();
    const res = this.res;
    if (res !== null) {
      this.res = null;
      res.connectionClosed();
    }
  };

  private releaseParser(): void {
    if (this.parser !== null) {
      this.lane.freeParser(this.parser);
      this.parser = null;
    }
  }

  /** Serves the next complete request in what was read, or hands the connection over. */
  private next(): void {
    while (!this.busy && !this.gone) {
      const buf = this.buf;
      if (buf === null) break;
      const at = buf.indexOf(HEAD_END);
      if (at === -1) {
        this.handOver('a request head not complete in what was read');
        return;
      }
      const end = at + 4;
      const head = this.parse(end === buf.length ? buf : buf.subarray(0, end));
      if (typeof head === 'string') {
        this.handOver(head);
        return;
      }
      this.buf = end === buf.length ? null : buf.subarray(end);
      this.dispatch(head);
    }
    if (this.gone || this.busy) return;
    if (this.clientEnded) {
      // The client finished sending and everything it sent is answered.
      this.socket.end();
      return;
    }
    if (this.socket.isPaused()) this.socket.resume();
  }

  /** The head, if it is a request this lane serves; else why node:http must see it. */
  private parse(bytes: Buffer): Head | string {
    this.head = null;
    this.complete = false;
    const rc = this.parser!.execute(bytes);
    const h = this.head as Head | null;
    if (typeof rc !== 'number' || h === null) return 'a request head llhttp refused';
    if (h.upgrade || h.major !== 1) return 'an upgrade';
    const m = methods[h.method];
    if (m === undefined || m === 'CONNECT') return 'CONNECT';
    let host = false;
    const raw = h.headers;
    for (let i = 0; i < raw.length; i += 2) {
      const name = raw[i]!;
      const n = name.length;
      if (n === 4) {
        if (name.toLowerCase() === 'host') host = true;
      } else if (n === 14 || n === 17 || n === 6 || n === 7) {
        const lower = name.toLowerCase();
        // A body, an expectation or an upgrade: node:http's (this lane serves requests without a body).
        if (lower === 'content-length' || lower === 'transfer-encoding' || lower === 'expect' || lower === 'upgrade') return `a request with ${lower}`;
      }
    }
    // node:http answers an HTTP/1.1 request without Host itself (400, RFC 9112).
    if (h.minor === 1 && !host) return 'an HTTP/1.1 request without Host';
    if (!this.complete) return 'a request with a body';
    return h;
  }

  private dispatch(h: Head): void {
    const req = new FastRequest(this.socket, methods[h.method]!, h.url, h.major, h.minor, h.headers);
    const res = new FastResponse(this, req, h.keepAlive);
    this.busy = true;
    this.res = res;
    this.served++;
    this.lane.handler(req as unknown as IncomingMessage, res as unknown as ServerResponse);
  }

  /** From here on the connection is node:http's, from the start of the request in `buf`. */
  private handOver(why: string): void {
    const s = this.socket;
    this.lane.opts.onHandOver?.(s, why);
    this.lane.conns.delete(this);
    s.removeListener('data', this.onData);
    s.removeListener('end', this.onEnd);
    s.removeListener('timeout', this.onTimeout);
    s.removeListener('error', this.onError);
    s.removeListener('close', this.onClose);
    this.releaseParser();
    this.gone = true;
    const rest = this.buf;
    this.buf = null;
    // node:http then reads through 'data' events rather than natively: other 'data' listeners (stub_status
    // counting) keep seeing the bytes, and the bytes put back below are parsed first.
    const handle = (s as unknown as { _handle?: { _consumed?: boolean } })._handle;
    if (handle) handle._consumed = true;
    this.lane.handOver(s);
    if (this.clientEnded) {
      // The client has half-closed: its stream has ended and takes nothing back, so node:http is given the
      // bytes and the end as the socket gave them here.
      if (rest !== null) s.emit('data', rest);
      s.emit('end');
      return;
    }
    if (rest !== null) s.unshift(rest);
    if (s.isPaused()) s.resume();
  }

  /** The response in progress is complete (written, or failed with the socket). */
  responseDone(res: FastResponse, last: boolean): void {
    if (this.res !== res) return;
    this.res = null;
    this.busy = false;
    if (this.gone) return;
    if (last) {
      this.gone = true;
      this.socket.destroySoon();
      return;
    }
    this.next();
  }

  /**
   * Idle: between requests. A connection that has sent nothing yet is not idle (its request may be on the way;
   * node:http counts it as busy too): it is answered, with Connection: close, or times out.
   */
  closeIfIdle(): void {
    if (!this.busy && !this.gone && this.served > 0) this.socket.destroy();
  }
}

/** A request without a body, as the pipeline reads one. */
class FastRequest extends EventEmitter {
  readonly complete = true;
  readonly aborted = false;
  readonly upgrade = false;
  readonly readable = false;
  readonly readableEnded = true;
  readonly rawTrailers: string[] = [];
  readonly trailers: Record<string, string> = {};
  readonly httpVersion: string;
  private hdrs: Record<string, string | string[]> | null = null;

  constructor(
    readonly socket: Socket,
    readonly method: string,
    public url: string,
    readonly httpVersionMajor: number,
    readonly httpVersionMinor: number,
    readonly rawHeaders: string[],
  ) {
    super();
    this.httpVersion = httpVersionMinor === 1 && httpVersionMajor === 1 ? '1.1' : `${httpVersionMajor}.${httpVersionMinor}`;
  }

  get connection(): Socket {
    return this.socket;
  }

  /** Built on first use by node's own rules (duplicates dropped, joined or listed as IncomingMessage does). */
  get headers(): Record<string, string | string[]> {
    let h = this.hdrs;
    if (h === null) {
      h = this.hdrs = {};
      const raw = this.rawHeaders;
      for (let i = 0; i < raw.length; i += 2) addHeaderLine.call(this, raw[i]!, raw[i + 1]!, h);
    }
    return h;
  }

  set headers(h: Record<string, string | string[]>) {
    this.hdrs = h;
  }

  /** An empty body: its stream has ended, and a listener for that end hears it at once (next tick). */
  override on(event: string | symbol, listener: (...args: unknown[]) => void): this {
    if (event === 'end') process.nextTick(listener);
    else super.on(event, listener);
    return this;
  }

  override once(event: string | symbol, listener: (...args: unknown[]) => void): this {
    if (event === 'end') process.nextTick(listener);
    else super.once(event, listener);
    return this;
  }

  resume(): this {
    return this;
  }

  pause(): this {
    return this;
  }

  setTimeout(ms: number, cb?: () => void): this {
    this.socket.setTimeout(ms, cb);
    return this;
  }

  destroy(err?: Error): this {
    this.socket.destroy(err);
    return this;
  }
}

/** What may be set on a response before its head is made: copied to the real one, then forwarded there. */
const SETTINGS = ['shouldKeepAlive', 'useChunkedEncodingByDefault', 'sendDate', '_keepAliveTimeout', '_maxRequestsPerSocket', '_defaultKeepAlive', 'maxRequestsOnConnectionReached', 'strictContentLength'] as const;
/** What making the head decides: the real one makes its own, then these are read (and `_header` changed) there. */
const HEAD_STATE = ['_header', '_last', '_hasBody', 'chunkedEncoding'] as const;

/** Events of a real ServerResponse that reach the pipeline's listeners on the FastResponse it replaced. */
const FORWARDED = ['finish', 'close', 'drain', 'error', 'prefinish'] as const;

/**
 * A response that writes `writeHead(...)` then `end(body)` itself, as node:http would have, in one write;
 * anything else makes it a real ServerResponse (`real`) and forwards there.
 */
class FastResponse extends EventEmitter {
  private real: ServerResponse | null = null;
  private recordedHead: [number, string | undefined, unknown] | null = null;
  private code = 200;
  private message: string | undefined = undefined;
  shouldKeepAlive: boolean;
  useChunkedEncodingByDefault: boolean;
  sendDate = true;
  chunkedEncoding = false;
  _header: string | null = null;
  _last = false;
  _hasBody: boolean;
  _keepAliveTimeout = 0;
  _maxRequestsPerSocket = 0;
  _defaultKeepAlive = true;
  maxRequestsOnConnectionReached = false;
  strictContentLength = false;
  private ended = false;
  private flushed = false;
  private closed = false;
  /** After a response completed here: the stand-in become() gives (see there). */
  private after: ServerResponse | undefined;

  constructor(readonly conn: FastConn, readonly req: FastRequest, keepAlive: boolean) {
    super();
    this._hasBody = req.method !== 'HEAD';
    // As ServerResponse's constructor: HTTP/1.0 sends chunked only to a client that says it reads it.
    this.useChunkedEncodingByDefault = req.httpVersionMinor >= 1 || TE_CHUNKED.test(String(req.headers.te ?? ''));
    this.shouldKeepAlive = keepAlive;
  }

  get statusCode(): number {
    return this.real !== null ? this.real.statusCode : this.code;
  }

  set statusCode(code: number) {
    if (this.real !== null) this.real.statusCode = code;
    else this.code = code;
  }

  get statusMessage(): string | undefined {
    return this.real !== null ? this.real.statusMessage : this.message;
  }

  set statusMessage(message: string | undefined) {
    if (this.real !== null) this.real.statusMessage = message!;
    else this.message = message;
  }

  get socket(): Socket | null {
    return this.real !== null ? this.real.socket : this.flushed ? null : this.conn.socket;
  }

  get connection(): Socket | null {
    return this.socket;
  }

  get headersSent(): boolean {
    return this.real !== null ? this.real.headersSent : this._header !== null;
  }

  get writableEnded(): boolean {
    return this.real !== null ? this.real.writableEnded : this.ended;
  }

  get finished(): boolean {
    return this.writableEnded;
  }

  get writableFinished(): boolean {
    return this.real !== null ? this.real.writableFinished : this.flushed;
  }

  get destroyed(): boolean {
    return this.real !== null ? this.real.destroyed : this.closed;
  }

  get writable(): boolean {
    return this.real !== null ? this.real.writable : !this.ended && !this.closed;
  }

  get writableLength(): number {
    return this.real !== null ? this.real.writableLength : 0;
  }

  get writableNeedDrain(): boolean {
    return this.real !== null ? this.real.writableNeedDrain : false;
  }

  get writableHighWaterMark(): number {
    return this.real !== null ? this.real.writableHighWaterMark : this.conn.socket.writableHighWaterMark;
  }

  get writableCorked(): number {
    return this.real !== null ? this.real.writableCorked : 0;
  }

  writeHead(statusCode: number, reason?: unknown, headers?: unknown): this {
    if (this.real !== null || this._header !== null || !this.fastHead(statusCode, reason, headers)) {
      this.become().writeHead(statusCode, reason as string, headers as string[]);
    }
    return this;
  }

  /** The head as node:http's writeHead and _storeHeader make it, for a flat list of str headers; false when it cannot (node:http then does it, and throws what it throws). */
  private fastHead(statusCode: number, reason: unknown, obj: unknown): boolean {
    if (typeof reason !== 'string') {
      obj ??= reason;
      reason = undefined;
    }
    const code = statusCode | 0;
    if (code < 100 || code > 999) return false;
    if (obj !== undefined && !Array.isArray(obj)) return false;
    const list = (obj ?? []) as unknown[];
    if (list.length % 2 !== 0) return false;
    const message = (reason as string | undefined) ?? (this.statusMessage || STATUS_CODES[code] || 'unknown');
    if (badValue(message)) return false;
    if (code === 204 || code === 304 || (code >= 100 && code <= 199)) this._hasBody = false;
    let head = `HTTP/1.1 ${code} ${message}\r\n`;
    let connection = false;
    let contLen = false;
    let te = false;
    let date = false;
    for (let i = 0; i < list.length; i += 2) {
      const name = list[i];
      const value = list[i + 1];
      if (typeof name !== 'string' || typeof value !== 'string' || name === '' || !checkToken(name) || badValue(value)) return false;
      const n = name.length;
      if (n >= 4 && n <= 19) {
        const lower = name.toLowerCase();
        if (lower === 'connection') connection = true;
        else if (lower === 'content-length') contLen = true;
        else if (lower === 'transfer-encoding') te = true;
        else if (lower === 'date') date = true;
        else if (lower === 'content-disposition' || lower === 'expect' || lower === 'trailer' || lower === 'keep-alive') return false;
      }
    }
    // Headers that change how the body is framed: node:http's (rare on this path: the pipeline never sets them).
    if (connection || te) return false;
    for (let i = 0; i < list.length; i += 2) head += `${list[i] as string}: ${list[i + 1] as string}\r\n`;
    if (this.sendDate && !date) head += `Date: ${httpDate()}\r\n`;
    const sendKeepAlive = this.shouldKeepAlive && (contLen || this.useChunkedEncodingByDefault);
    if (sendKeepAlive && this.maxRequestsOnConnectionReached) head += 'Connection: close\r\n';
    else if (sendKeepAlive) {
      head += 'Connection: keep-alive\r\n';
      if (this._keepAliveTimeout && this._defaultKeepAlive) {
        head += `Keep-Alive: timeout=${Math.floor(this._keepAliveTimeout / 1000)}${~~this._maxRequestsPerSocket > 0 ? `, max=${this._maxRequestsPerSocket}` : ''}\r\n`;
      }
    } else {
      this._last = true;
      head += 'Connection: close\r\n';
    }
    if (!contLen) {
      if (!this._hasBody) this.chunkedEncoding = false;
      else if (!this.useChunkedEncodingByDefault) this._last = true;
      else {
        head += 'Transfer-Encoding: chunked\r\n';
        this.chunkedEncoding = true;
      }
    }
    this.statusCode = code;
    this.statusMessage = message;
    this._header = head + '\r\n';
    this.recordedHead = [statusCode, reason as string | undefined, obj];
    return true;
  }

  end(chunk?: unknown, encoding?: unknown, callback?: unknown): this {
    if (this.real === null && (this.closed || this.ended)) {
      // The client left, or the response is already complete: nothing more is written (node:http drops a
      // second end the same way; a callback hears of the finish).
      this.ended = true;
      const cb = typeof chunk === 'function' ? chunk : typeof encoding === 'function' ? encoding : callback;
      if (typeof cb === 'function' && !this.closed) {
        if (this.flushed) process.nextTick(cb as () => void);
        else this.once('finish', cb as () => void);
      }
      return this;
    }
    if (this.real !== null || this._header === null || (chunk !== undefined && chunk !== null && typeof chunk !== 'function' && !Buffer.isBuffer(chunk))) {
      (this.become().end as (...a: unknown[]) => unknown)(chunk, encoding, callback);
      return this;
    }
    if (typeof chunk === 'function') {
      callback = chunk;
      chunk = undefined;
    } else if (typeof encoding === 'function') callback = encoding;
    if (typeof callback === 'function') this.once('finish', callback as () => void);
    this.ended = true;
    const head = this._header;
    let body = this._hasBody ? (chunk as Buffer | undefined) : undefined;
    if (body !== undefined && body.length === 0) body = undefined;
    const socket = this.conn.socket;
    const chunked = this.chunkedEncoding;
    if (body === undefined) socket.write(chunked ? `${head}0\r\n\r\n` : head, 'latin1', this.written);
    else if (body.length <= COPY_BELOW) {
      // A small body is copied behind the head: one buffer, one write.
      socket.write(chunked ? joinHead(`${head}${body.length.toString(16)}\r\n`, body, '\r\n0\r\n\r\n') : joinHead(head, body, ''), this.written);
    } else {
      // A large one is not copied: head and body leave in one writev.
      socket.cork();
      socket.write(chunked ? `${head}${body.length.toString(16)}\r\n` : head, 'latin1');
      if (chunked) {
        socket.write(body);
        socket.write('\r\n0\r\n\r\n', 'latin1', this.written);
      } else socket.write(body, this.written);
      socket.uncork();
    }
    return this;
  }

  private readonly written = (err?: Error | null): void => {
    if (err || this.closed) return;
    this.flushed = true;
    this.emit('prefinish');
    this.emit('finish');
    // As node:http: what the head said decides (`_last`), not a shouldKeepAlive changed after it.
    const last = this._last;
    process.nextTick(() => this.close());
    this.conn.responseDone(this, last);
  };

  private close(): void {
    if (this.closed) return;
    this.closed = true;
    this.emit('close');
  }

  /** Its socket timed out: true when a listener of the real response took it (node:http's rule). */
  timedOut(): boolean {
    return this.real !== null && this.real.emit('timeout', this.conn.socket);
  }

  /** The connection closed before the response was written out (the client left). */
  connectionClosed(): void {
    if (this.real === null) this.close();
  }

  write(chunk: unknown, encoding?: unknown, callback?: unknown): boolean {
    // After the end, or once the client left: nothing is written (node:http refuses it too).
    if (this.real === null && (this.closed || this.ended)) return false;
    return (this.become().write as (...a: unknown[]) => boolean)(chunk, encoding, callback);
  }

  destroy(err?: Error): this {
    if (this.real !== null) this.real.destroy(err);
    else this.conn.socket.destroy(err);
    return this;
  }

  setHeader(name: string, value: number | string | readonly string[]): this {
    this.become().setHeader(name, value);
    return this;
  }

  getHeader(name: string): ReturnType<ServerResponse['getHeader']> {
    return this.become().getHeader(name);
  }

  getHeaders(): ReturnType<ServerResponse['getHeaders']> {
    return this.become().getHeaders();
  }

  getHeaderNames(): string[] {
    return this.become().getHeaderNames();
  }

  hasHeader(name: string): boolean {
    return this.become().hasHeader(name);
  }

  removeHeader(name: string): void {
    this.become().removeHeader(name);
  }

  flushHeaders(): void {
    this.become().flushHeaders();
  }

  addTrailers(headers: Parameters<ServerResponse['addTrailers']>[0]): void {
    this.become().addTrailers(headers);
  }

  writeContinue(cb?: () => void): void {
    this.become().writeContinue(cb);
  }

  writeProcessing(): void {
    this.become().writeProcessing();
  }

  setTimeout(ms: number, cb?: () => void): this {
    this.become().setTimeout(ms, cb);
    return this;
  }

  cork(): void {
    this.become().cork();
  }

  uncork(): void {
    this.become().uncork();
  }

  /** A ServerResponse with this one's head, never given the socket. */
  private detached(): ServerResponse {
    const r = new ServerResponse(this.req as unknown as IncomingMessage);
    this.replayHead(r);
    return r;
  }

  /** The writeHead call this response took, made again on `r`. */
  private replayHead(r: ServerResponse): void {
    const [code, reason, headers] = this.recordedHead!;
    if (reason !== undefined) r.writeHead(code, reason, headers as string[]);
    else r.writeHead(code, headers as string[]);
  }

  /**
   * The real ServerResponse, made on first need: it gets the socket, what was set here (and the head, if
   * writeHead was called, as node:http built it, with any change made to `_header` since), and its events
   * reach the listeners registered here. Its finish ends the request on the connection, as node:http's does.
   */
  private become(): ServerResponse {
    if (this.real !== null) return this.real;
    if (this.ended) {
      // Answered here already: what is asked of it now (a header read, say) goes to a response that is not
      // on the socket and sends nothing.
      return (this.after ??= this.detached());
    }
    const conn = this.conn;
    const real = new ServerResponse(this.req as unknown as IncomingMessage);
    const fields = real as unknown as Record<string, unknown>;
    const mine = this as unknown as Record<string, unknown>;
    for (const name of SETTINGS) fields[name] = mine[name];
    real.statusCode = this.code;
    if (this.message !== undefined) real.statusMessage = this.message;
    this.real = real;
    for (const ev of FORWARDED) {
      real.on(ev, (...args: unknown[]) => {
        // An 'error' nobody here listens for is dropped rather than thrown (it would end the worker).
        if (ev !== 'error' || this.listenerCount('error') > 0) this.emit(ev, ...args);
      });
    }
    real.on('finish', () => {
      real.detachSocket(conn.socket);
      // As node:http's server: what the head said decides (`_last`), as for the responses written here.
      const last = (real as unknown as { _last: boolean })._last;
      process.nextTick(() => {
        // As node:http's server does after a response: it is closed (the socket closing first closes it too).
        const r = real as unknown as { _closed: boolean; destroyed: boolean };
        if (!r._closed) {
          r._closed = true;
          r.destroyed = true;
          real.emit('close');
        }
      });
      conn.responseDone(this, last);
    });
    // node:http's server tells a response waiting for room (write() returned false) that the socket drained.
    const onDrain = (): void => {
      if (real.writableNeedDrain) {
        (real as unknown as Record<symbol, boolean>)[needDrainKey(real)] = false;
        real.emit('drain');
      }
    };
    conn.socket.on('drain', onDrain);
    real.once('finish', () => conn.socket.removeListener('drain', onDrain));
    real.once('close', () => conn.socket.removeListener('drain', onDrain));
    real.assignSocket(conn.socket);
    if (this.recordedHead !== null) {
      const built = this._header;
      this.replayHead(real);
      fields._header = built;
    }
    // From now on these are the real response's: what the pipeline sets (shouldKeepAlive, `_header`...) or reads
    // reaches it.
    for (const name of [...SETTINGS, ...HEAD_STATE]) {
      Object.defineProperty(this, name, { get: () => fields[name], set: (v: unknown) => (fields[name] = v), configurable: true, enumerable: true });
    }
    return real;
  }
}

let kNeedDrain: symbol | undefined;
/** node:http's private flag behind writableNeedDrain, which its server clears when it emits 'drain'. */
function needDrainKey(res: ServerResponse): symbol {
  kNeedDrain ??= Object.getOwnPropertySymbols(res).find((s) => s.description === 'kNeedDrain');
  if (kNeedDrain === undefined) throw new Error('node:http has no kNeedDrain: the fast lane needs updating for this Node');
  return kNeedDrain;
}

/** The head (latin1) and the body in one buffer, and an ending after them. */
function joinHead(head: string, body: Buffer, tail: string): Buffer {
  const out = Buffer.allocUnsafe(head.length + body.length + tail.length);
  out.write(head, 0, 'latin1');
  body.copy(out, head.length);
  if (tail.length !== 0) out.write(tail, head.length + body.length, 'latin1');
  return out;
}
