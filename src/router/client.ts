/**
 * One client connection of the HTTP router: Node's own llhttp binding (the parser node:http uses) reads the
 * requests, each request is received whole before it is handed to the link pool, and the responses go back in
 * the order the requests came (pipelining). Requests and responses are plain objects and strings written
 * straight to the socket: none of node:http's IncomingMessage/ServerResponse machinery, which cost the router
 * more than the parsing itself.
 *
 * Per connection: a queue of requests. Only the first is ever being answered; the ones behind it wait
 * (parsed, bodies received) until it is done. An answer the router gives itself (400, 413, 431, 503...) is a
 * request of the queue too, so it keeps its place in the order.
 */
import { STATUS_CODES } from 'node:http';
import { hostname } from 'node:os';
import { performance } from 'node:perf_hooks';
import type { Socket } from 'node:net';
import { nativeHandle, setReading, touchIdleTimer } from '../types/socket-internals.js';
import { HTTPParser, _checkInvalidHeaderChar, _checkIsHttpToken, methods } from 'node:_http_common';
import type { HeaderEdit } from '../config/resolve.js';
import type { StaticFile, StaticFiles } from '../static/files.js';
import { staticHead } from '../static/files.js';
import { ctime } from '../workers/node/log.js';
import type { Exchange } from './links.js';
import { HOP_BY_HOP, buildVars, decodePath, stripMapped, type ListenerInfo, type PeerInfo, type RequestHead } from './vars.js';

/** What a connection needs from the router that owns it. */
export interface RouterContext {
  readonly listener: ListenerInfo;
  readonly limitPost: number;
  readonly bufferSize: number;
  readonly log: (line: string) => void;
  /** Queues a complete request for a worker; false when the queue is full. */
  submit(ex: Exchange): boolean;
  withdraw(ex: Exchange): void;
  /** The `Date: ...\r\n` line of the current second. */
  dateLine(): string;
  /** The router is stopping: finish what was received, then close. */
  readonly closing: boolean;
  /** Every request belongs to a connection, so the graceful stop only waits for the connections to close. */
  connectionClosed(conn: ClientConnection): void;
  /** static-map and friends, when configured: files the router sends itself. */
  readonly staticFiles: StaticFiles | undefined;
  /** Writes a request line to the log (requests the router answers from a static file). */
  logRequest(line: string, status: number, bodyBytes: number, usec: number): void;
  readonly logMicros: boolean;
  /** add-header / del-header for the static files the router sends (the workers apply them to the app's). */
  readonly headers: HeaderEdit | undefined;
}

const kOnHeaders = HTTPParser.kOnHeaders;
const kOnHeadersComplete = HTTPParser.kOnHeadersComplete;
const kOnBody = HTTPParser.kOnBody;
const kOnMessageComplete = HTTPParser.kOnMessageComplete;
const kOnMessageBegin = HTTPParser.kOnMessageBegin;
const kOnExecute = HTTPParser.kOnExecute;


/** Longest request head llhttp accepts; the uwsgi packet (buffer-size) is the real limit, checked per request. */
const MAX_HEADER_SIZE = 65535;
/** Parsed requests a connection may hold behind the one being answered before the router stops reading it. */
const PIPELINE_LIMIT = 32;
/** A response larger than this waiting for a slow client pauses the worker's link (back-pressure). */
const CLIENT_BUFFER_LIMIT = 1 << 20;
/** Bodies up to this size are copied next to the head so that the response goes out in one write. */
const COALESCE_LIMIT = 16384;

/** An answer the router writes itself: a short text body, the connection kept or closed. */
function answerText(status: number, close: boolean): string {
  const reason = STATUS_CODES[status] ?? 'Error';
  const body = `${status} ${reason}\n`;
  return `HTTP/1.1 ${status} ${reason}\r\nContent-Type: text/plain\r\nContent-Length: ${body.length}\r\n${close ? 'Connection: close\r\n' : ''}\r\n${body}`;
}

