/**
 * HTTP/1.1 in front of Python workers: Node's parser (llhttp) reads the request, the whole body is received
 * before a worker is involved, and the request goes to an idle worker over a link. Slow clients, keep-alive
 * and pipelining cost the router memory, never a worker.
 */
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Exchange, LinkPool } from './links.js';
import { buildVars, type ListenerInfo } from './vars.js';

export interface HttpListenerConfig {
  fd: number;
  /** How the socket was given, for logs. */
  name: string;
  port: string;
  /** Idle limit for a client (seconds): headers, body, keep-alive. */
  timeout: number;
}

export interface HttpRouterConfig {
  bufferSize: number;
  /** Largest request body accepted (bytes); 0 is no limit. */
  limitPost: number;
}

/** Response headers an app may not set (PEP 3333): the router frames the response itself. */
const HOP_BY_HOP_RESPONSE = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade']);

/** A response larger than this waiting for a slow client pauses the worker's link (back-pressure). */
const CLIENT_BUFFER_LIMIT = 1 << 20;

function simpleResponse(res: ServerResponse, status: number, text: string, close = false): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = `${status} ${text}\n`;
  const headers: Record<string, string | number> = { 'Content-Type': 'text/plain', 'Content-Length': Buffer.byteLength(body) };
  if (close) headers.Connection = 'close';
  res.writeHead(status, text, headers);
  res.end(body);
}

class RequestExchange implements Exchange {
  readonly payload: Buffer[];
  private pause: (() => void) | undefined;
  private resume: (() => void) | undefined;
  private paused = false;
  private declared = -1;
  private sent = 0;

  constructor(
    payload: Buffer[],
    private readonly req: IncomingMessage,
    private readonly res: ServerResponse,
    private readonly log: (line: string) => void,
  ) {
    this.payload = payload;
  }

  bindFlow(pause: () => void, resume: () => void): void {
    this.pause = pause;
    this.resume = resume;
    this.res.on('drain', () => this.unpause());
    this.res.on('close', () => this.unpause());
  }

  private unpause(): void {
    if (this.paused) {
      this.paused = false;
      this.resume?.();
    }
  }

  head(status: string, headers: string[]): void {
    const res = this.res;
    if (res.destroyed) return;
    const code = Number.parseInt(status.slice(0, 3), 10);
    const flat: string[] = [];
    for (let i = 0; i < headers.length; i += 2) {
      const name = headers[i]!;
      const lower = name.toLowerCase();
      if (HOP_BY_HOP_RESPONSE.has(lower)) continue;
      if (lower === 'content-length') this.declared = Number(headers[i + 1]);
      flat.push(name, headers[i + 1]!);
    }
    try {
      res.writeHead(code, status.slice(4), flat);
    } catch (err) {
      this.log(`the app sent a response head HTTP cannot carry (${(err as Error).message}); answered 502`);
      this.declared = -1;
      simpleResponse(res, 502, 'Bad Gateway');
    }
  }

  body(chunk: Buffer): void {
    const res = this.res;
    if (res.destroyed || res.writableEnded) return;
    this.sent += chunk.length;
    if (!res.write(chunk) && res.writableLength > CLIENT_BUFFER_LIMIT && !this.paused) {
      this.paused = true;
      this.pause?.();
    }
  }

  end(): void {
    const res = this.res;
    if (res.destroyed || res.writableEnded) return;
    if (this.declared >= 0 && this.sent !== this.declared && this.req.method !== 'HEAD') {
      // The app promised another length: the client would wait forever or read garbage.
      this.log(`the app declared Content-Length ${this.declared} but sent ${this.sent} bytes; connection closed`);
      res.destroy();
      return;
    }
    res.end();
  }

  fail(why: 'abort' | 'worker-died'): void {
    const res = this.res;
    if (res.destroyed || res.writableEnded) return;
    if (!res.headersSent) {
      if (why === 'worker-died') this.log(`worker died while serving ${this.req.method} ${this.req.url}; answered 502`);
      simpleResponse(res, 502, 'Bad Gateway');
      return;
    }
    res.destroy();
  }
}

export class HttpRouter {
  readonly servers: http.Server[] = [];
  private inFlight = 0;
  private closing = false;
  private onIdle: (() => void) | undefined;

  constructor(
    private readonly pool: LinkPool,
    private readonly cfg: HttpRouterConfig,
    private readonly log: (line: string) => void,
  ) {}

