/**
 * The HTTP side: node's own HTTP/1.1 server (llhttp) on the master's HTTP sockets, so keep-alive, pipelining,
 * chunked bodies, 100-continue and slow clients are node's business and cost a Node worker no more than a
 * pending event. Requests go straight to the app through `Exchanges.dispatch`.
 */
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import https from 'node:https';
import { hostname } from 'node:os';
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { checkClient, tlsServerOptions, type ListenerTls } from '../../router/tls-options.js';
import { CERT_VARS } from './request-info.js';
import type { Exchanges } from './exchange.js';
import type { WorkerLog } from './log.js';

export interface HttpOptions {
  /** Idle limit (ms) for a client sending its head or between keep-alive requests. */
  timeoutMs: number;
  /** Largest request body accepted (bytes); 0 is no limit. */
  limitPost: number;
  /** https, https-socket: node:https with the listener's certificates (docs/https.md). */
  tls?: ListenerTls;
  /** The socket's name, for log lines about client certificates. */
  name?: string;
}

/** node:https's server is an http.Server in everything but its prototype chain. */
export function isHttpServer(s: unknown): s is http.Server {
  return s instanceof http.Server || s instanceof https.Server;
}

function tooLarge(res: ServerResponse): void {
  const body = '413 Payload Too Large\n';
  res.writeHead(413, { 'Content-Type': 'text/plain', 'Content-Length': Buffer.byteLength(body), Connection: 'close' });
  res.end(body);
}

/** Each server's open connections, for `closeSilentConnections`. */
const connections = new WeakMap<http.Server, Set<Socket>>();

/**
 * Closes a stopping server's connections that have nothing to answer: kept-alive ones between requests
 * (node's closeIdleConnections) and ones accepted that have not sent a byte (node counts those as busy,
 * under headersTimeout). One with part of a request in keeps it, and the timeouts.
 */
export function closeSilentConnections(server: http.Server): void {
  server.closeIdleConnections();
  for (const socket of connections.get(server) ?? []) {
    if (socket.bytesRead === 0 && !(socket as Socket & { _httpMessage?: unknown })._httpMessage) socket.destroy();
  }
}

export function createHttpServer(exchanges: Exchanges, log: WorkerLog, opts: HttpOptions): http.Server {
  const limit = opts.limitPost;
  const onRequest = limit > 0
    ? (req: IncomingMessage, res: ServerResponse): void => {
      const cl = Number(req.headers['content-length'] ?? 0);
      if (cl > limit) {
        log.error(`request body of ${cl} bytes for ${req.method} ${req.url} is over limit-post ${limit}; answered 413`);
        tooLarge(res);
        return;
      }
      exchanges.dispatch(req, res);
    }
    : (req: IncomingMessage, res: ServerResponse): void => exchanges.dispatch(req, res);
  const httpOptions: http.ServerOptions = {
    headersTimeout: opts.timeoutMs,
    requestTimeout: 0,
    keepAliveTimeout: opts.timeoutMs,
    connectionsCheckingInterval: Math.min(30_000, Math.max(250, opts.timeoutMs / 4)),
    noDelay: true,
  };
  const t = opts.tls;
  const server = t === undefined
    ? http.createServer(httpOptions, onRequest)
    : (https.createServer({ ...httpOptions, ...tlsServerOptions(t, opts.name ?? '', opts.timeoutMs) }, onRequest) as unknown as http.Server);
  if (t !== undefined) {
    // Before node:http reads a byte: a certificate node lets through that uWSGI refuses ends the connection here.
    server.prependListener('secureConnection', (socket: TLSSocket) => {
      const vars = checkClient(socket, t, opts.name ?? '', (line) => log.error(line));
      if (vars) (socket as TLSSocket & { [CERT_VARS]?: unknown })[CERT_VARS] = vars;
    });
  }
  // socket-timeout also bounds a client that stops taking its response: node emits 'timeout' only when no
  // write has progressed for that long, and then bytes still waiting to go out mean the client stopped
  // reading. An app taking its time (nothing waiting) is left alone: harakiri is its limit.
  server.timeout = opts.timeoutMs;
  server.on('timeout', (socket: Socket) => {
    // No response in progress: the keep-alive idle timeout, which node ends by closing (as without a listener).
    if (!(socket as Socket & { _httpMessage?: unknown })._httpMessage) {
      socket.destroy();
      return;
    }
    if (socket.writableLength === 0) return;
    log.error(`the client did not take the response within socket-timeout (${opts.timeoutMs / 1000} s); connection closed`);
    socket.destroy();
  });
  const open = new Set<Socket>();
  connections.set(server, open);
  // Over TLS the connection node:http serves is the TLS socket, which 'secureConnection' gives.
  server.on(t === undefined ? 'connection' : 'secureConnection', (socket: Socket) => {
    exchanges.countConnection(socket);
    open.add(socket);
    socket.once('close', () => open.delete(socket));
  });
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
    if (err.code === 'ECONNRESET' || !socket.writable) {
      socket.destroy();
      return;
    }
    let status = '400 Bad Request';
    if (err.code === 'HPE_HEADER_OVERFLOW') status = '431 Request Header Fields Too Large';
    else if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') status = '408 Request Timeout';
    log.error(`bad HTTP request from ${socket.remoteAddress ?? ''}: ${err.code ?? ''} ${(err as { reason?: string }).reason ?? err.message}; answered ${status}`);
    socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
  });
  return server;
}

/**
 * http-to-https: every request gets a 301 to the same URI over https, on the host the client named without its
 * port (or this machine's name), and the connection closes, as uWSGI's router answers.
 */
export function createRedirectServer(timeoutMs: number): http.Server {
  const server = http.createServer({ headersTimeout: timeoutMs, keepAliveTimeout: timeoutMs, noDelay: true }, (req, res) => {
    let host = req.headers.host ?? '';
    if (host.startsWith('[')) host = host.slice(0, host.indexOf(']') + 1);
    else if (host.includes(':')) host = host.slice(0, host.indexOf(':'));
    res.writeHead(301, { Location: `https://${host || hostname()}${req.url ?? '/'}`, 'Content-Length': 0, Connection: 'close' });
    res.end();
  });
  return server;
}