/** What the router does with a response header an app sent, cached by the exact name the app used. */
const enum HeaderKind {
  Plain,
  ContentLength,
  /** About the connection (PEP 3333 forbids them to apps): dropped, the router frames the response. */
  HopByHop,
  /** Not an HTTP token: the response cannot be sent. */
  Invalid,
}
const headerKinds = new Map<string, HeaderKind>();
function headerKind(name: string): HeaderKind {
  let kind = headerKinds.get(name);
  if (kind !== undefined) return kind;
  const lower = name.toLowerCase();
  if (!_checkIsHttpToken(name)) kind = HeaderKind.Invalid;
  else if (lower === 'content-length') kind = HeaderKind.ContentLength;
  else if (HOP_BY_HOP.has(lower)) kind = HeaderKind.HopByHop;
  else kind = HeaderKind.Plain;
  if (headerKinds.size < 1024) headerKinds.set(name, kind);
  return kind;
}

const NO_PAYLOAD: readonly Buffer[] = Object.freeze([]);

const enum Stage {
  /** In the connection's queue: being received, or waiting for the requests before it. */
  Queued,
  /** Given to the link pool: waiting for a worker or being served. */
  Dispatched,
  Done,
}

/** One request of a connection, and (as the link pool's Exchange) the writer of its response. */
export class RouterRequest implements Exchange, RequestHead {
  /** Set when the request is dispatched; until then the shared empty list (no allocation per request). */
  payload: readonly Buffer[] = NO_PAYLOAD;
  stage = Stage.Queued;
  /** Received completely (headers and body). */
  complete = false;
  /** The body received so far. */
  received: Buffer[] | undefined;
  bodyLength = 0;
  host: string | undefined;
  contentType: string | undefined;
  framed = false;
  declaredLength = -1;
  needContinue = false;
  /** The static mounts were looked at for this request (it is not looked up twice). */
  staticChecked = false;
  /** An answer from the router itself instead of the app (the raw response), and whether it closes. */
  local: string | undefined;
  closeAfter = false;

  // The response.
  private headPending: string | undefined;
  /** The first body chunk, kept to go out with the head. */
  private held: Buffer | undefined;
  private headWritten = false;
  private chunked = false;
  private bodiless = false;
  private declared = -1;
  private sent = 0;

  constructor(
    private readonly conn: ClientConnection,
    readonly method: string,
    readonly url: string,
    readonly protocol: string,
    readonly http11: boolean,
    readonly rawHeaders: string[],
    /** The client allows the connection to stay open after this request. */
    readonly keepAlive: boolean,
  ) {}

  /** The value of a request header (the first, by lower-case name). */
  header(name: string): string | undefined {
    const h = this.rawHeaders;
    for (let i = 0; i < h.length; i += 2) if (h[i]!.length === name.length && h[i]!.toLowerCase() === name) return h[i + 1];
    return undefined;
  }

  /** The router answers this request itself; the connection closes after it when `close` or when it must anyway. */
  answerLocally(status: number, close: boolean): void {
    if (!close && !(this.keepAlive && this.conn.mayKeepAlive(this))) close = true;
    this.local = answerText(status, close);
    this.closeAfter = close;
  }

  bindFlow(pause: () => void, resume: () => void): void {
    this.conn.bindFlow(pause, resume);
  }

  head(status: string, headers: string[]): void {
    if (this.stage !== Stage.Dispatched) return;
    const code = (status.charCodeAt(0) - 48) * 100 + (status.charCodeAt(1) - 48) * 10 + (status.charCodeAt(2) - 48);
    if (!(code >= 100 && code <= 999) || (status.length > 3 && status.charCodeAt(3) !== 32) || _checkInvalidHeaderChar(status)) {
      return this.badHead(`status line ${JSON.stringify(status)}`);
    }
    let head = `HTTP/1.1 ${status}\r\n`;
    let declared = -1;
    for (let i = 0; i < headers.length; i += 2) {
      const name = headers[i]!;
      const value = headers[i + 1]!;
      const kind = headerKind(name);
      if (kind === HeaderKind.HopByHop) continue;
      if (kind === HeaderKind.Invalid || _checkInvalidHeaderChar(value)) return this.badHead(`header ${JSON.stringify(name)}`);
      if (kind === HeaderKind.ContentLength) {
        declared = Number(value);
        if (!Number.isSafeInteger(declared) || declared < 0 || value.length === 0) return this.badHead(`Content-Length ${JSON.stringify(value)}`);
      }
      head += `${name}: ${value}\r\n`;
    }
    const bodiless = this.method === 'HEAD' || code < 200 || code === 204 || code === 304;
    let keep = this.keepAlive && this.conn.mayKeepAlive(this);
    if (declared >= 0 || bodiless) {
      // Framed by Content-Length, or no body at all.
    } else if (this.http11) {
      this.chunked = true;
      head += 'Transfer-Encoding: chunked\r\n';
    } else {
      // HTTP/1.0 and no length: the end of the body is the end of the connection.
      keep = false;
    }
    head += this.conn.ctx.dateLine();
    if (!keep) head += 'Connection: close\r\n';
    else if (!this.http11) head += 'Connection: keep-alive\r\n';
    this.headPending = head + '\r\n';
    this.closeAfter = !keep;
    this.bodiless = bodiless;
    this.declared = declared;
  }