  listen(l: HttpListenerConfig, onListening: () => void): void {
    const info: ListenerInfo = { port: l.port, https: false };
    const timeoutMs = l.timeout * 1000;
    const server = http.createServer(
      {
        // The uwsgi packet is the real limit (buffer-size, checked per request); let llhttp read up to it.
        maxHeaderSize: 65535,
        headersTimeout: timeoutMs,
        requestTimeout: 0,
        keepAliveTimeout: timeoutMs,
      },
      (req, res) => this.onRequest(req, res, info, timeoutMs),
    );
    server.on('checkContinue', (req, res) => {
      const cl = Number(req.headers['content-length'] ?? 0);
      if (this.cfg.limitPost > 0 && cl > this.cfg.limitPost) return this.tooLarge(req, res, cl);
      res.writeContinue();
      this.onRequest(req, res, info, timeoutMs);
    });
    server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => this.clientError(err, socket));
    server.on('error', (err) => {
      this.log(`cannot listen on ${l.name}: ${err.message}`);
      process.exit(23);
    });
    server.listen({ fd: l.fd }, onListening);
    this.servers.push(server);
  }

  private clientError(err: NodeJS.ErrnoException, socket: Socket): void {
    const from = `${socket.remoteAddress ?? ''}:${socket.remotePort ?? ''}`;
    if (err.code === 'ECONNRESET' || !socket.writable) {
      socket.destroy();
      return;
    }
    if (err.code === 'HPE_CLOSED_CONNECTION') {
      // Bytes after a request that closes the connection: that request is still answered, the rest ignored.
      this.log(`client ${from} sent data after a request that closes the connection; ignored`);
      return;
    }
    let status = '400 Bad Request';
    if (err.code === 'HPE_HEADER_OVERFLOW') status = '431 Request Header Fields Too Large';
    else if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') status = '408 Request Timeout';
    this.log(`bad HTTP request from ${from}: ${err.code ?? ''} ${(err as { reason?: string }).reason ?? err.message}; answered ${status}`);
    socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
  }

  private tooLarge(req: IncomingMessage, res: ServerResponse, size: number): void {
    this.log(`request body of ${size} bytes for ${req.method} ${req.url} is over limit-post ${this.cfg.limitPost}; answered 413`);
    simpleResponse(res, 413, 'Payload Too Large', true);
  }

  private onRequest(req: IncomingMessage, res: ServerResponse, info: ListenerInfo, timeoutMs: number): void {
    const limit = this.cfg.limitPost;
    const clHeader = req.headers['content-length'];
    const cl = clHeader === undefined ? -1 : Number(clHeader);
    if (limit > 0 && cl > limit) return this.tooLarge(req, res, cl);
    this.inFlight++;
    res.on('close', () => {
      this.inFlight--;
      if (this.closing && this.inFlight === 0) this.onIdle?.();
    });
    if (cl <= 0 && req.headers['transfer-encoding'] === undefined) {
      this.dispatch(req, res, info, []);
      return;
    }
    // Receive the whole body before a worker is involved; a client that stalls is dropped.
    const chunks: Buffer[] = [];
    let total = 0;
    req.socket.setTimeout(timeoutMs, () => {
      this.log(`client ${req.socket.remoteAddress ?? ''} stalled while sending the body of ${req.method} ${req.url}; closed`);
      req.socket.destroy();
    });
    req.on('data', (c: Buffer) => {
      total += c.length;
      if (limit > 0 && total > limit) {
        req.removeAllListeners('data');
        req.socket.setTimeout(0);
        this.tooLarge(req, res, total);
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => {
      req.socket.setTimeout(0);
      if (res.writableEnded || res.destroyed) return;
      this.dispatch(req, res, info, chunks);
    });
  }

  private dispatch(req: IncomingMessage, res: ServerResponse, info: ListenerInfo, body: Buffer[]): void {
    let length = 0;
    for (const b of body) length += b.length;
    const vars = buildVars(req, info, length);
    if (vars === undefined || vars.length - 4 > this.cfg.bufferSize) {
      const size = vars === undefined ? 'over 65535' : String(vars.length - 4);
      this.log(`request ${req.method} ${req.url} has ${size} bytes of headers and vars, over buffer-size ${this.cfg.bufferSize} (raise buffer-size if it is legitimate); answered 431`);
      simpleResponse(res, 431, 'Request Header Fields Too Large', true);
      return;
    }
    const payload = body.length === 0 ? [vars] : body.length === 1 && length < 65536 ? [Buffer.concat([vars, body[0]!])] : [vars, ...body];
    const ex = new RequestExchange(payload, req, res, this.log);
    if (!this.pool.submit(ex)) {
      this.log(`${this.pool.waiting} requests already wait for a worker; ${req.method} ${req.url} answered 503`);
      simpleResponse(res, 503, 'Service Unavailable');
      return;
    }
    res.on('close', () => {
      if (!res.writableFinished) this.pool.withdraw(ex);
    });
  }

  /** Stops accepting; calls `done` once every request in progress has been answered. */
  close(done: () => void): void {
    this.closing = true;
    let open = this.servers.length;
    const check = (): void => {
      if (open === 0 && this.inFlight === 0) done();
    };
    this.onIdle = check;
    for (const s of this.servers) {
      s.close(() => {
        open--;
        check();
      });
      s.closeIdleConnections();
    }
    // Keep-alive connections that become idle after their response are closed as they do.
    const sweep = setInterval(() => {
      for (const s of this.servers) s.closeIdleConnections();
    }, 100);
    sweep.unref();
  }
}
