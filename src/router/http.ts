/**
 * HTTP/1.1 in front of Python workers: each listener accepts client connections (src/router/client.ts parses
 * them with Node's llhttp), the whole body is received before a worker is involved, and the request goes to an
 * idle worker over a link. Slow clients, keep-alive and pipelining cost the router memory, never a worker.
 */
import net from 'node:net';
import tls from 'node:tls';
import { ClientConnection, clock, type RouterContext } from './client.js';
import type { Exchange } from './links.js';
import { checkClient, tlsServerOptions, type ListenerTls } from './tls-options.js';
export type { ListenerTls } from './tls-options.js';
import type { ListenerInfo } from './vars.js';
import type { StaticFiles } from '../static/files.js';
import type { HeaderEdit } from '../config/resolve.js';

export interface HttpListenerConfig {
  fd: number;
  /** How the socket was given, for logs. */
  name: string;
  port: string;
  /** Idle limit for a client (seconds): headers, body, keep-alive. */
  timeout: number;
  /** https, https-socket: TLS (its material comes over IPC, see HttpRouter.listen's `tls`). */
  tls?: boolean;
  /** http-to-https: every request is answered with a redirect to https. */
  redirectHttps?: boolean;
}

/** Where requests go: this instance's workers (LinkPool) or other instances (UpstreamPool, http-to). */
export interface RequestSink {
  submit(ex: Exchange): boolean;
  withdraw(ex: Exchange): void;
}

export interface HttpRouterConfig {
  bufferSize: number;
  /** Largest request body accepted (bytes); 0 is no limit. */
  limitPost: number;
  /** static-map and friends (the router sends those files itself). */
  staticFiles?: StaticFiles;
  /** Writes a request line (status, body bytes and time given for log-4xx and friends); undefined when none is logged. */
  logRequest?: (line: string, status: number, bodyBytes: number, usec: number) => void;
  /** log-micros: `in N micros` in request lines. */
  logMicros?: boolean;
  /** add-header / del-header for static files. */
  headers?: HeaderEdit;
}

function httpDate(ms: number): string {
  return `Date: ${new Date(ms).toUTCString()}\r\n`;
}

export class HttpRouter {
  readonly servers: net.Server[] = [];
  private readonly connections = new Set<ClientConnection>();
  private closingNow = false;
  private onIdle: (() => void) | undefined;
  private date = httpDate(Date.now());
  private dateSecond = Math.floor(Date.now() / 1000);
  private readonly sweep: NodeJS.Timeout;
  /** Per listener (listen() order), how an https one takes re-read certificates; undefined for plain HTTP. */
  private readonly tlsUpdaters: Array<((t: ListenerTls) => void) | undefined> = [];

  constructor(
    private readonly pool: RequestSink,
    private readonly cfg: HttpRouterConfig,
    private readonly log: (line: string) => void,
  ) {
    // Once a second: the clock for head deadlines, and the connections whose request head is overdue.
    this.sweep = setInterval(() => this.tick(), 1000);
    this.sweep.unref();
  }

  private tick(): void {
    const now = Date.now();
    clock.now = now;
    for (const conn of this.connections) {
      if (conn.headStart !== 0 && now - conn.headStart > conn.timeoutMs) conn.headTimedOut();
    }
  }

  private dateLine(): string {
    const now = Date.now();
    const second = Math.floor(now / 1000);
    if (second !== this.dateSecond) {
      this.dateSecond = second;
      this.date = httpDate(now);
      clock.now = now;
    }
    return this.date;
  }

  listen(l: HttpListenerConfig, onListening: () => void, tlsConfig?: ListenerTls): void {
    const listener: ListenerInfo = { port: l.port, https: tlsConfig !== undefined, redirectHttps: l.redirectHttps === true };
    const timeoutMs = l.timeout * 1000;
    const router = this;
    const ctx: RouterContext = {
      listener,
      limitPost: this.cfg.limitPost,
      bufferSize: this.cfg.bufferSize,
      log: this.log,
      submit: (ex: Exchange) => this.pool.submit(ex),
      withdraw: (ex: Exchange) => this.pool.withdraw(ex),
      dateLine: () => this.dateLine(),
      staticFiles: this.cfg.staticFiles,
      logRequest: this.cfg.logRequest ?? (() => undefined),
      logMicros: this.cfg.logMicros === true,
      headers: this.cfg.headers,
      get closing() {
        return router.closingNow;
      },
      connectionClosed: (conn: ClientConnection) => {
        this.connections.delete(conn);
        this.checkIdle();
      },
    };
    // allowHalfOpen: a client that shuts down its sending side after the request still gets the answer.
    const server = tlsConfig === undefined
      ? net.createServer({ allowHalfOpen: true, noDelay: true }, (socket) => {
        if (this.closingNow) {
          socket.destroy();
          return;
        }
        const conn = new ClientConnection(socket, ctx, timeoutMs);
        this.connections.add(conn);
      })
      : this.tlsServer(tlsConfig, l, ctx, timeoutMs);
    server.on('error', (err) => {
      this.log(`cannot listen on ${l.name}: ${err.message}`);
      process.exit(23);
    });
    server.listen({ fd: l.fd }, onListening);
    this.servers.push(server);
  }

  /**
   * A reload re-read the certificates (docs/https.md): listener `index` (in listen() order) takes them for its
   * next handshakes; connections already open keep the context they were made with. Throws when OpenSSL refuses.
   */
  setTls(index: number, t: ListenerTls): void {
    this.tlsUpdaters[index]?.(t);
  }

  /** An https listener: connections are handed over once the handshake (and the client-certificate checks) passed. */
  private tlsServer(first: ListenerTls, l: HttpListenerConfig, ctx: RouterContext, timeoutMs: number): tls.Server {
    let t = first;
    const server = tls.createServer({ allowHalfOpen: true, noDelay: true, ...tlsServerOptions(t, l.name, timeoutMs) }, (socket) => {
      if (this.closingNow) {
        socket.destroy();
        return;
      }
      const certVars = checkClient(socket, t, l.name, this.log);
      if (certVars === null) return;
      const conn = new ClientConnection(socket, ctx, timeoutMs, certVars);
      this.connections.add(conn);
    });
    server.on('tlsClientError', () => {
      /* a failed handshake: the client was told by TLS itself */
    });
    this.tlsUpdaters[this.servers.length] = (next) => {
      server.setSecureContext(tlsServerOptions(next, l.name, timeoutMs));
      t = next;
    };
    return server;
  }

  private checkIdle(): void {
    if (this.closingNow && this.connections.size === 0) this.onIdle?.();
  }

  /** Stops accepting; calls `done` once every request received has been answered and every connection closed. */
  close(done: () => void): void {
    this.closingNow = true;
    let open = this.servers.length;
    this.onIdle = () => {
      if (open === 0) {
        this.onIdle = undefined;
        clearInterval(this.sweep);
        done();
      }
    };
    for (const s of this.servers) {
      s.close(() => {
        open--;
        this.checkIdle();
      });
    }
    for (const c of this.connections) c.closeIfIdle();
    this.checkIdle();
  }
}