  private badHead(what: string): void {
    this.conn.ctx.log(`the app sent a response ${what} HTTP cannot carry for ${this.method} ${this.url}; answered 502`);
    this.answerLocally(502, false);
  }

  body(chunk: Buffer): void {
    if (this.stage !== Stage.Dispatched || this.local !== undefined) return;
    this.sent += chunk.length;
    if (this.bodiless || this.conn.socket.destroyed) return;
    if (this.headPending !== undefined && this.held === undefined && chunk.length <= COALESCE_LIMIT) {
      // Held until the next frame (END, usually in the same read): the head and this chunk then go out in one
      // write, after the link has been given its next request.
      this.held = chunk;
      return;
    }
    this.flushHead(false);
    const socket = this.conn.socket;
    let ok: boolean;
    if (this.chunked) {
      socket.cork();
      socket.write(`${chunk.length.toString(16)}\r\n`, 'latin1');
      socket.write(chunk);
      ok = socket.write('\r\n', 'latin1');
      socket.uncork();
    } else ok = socket.write(chunk);
    if (!ok && socket.writableLength > CLIENT_BUFFER_LIMIT) this.conn.pauseLink();
  }

  /** Writes the head, with the chunk held back (framed) and, for the last write of a chunked body, its end. */
  private flushHead(last: boolean): void {
    const head = this.headPending;
    if (head === undefined) return;
    this.headPending = undefined;
    this.headWritten = true;
    const held = this.held;
    this.held = undefined;
    let prefix = head;
    let suffix = '';
    if (this.chunked) {
      if (held !== undefined) {
        prefix += `${held.length.toString(16)}\r\n`;
        suffix = '\r\n';
      }
      if (last) suffix += '0\r\n\r\n';
    }
    const socket = this.conn.socket;
    if (socket.destroyed) return;
    const n = held === undefined ? 0 : held.length;
    const buf = Buffer.allocUnsafe(prefix.length + n + suffix.length);
    buf.write(prefix, 0, 'latin1');
    if (held !== undefined) held.copy(buf, prefix.length);
    if (suffix.length > 0) buf.write(suffix, prefix.length + n, 'latin1');
    if (!socket.write(buf) && socket.writableLength > CLIENT_BUFFER_LIMIT) this.conn.pauseLink();
  }

  end(): void {
    if (this.stage !== Stage.Dispatched) return;
    if (this.local !== undefined) return this.conn.finish(this);
    if (this.declared >= 0 && this.sent !== this.declared && !this.bodiless) {
      // The app promised another length: the client would wait forever or read garbage.
      this.conn.ctx.log(`the app declared Content-Length ${this.declared} but sent ${this.sent} bytes for ${this.method} ${this.url}; connection closed`);
      this.conn.socket.destroy();
      return;
    }
    if (!this.headWritten && this.headPending === undefined) {
      // END without HEAD: the link protocol was not followed.
      this.answerLocally(502, false);
      return this.conn.finish(this);
    }
    if (this.headPending !== undefined) this.flushHead(true);
    else if (this.chunked && !this.conn.socket.destroyed) this.conn.socket.write('0\r\n\r\n', 'latin1');
    this.conn.finish(this);
  }

  fail(why: 'abort' | 'worker-died'): void {
    if (this.stage !== Stage.Dispatched) return;
    if (this.headWritten) {
      // Part of the response is out: the only honest end is a cut connection.
      this.conn.socket.destroy();
      return;
    }
    if (why === 'worker-died') this.conn.ctx.log(`worker died while serving ${this.method} ${this.url}; answered 502`);
    this.answerLocally(502, false);
    this.conn.finish(this);
  }
}

export class ClientConnection implements PeerInfo {
  readonly remoteAddr: string;
  readonly remotePort: string;
  readonly localAddr: string;
  private readonly parser = new HTTPParser();
  private readonly queue: RouterRequest[] = [];
  /** The request whose head or body is being received. */
  private current: RouterRequest | undefined;
  /** Header pairs and URL llhttp handed over before the head was complete (long or many headers). */
  private partialHeaders: string[] = [];
  private partialUrl = '';
  /** Bytes of a request have arrived and its message is not complete yet. */
  private inMessage = false;
  /** When the head of the request being received began to arrive (router clock, ms); 0 when not in a head. */
  headStart = 0;
  /** Nothing more is read: a parse error, a request that closes, or an upgrade. */
  private stopped = false;
  private clientEnded = false;
  private readingPaused = false;
  /** The parser reads the socket's handle directly (see the constructor); false once it gave the reads back. */
  private consumed = false;
  private linkPause: (() => void) | undefined;
  private linkResume: (() => void) | undefined;
  private linkPaused = false;

  constructor(
    readonly socket: Socket,
    readonly ctx: RouterContext,
    /** The client's idle limit, and the longest a request head may take to arrive. */
    readonly timeoutMs: number,
    /** https with a client certificate: HTTPS_DN and friends, added to every request's vars. */
    readonly certVars?: { keys: string[]; values: string[] },
  ) {
    this.remoteAddr = stripMapped(socket.remoteAddress);
    this.remotePort = socket.remotePort === undefined ? '' : String(socket.remotePort);
    this.localAddr = stripMapped(socket.localAddress);
    socket.setNoDelay(true);
    const parser = this.parser;
    parser.initialize(HTTPParser.REQUEST, {}, MAX_HEADER_SIZE, HTTPParser.kLenientNone);
    parser[kOnHeaders] = (headers: string[], url: string) => {
      for (let i = 0; i < headers.length; i++) this.partialHeaders.push(headers[i]!);
      this.partialUrl += url;
    };
    parser[kOnHeadersComplete] = (major: number, minor: number, headers: string[] | undefined, method: number, url: string | undefined, _s: unknown, _m: unknown, upgrade: boolean, keepAlive: boolean) =>
      this.onHead(major, minor, headers, method, url, upgrade, keepAlive);
    parser[kOnBody] = (chunk: Buffer) => this.onBody(chunk);
    parser[kOnMessageComplete] = () => this.onMessageComplete();
    parser[kOnMessageBegin] = () => this.onMessageBegin();
    // Bytes go from the socket's handle straight into llhttp, as in node:http: no Buffer, stream push or
    // 'data' event per read, which was a fifth of the router's CPU per request. The 'data' listener still
    // keeps the stream flowing (so 'end' is emitted) and reads anything after the parser gave the handle back.
    socket.on('data', (d: Buffer) => this.onData(d));
    // A TLS socket's handle carries encrypted bytes: its plaintext only comes through the stream ('data').
    const handle = ctx.listener.https ? null : nativeHandle(socket);
    if (handle !== null) {
      parser[kOnExecute] = (r: number | Error) => this.onExecute(r);
      parser.consume(handle);
      this.consumed = true;
    }
    socket.on('end', () => this.onEnd());
    socket.on('error', () => {
      /* reported by close */
    });
    socket.on('close', () => this.onClose());
    socket.on('drain', () => this.resumeLink());
    socket.setTimeout(timeoutMs, () => this.onTimeout());
  }

  // ---- receiving ----

  private onData(data: Buffer): void {
    if (this.stopped) return;
    if (!this.inMessage) this.onMessageBegin();
    const r = this.parser.execute(data);
    if (typeof r !== 'number') this.parseError(r as Error & { code?: string; reason?: string });
  }

  /** After each read the parser took from the handle: what execute() would have returned. */
  private onExecute(r: number | Error): void {
    touchIdleTimer(this.socket);
    if (typeof r !== 'number') this.parseError(r as Error & { code?: string; reason?: string });
    // Nothing more is parsed on a stopped connection: what still arrives goes to onData, which drops it.
    if (this.stopped) this.unconsume();
  }

  private onMessageBegin(): void {
    this.inMessage = true;
    if (this.headStart === 0) this.headStart = clock.now;
  }

  private unconsume(): void {
    if (!this.consumed) return;
    this.consumed = false;
    this.parser.unconsume();
    if (this.readingPaused) this.socket.pause();
  }

  /** Stops (or restarts) reading the client; TCP holds what it sends meanwhile. */
  private pauseReading(): void {
    this.readingPaused = true;
    setReading(this.socket, this.consumed, false);
  }

  private resumeReading(): void {
    this.readingPaused = false;
    setReading(this.socket, this.consumed, true);
  }

  private onHead(major: number, minor: number, headers: string[] | undefined, methodIndex: number, url: string | undefined, upgrade: boolean, keepAlive: boolean): number {
    if (headers === undefined) {
      headers = this.partialHeaders;
      this.partialHeaders = [];
    }
    if (url === undefined) {
      url = this.partialUrl;
      this.partialUrl = '';
    }
    this.headStart = 0;
    if (this.stopped) return 0;
    const method = methods[methodIndex] ?? 'GET';
    const http11 = major === 1 && minor === 1;
    const req = new RouterRequest(this, method, url, http11 ? 'HTTP/1.1' : `HTTP/${major}.${minor}`, http11, headers, keepAlive && !upgrade);
    this.current = req;
    this.queue.push(req);
    let expect: string | undefined;
    let hasHost = false;
    for (let i = 0; i < headers.length; i += 2) {
      const name = headers[i]!;
      // Only a few names matter here; compare lengths first so that most headers cost one check.
      switch (name.length) {
        case 4:
          if (name.toLowerCase() === 'host') {
            req.host ??= headers[i + 1];
            hasHost = true;
          }
          break;
        case 6:
          if (name.toLowerCase() === 'expect') expect = headers[i + 1]!.toLowerCase();
          break;
        case 12:
          if (name.toLowerCase() === 'content-type') req.contentType ??= headers[i + 1];
          break;
        case 14:
          if (name.toLowerCase() === 'content-length') {
            req.framed = true;
            req.declaredLength = Number(headers[i + 1]);
          }
          break;
        case 17:
          if (name.toLowerCase() === 'transfer-encoding') req.framed = true;
          break;
      }
    }
    if (upgrade && method === 'CONNECT') {
      // A tunnel, which an application server does not offer: the connection ends after what came before.
      this.ctx.log(`client ${this.remoteAddr}:${this.remotePort} asked for CONNECT ${url}; connection closed`);
      req.local = '';
      req.closeAfter = true;
      return this.stop(req);
    }
    if (http11 && !hasHost) {
      this.ctx.log(`bad HTTP request from ${this.remoteAddr}:${this.remotePort}: HTTP/1.1 ${method} ${url} without a Host header; answered 400`);
      req.answerLocally(400, true);
      return this.stop(req);
    }
    const limit = this.ctx.limitPost;
    if (limit > 0 && req.declaredLength > limit) {
      this.ctx.log(`request body of ${req.declaredLength} bytes for ${method} ${url} is over limit-post ${limit}; answered 413`);
      req.answerLocally(413, true);
      return this.stop(req);
    }
    if (expect !== undefined) {
      if (expect !== '100-continue') {
        this.ctx.log(`request ${method} ${url} expects ${JSON.stringify(expect)}, which is not supported; answered 417`);
        req.answerLocally(417, true);
        return this.stop(req);
      }
      if (this.queue.length === 1) this.socket.write('HTTP/1.1 100 Continue\r\n\r\n', 'latin1');
      else req.needContinue = true;
    }
    if (upgrade) {
      // Another protocol would follow this request; the app answers it as plain HTTP and the connection ends.
      this.stopped = true;
    }
    return 0;
  }

  /** Stops reading: `req` is the last request of this connection. Returns what llhttp's callback must. */
  private stop(req: RouterRequest): number {
    this.stopped = true;
    req.complete = true;
    this.current = undefined;
    this.inMessage = false;
    if (this.queue[0] === req) this.start(req);
    return 0;
  }

  private onBody(chunk: Buffer): void {
    const req = this.current;
    if (req === undefined) return;
    req.bodyLength += chunk.length;
    const limit = this.ctx.limitPost;
    if (limit > 0 && req.bodyLength > limit) {
      this.ctx.log(`request body of ${req.bodyLength} bytes (so far) for ${req.method} ${req.url} is over limit-post ${limit}; answered 413`);
      req.received = undefined;
      req.answerLocally(413, true);
      this.stop(req);
      return;
    }
    (req.received ??= []).push(chunk);
  }

  private onMessageComplete(): void {
    const req = this.current;
    this.inMessage = false;
    this.headStart = 0;
    if (req === undefined || req.complete) return;
    req.complete = true;
    this.current = undefined;
    if (this.queue[0] === req) this.start(req);
    else if (this.queue.length > PIPELINE_LIMIT && !this.readingPaused) {
      // The client sends requests faster than they are answered: let TCP hold the rest.
      this.pauseReading();
    }
  }

  private parseError(err: Error & { code?: string; reason?: string }): void {
    if (this.stopped) return;
    this.stopped = true;
    const from = `${this.remoteAddr}:${this.remotePort}`;
    if (err.code === 'HPE_CLOSED_CONNECTION') {
      // Bytes after a request that closes the connection: that request is still answered, the rest ignored.
      this.ctx.log(`client ${from} sent data after a request that closes the connection; ignored`);
      return;
    }
    const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : 400;
    this.ctx.log(`bad HTTP request from ${from}: ${err.code ?? ''} ${err.reason ?? err.message}; answered ${status}`);
    this.refuse(status);
  }

  /**
   * Answers `status` and closes, after the requests before it: to the request being received, or, between
   * requests, to the one that was starting.
   */
  private refuse(status: number): void {
    let req = this.current;
    if (req === undefined) {
      req = new RouterRequest(this, 'GET', '', 'HTTP/1.1', true, [], false);
      this.queue.push(req);
    }
    req.received = undefined;
    req.answerLocally(status, true);
    this.stop(req);
  }

  private onEnd(): void {
    this.clientEnded = true;
    // A request cut off by the end of the stream is dropped; the ones received whole are still answered.
    const req = this.current;
    if (req !== undefined && !req.complete) {
      this.current = undefined;
      this.queue.pop();
    }
    this.stopped = true;
    if (this.queue.length === 0) this.socket.end();
  }

  private onTimeout(): void {
    const first = this.queue[0];
    // Waiting for the app is not the client's idleness (harakiri is the app's limit).
    if (first !== undefined && first.stage === Stage.Dispatched && !this.linkPaused) return;
    if (this.inMessage || this.queue.length > 0) {
      const what = first === undefined ? 'a request' : `${first.method} ${first.url}`;
      this.ctx.log(`client ${this.remoteAddr}:${this.remotePort} stalled during ${what}; closed`);
    }
    this.socket.destroy();
  }

  /** Called every second by the router: a head that takes longer than the timeout to arrive is refused. */
  headTimedOut(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.ctx.log(`client ${this.remoteAddr}:${this.remotePort} took too long to send a request head; answered 408`);
    this.refuse(408);
  }

  // ---- answering ----

  /** The first request of the queue can be answered: it is sent to a worker or answered by the router. */
  private start(req: RouterRequest): void {
    if (req.local !== undefined) return this.writeLocal(req);
    if (!req.complete) {
      if (req.needContinue) {
        req.needContinue = false;
        this.socket.write('HTTP/1.1 100 Continue\r\n\r\n', 'latin1');
      }
      return;
    }
    if (this.ctx.listener.redirectHttps) return this.redirectToHttps(req);
    const files = this.ctx.staticFiles;
    if (files !== undefined && !req.staticChecked) {
      req.staticChecked = true;
      const q = req.url.indexOf('?');
      const path = decodePath(q === -1 ? req.url : req.url.slice(0, q));
      if (files.mayServe(req.method, path)) return void this.serveStatic(req, files, path);
    }
    const body = req.received;
    const length = req.bodyLength;
    const vars = buildVars(req, this, this.ctx.listener, length);
    const bufferSize = this.ctx.bufferSize;
    if (vars === undefined || vars.length - 4 > bufferSize) {
      const size = vars === undefined ? 'over 65535' : String(vars.length - 4);
      this.ctx.log(`request ${req.method} ${req.url} has ${size} bytes of headers and vars, over buffer-size ${bufferSize} (raise buffer-size if it is legitimate); answered 431`);
      req.answerLocally(431, true);
      return this.writeLocal(req);
    }
    if (body === undefined) req.payload = [vars];
    else if (body.length === 1 && length < 65536) req.payload = [Buffer.concat([vars, body[0]!])];
    else req.payload = [vars, ...body];
    req.received = undefined;
    req.stage = Stage.Dispatched;
    if (!this.ctx.submit(req)) {
      req.stage = Stage.Queued;
      this.ctx.log(`requests already wait for a worker; ${req.method} ${req.url} answered 503`);
      req.answerLocally(503, false);
      return this.writeLocal(req);
    }
  }

  /**
   * http-to-https: a 301 to the same URI over https, on the host the client named without its port (the https
   * port is then 443), or this machine's name without one, as uWSGI answers; the connection closes after it.
   */
  private redirectToHttps(req: RouterRequest): void {
    let host = req.host ?? '';
    if (host.startsWith('[')) host = host.slice(0, host.indexOf(']') + 1);
    else if (host.includes(':')) host = host.slice(0, host.indexOf(':'));
    if (!host) host = hostname();
    req.local = `HTTP/1.1 301 Moved Permanently\r\nLocation: https://${host}${req.url}\r\nContent-Length: 0\r\n${this.ctx.dateLine()}Connection: close\r\n\r\n`;
    req.closeAfter = true;
    this.writeLocal(req);
  }

  /** Answers from a static file when one is found; otherwise the request goes on to a worker. */
  private async serveStatic(req: RouterRequest, files: StaticFiles, path: string): Promise<void> {
    const started = Date.now();
    const t0 = performance.now();
    let file: StaticFile | undefined;
    try {
      file = await files.find(path, req.url, req.header('accept-encoding'));
    } catch (err) {
      this.ctx.log(`static lookup of ${path} failed: ${(err as Error).message}; passed to the app`);
    }
    if (req.stage === Stage.Done) {
      // The connection closed meanwhile.
      await file?.handle.close();
      return;
    }
    if (file === undefined) return this.start(req);
    const { status, headers } = staticHead(file, req.header('if-modified-since'));
    const keep = req.keepAlive && this.mayKeepAlive(req);
    req.closeAfter = !keep;
    let lines = '';
    const edit = this.ctx.headers;
    for (let i = 0; i < headers.length; i += 2) {
      if (edit !== undefined && edit.del.includes(headers[i]!.toLowerCase())) continue;
      lines += `${headers[i]}: ${headers[i + 1]}\r\n`;
    }
    if (edit !== undefined) for (const [k, v] of edit.add) lines += `${k}: ${v}\r\n`;
    const head = `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\n${lines}${this.ctx.dateLine()}${keep ? (req.http11 ? '' : 'Connection: keep-alive\r\n') : 'Connection: close\r\n'}\r\n`;
    const bodySize = status === 200 && req.method !== 'HEAD' ? file.size : 0;
    let over = false;
    const done = (ok: boolean): void => {
      if (over) return;
      over = true;
      void file!.handle.close().catch(() => undefined);
      if (!ok) {
        this.socket.destroy();
        return;
      }
      const usec = Math.floor((performance.now() - t0) * 1000);
      const took = this.ctx.logMicros ? `${usec} micros` : `${Math.floor(usec / 1000)} msecs`;
      this.ctx.logRequest(`[pid: ${process.pid}|app: -|req: -/-] ${this.remoteAddr} () {0 vars in 0 bytes} [${ctime(started)}] ${req.method} ${req.url} => generated ${bodySize} bytes in ${took} (${req.protocol} ${status}) static file`, status, bodySize, usec);
      this.finish(req);
    };
    const socket = this.socket;
    if (socket.destroyed) return done(true);
    if (bodySize <= COALESCE_LIMIT * 4) {
      // Small files: head and bytes in one write.
      const headLength = Buffer.byteLength(head, 'latin1');
      const buf = Buffer.allocUnsafe(headLength + bodySize);
      buf.write(head, 0, 'latin1');
      let got = 0;
      try {
        while (got < bodySize) {
          const { bytesRead } = await file.handle.read(buf, headLength + got, bodySize - got, got);
          if (bytesRead === 0) break;
          got += bytesRead;
        }
      } catch {
        got = -1;
      }
      // A file that shrank since its size was read cannot be answered with the length already decided.
      if (got !== bodySize) return done(false);
      if (!socket.destroyed) socket.write(buf);
      return done(true);
    }
    socket.write(head, 'latin1');
    const stream = file.handle.createReadStream({ start: 0, end: bodySize - 1, autoClose: false });
    let sent = 0;
    const onDrain = (): void => {
      stream.resume();
    };
    const stop = (ok: boolean): void => {
      socket.off('close', onClose);
      socket.off('drain', onDrain);
      stream.destroy();
      done(ok);
    };
    const onClose = (): void => stop(false);
    socket.once('close', onClose);
    socket.on('drain', onDrain);
    stream.on('data', (chunk) => {
      sent += chunk.length;
      if (!socket.write(chunk)) stream.pause();
    });
    // A file that shrank ends early: the length already sent cannot be honoured, the connection is cut.
    stream.once('end', () => stop(sent === bodySize));
    stream.once('error', () => stop(false));
  }

  private writeLocal(req: RouterRequest): void {
    if (req.local && !this.socket.destroyed) this.socket.write(req.local, 'latin1');
    this.finish(req);
  }

  /** Whether the connection may stay open after `req`'s response (asked when its head is written). */
  mayKeepAlive(req: RouterRequest): boolean {
    if (this.ctx.closing || this.clientEnded) return this.queue.length > 1 && this.queue[this.queue.length - 1]!.complete;
    return !(this.stopped && this.queue[this.queue.length - 1] === req);
  }

  /** `req`'s response is complete (or given up): the next request of the queue goes. */
  finish(req: RouterRequest): void {
    if (req.stage === Stage.Done) return;
    const wasDispatched = req.stage === Stage.Dispatched;
    req.stage = Stage.Done;
    if (wasDispatched) {
      if (req.local !== undefined && !this.socket.destroyed) this.socket.write(req.local, 'latin1');
      this.resumeLink();
      this.linkPause = undefined;
      this.linkResume = undefined;
    }
    if (this.queue[0] === req) this.queue.shift();
    if (req.closeAfter) {
      this.stopped = true;
      this.dropQueue();
      this.socket.end();
      return;
    }
    const next = this.queue[0];
    if (next !== undefined) {
      if (this.readingPaused && this.queue.length <= PIPELINE_LIMIT / 2) {
        this.resumeReading();
      }
      this.start(next);
      return;
    }
    if (this.clientEnded || (this.ctx.closing && !this.inMessage) || (this.stopped && this.current === undefined)) this.socket.end();
  }

  /** The connection is closing: requests not answered yet are taken back from the pool. */
  private dropQueue(): void {
    for (const r of this.queue) {
      if (r.stage === Stage.Dispatched) {
        r.stage = Stage.Done;
        this.ctx.withdraw(r);
      } else r.stage = Stage.Done;
    }
    this.queue.length = 0;
    this.current = undefined;
  }

  /** The router is stopping: an idle connection closes now, a busy one after its last response. */
  closeIfIdle(): void {
    if (this.queue.length === 0 && !this.inMessage) this.socket.end();
  }

  bindFlow(pause: () => void, resume: () => void): void {
    this.linkPause = pause;
    this.linkResume = resume;
  }

  pauseLink(): void {
    if (this.linkPaused) return;
    this.linkPaused = true;
    this.linkPause?.();
  }

  private resumeLink(): void {
    if (!this.linkPaused) return;
    this.linkPaused = false;
    this.linkResume?.();
  }

  private onClose(): void {
    this.stopped = true;
    this.resumeLink();
    this.dropQueue();
    const parser = this.parser;
    // Detached from the handle before it is deleted, as node:http does (a no-op once the handle is gone).
    this.unconsume();
    // Not from inside execute(): the native parser is deleted by close().
    setImmediate(() => parser.close());
    this.ctx.connectionClosed(this);
  }
}

/** A coarse clock for head deadlines, ticked by the router's one-second sweep (no syscall per request). */
export const clock = { now: Date.now() };
