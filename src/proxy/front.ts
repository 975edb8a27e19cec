/**
 * The serving side of one worker: an HTTP(S) server per bound socket, the request pipeline, static files,
 * upstreams and logs. `listen()` reports bind errors; `shutdown(graceful)` stops accepting, lets requests
 * in flight finish (graceful) and closes idle keep-alive connections.
 */
import http from 'node:http';
import https from 'node:https';
import http2 from 'node:http2';
import { createSecureContext, type SecureContext } from 'node:tls';
import type { Socket } from 'node:net';
import { unlinkSync, lstatSync } from 'node:fs';
import type { LoadedConf } from './conf/load.js';
import type { Binding } from './listen.js';
import { Pipeline, type ConnectionState, type Runtime } from './pipeline.js';
import { StaticFiles } from './static.js';
import { Upstreams } from './upstream/pass.js';
import { AccessLogs } from './accesslog.js';
import type { ErrorLogs } from './errorlog.js';
import type { Rq, UpgradeRequest } from './request.js';
import type { LocConf, SslConf } from './conf/model.js';
import { errorPage, httpDate, statusReason, wireStatus } from './special.js';
import { PRODUCT, VERSION } from './vars.js';
import { adaptH2Request, isH2 } from './http2.js';
import { Stapler, pemCerts } from './ocsp.js';
import { STATS } from './stats.js';
import { FastLane } from './h1fast.js';

let connectionIds = 0;

/** A client connection with the requests it has in progress (more than one when pipelined). */
type ClientSocket = Socket & ConnectionState & { _tsgiId?: number; _tsgiBusy?: number; _tsgiReading?: boolean };

/**
 * Whether the head that overflowed node:http's limit began with a request line longer than one of
 * large_client_header_buffers (nginx answers that with 414, an overflow of header lines with 400). The
 * packet being parsed holds the request line when the head came in one read, which a long URI usually does.
 */
function requestLineTooLong(err: Error, lineMax: number): boolean {
  const packet = (err as { rawPacket?: Buffer }).rawPacket;
  if (!packet || !/^[A-Z]+ /.test(packet.subarray(0, 16).toString('latin1'))) return false;
  const nl = packet.indexOf('\r\n');
  return (nl === -1 ? packet.length : nl + 2) > lineMax;
}

/** Whether the head llhttp refused has more than one Transfer-Encoding line. */
function twoTransferEncodings(err: Error): boolean {
  const packet = (err as { rawPacket?: Buffer }).rawPacket;
  return packet !== undefined && (packet.toString('latin1').match(/\r?\ntransfer-encoding[ \t]*:/gi)?.length ?? 0) > 1;
}

/**
 * A whole error response written straight to a socket, for requests node:http refused before they reached
 * the pipeline: the status line, Server, Date, the page, and the close.
 */
function rawError(status: number, conf: LocConf): string {
  const code = wireStatus(status);
  const page = errorPage(status, conf.serverTokens !== false);
  const server = conf.serverTokens !== false ? `${PRODUCT}/${VERSION}` : PRODUCT;
  return `HTTP/1.1 ${code} ${statusReason(code)}\r\nServer: ${server}\r\nDate: ${httpDate()}\r\nContent-Type: text/html\r\nContent-Length: ${page?.length ?? 0}\r\nConnection: close\r\n\r\n${page?.toString('latin1') ?? ''}`;
}

/** A 400 on an HTTP/2 stream node:http2 keeps from the pipeline (CONNECT), with its info line. */
function h2Refuse(req: http.IncomingMessage, res: http2.Http2ServerResponse, conf: LocConf, log: ErrorLogs): void {
  if (log.enabled('info')) log.log('info', `client sent invalid method "${req.method}" while reading client request headers, client: ${req.socket?.remoteAddress ?? ''}`);
  const page = errorPage(400, conf.serverTokens !== false)!;
  res.writeHead(400, { server: conf.serverTokens !== false ? `${PRODUCT}/${VERSION}` : PRODUCT, date: httpDate(), 'content-type': 'text/html', 'content-length': page.length });
  res.end(page);
}

function tlsVersions(protocols: string[] | undefined): { minVersion: 'TLSv1' | 'TLSv1.1' | 'TLSv1.2' | 'TLSv1.3'; maxVersion: 'TLSv1' | 'TLSv1.1' | 'TLSv1.2' | 'TLSv1.3' } {
  const order = ['TLSv1', 'TLSv1.1', 'TLSv1.2', 'TLSv1.3'] as const;
  const have = order.filter((v) => protocols?.includes(v));
  if (have.length === 0) return { minVersion: 'TLSv1.2', maxVersion: 'TLSv1.3' };
  return { minVersion: have[0]!, maxVersion: have[have.length - 1]! };
}

function tlsOptions(ssl: SslConf): https.ServerOptions {
  return {
    cert: ssl.certificate,
    key: ssl.certificateKey,
    ...tlsVersions(ssl.protocols),
    ...(ssl.ciphers ? { ciphers: ssl.ciphers } : {}),
    honorCipherOrder: ssl.preferServerCiphers === true,
    ...clientVerification(ssl),
  };
}

/**
 * As nginx counts: an accepted connection with nothing sent yet is waiting; the first bytes of a request head
 * make it reading and count the request (one cut short is still counted); from dispatch to the end of its
 * response it is writing. A request read while the one before it was in progress (pipelined) is counted when
 * dispatched.
 */
function countConnection(s: Socket): void {
  STATS.accepts++;
  STATS.handled++;
  STATS.active++;
  s.on('close', () => STATS.active--);
}

/** On the socket requests arrive on (the TLS socket for https, whose 'data' is the decrypted request). */
function countReading(s: ClientSocket): void {
  s.on('data', () => {
    if (!s._tsgiReading && !s._tsgiBusy) {
      s._tsgiReading = true;
      STATS.reading++;
      STATS.requests++;
    }
  });
  s.on('close', () => {
    if (s._tsgiReading) {
      s._tsgiReading = false;
      STATS.reading--;
    }
  });
}

function countRequest(s: ClientSocket, res: http.ServerResponse): void {
  if (s._tsgiReading) {
    s._tsgiReading = false;
    STATS.reading--;
  } else STATS.requests++;
  STATS.writing++;
  res.on('close', () => STATS.writing--);
}

/** An HTTP/2 stream: a request, writing until its response has gone (nginx counts streams so too). */
function countStream(res: http.ServerResponse): void {
  STATS.requests++;
  STATS.writing++;
  res.on('close', () => STATS.writing--);
}

/**
 * ssl_verify_client: the certificate is asked for and checked against the configured CAs (never the system's),
 * but a failure does not end the handshake; the request gets nginx's 400 page instead (tlsclient.ts).
 */
function clientVerification(ssl: SslConf): https.ServerOptions {
  if (ssl.verifyClient === undefined || ssl.verifyClient === 'off') return {};
  const ca = [ssl.clientCertificate, ssl.trustedCertificate].filter((b): b is Buffer => b !== undefined);
  return { requestCert: true, rejectUnauthorized: false, ca: ca.length > 0 ? ca : [], ...(ssl.crl ? { crl: ssl.crl } : {}) };
}

export class Front implements Runtime {
  readonly pipeline: Pipeline;
  private readonly statics: StaticFiles;
  readonly upstreams: Upstreams;
  private readonly access = new AccessLogs();
  private readonly servers: Array<http.Server | https.Server> = [];
  private readonly sockets = new Set<Socket>();
  private readonly sessions = new Set<http2.ServerHttp2Session>();
  private readonly lanes: FastLane[] = [];
  /** TSGI_PROXY_FAST_LANE=0 turns the fast lane off (node:http serves every request), to compare the two. */
  private readonly fastLane = process.env.TSGI_PROXY_FAST_LANE !== '0';
  private stopping = false;
  /** stub_status or $connections_* in the configuration: connections and requests are counted (stats.ts). */
  private readonly counting: boolean;

  constructor(readonly conf: LoadedConf, readonly errorLog: ErrorLogs) {
    this.counting = conf.connStats;
    this.pipeline = new Pipeline(this);
    this.statics = new StaticFiles(this.pipeline);
    this.upstreams = new Upstreams(this.pipeline, conf.http?.upstreams ?? new Map());
  }

  serveStatic(r: Rq): void {
    this.statics.serve(r);
  }

  pass(r: Rq): void {
    this.upstreams.pass(r);
  }

  logAccess(r: Rq): void {
    this.access.log(r);
  }

  reopenLogs(): void {
    this.access.reopen();
    this.errorLog.reopen();
  }

  /** The TLS context of each server name on a socket, for SNI. */
  private sniContexts(b: Binding): Map<string, SecureContext> {
    const contexts = new Map<string, SecureContext>();
    for (const g of b.groups.values()) {
      for (const s of g.servers) {
        if (!s.loc.ssl.certificate) continue;
        const ctx = createSecureContext(tlsOptions(s.loc.ssl));
        for (const n of s.names.exact) if (!contexts.has(n)) contexts.set(n, ctx);
      }
    }
    return contexts;
  }

  /**
   * Whether a handshake asks for a client certificate is decided per listening socket (Node has no per-SNI
   * switch): asked when any server on it verifies; the others ignore what is sent.
   */
  private asksForCertificates(b: Binding): boolean {
    return [...b.groups.values()].some((g) => g.servers.some((s) => s.loc.ssl.verifyClient !== 'off'));
  }

  private makeServer(b: Binding): http.Server | https.Server {
    const srv = b.main.defaultServer;
    const loc = srv.loc;
    const opts: http.ServerOptions = {
      // node:http's keep-alive timer is off: with it on, node also announces it in a `Keep-Alive: timeout=N`
      // header on every response (nginx sends none unless keepalive_timeout has a second value), and it
      // waits a second longer than told. The idle timeout is kept here instead, per request's location.
      keepAliveTimeout: 0,
      headersTimeout: srv.clientHeaderTimeoutMs,
      requestTimeout: 0,
      maxHeaderSize: srv.largeHeaderBytes,
      noDelay: loc.tcpNodelay !== false,
    };
    const handler = (req: http.IncomingMessage, res: http.ServerResponse) => {
      if (isH2(req)) {
        // A stream of an HTTP/2 connection: no per-connection request order or keep-alive to keep here
        // (the session multiplexes; its idle time is watched per session, below).
        const conn = req.socket as ClientSocket;
        conn._tsgiRequests = (conn._tsgiRequests ?? 0) + 1;
        if (this.counting) countStream(res);
        adaptH2Request(req);
        this.pipeline.handle(b, req, res);
        return;
      }
      const s = req.socket as ClientSocket;
      // A request pipelined behind the connection's last one: never served (node:http will not send its
      // response either; the connection closes after the last one's).
      if (s._tsgiLast) return;
      s._tsgiRequests = (s._tsgiRequests ?? 0) + 1;
      if (this.counting) countRequest(s, res);
      if (this.stopping) res.shouldKeepAlive = false;
      // A request arrived: the connection is no longer idle.
      const busy = s._tsgiBusy ?? 0;
      if (busy === 0) s.setTimeout(0);
      s._tsgiBusy = busy + 1;
      let r: Rq | undefined;
      // 'close' follows every response, sent or cut short. Once the last one in progress has gone out on a
      // connection that stays open, the connection may be idle for keepalive_timeout (of the location that
      // answered, as in nginx); then node:http's 'timeout' handler closes it.
      res.on('close', () => {
        s._tsgiBusy = s._tsgiBusy! - 1;
        if (s._tsgiBusy === 0 && s.writable) s.setTimeout((r?.conf ?? loc).keepaliveTimeoutMs!);
      });
      // A chunked body that came with the head is parsed by node:http only after this handler returns. nginx
      // reads what has arrived before it answers (even a body it discards), so a malformed chunk there gets
      // 400 rather than the location's answer: the request waits for the parser to finish this read; if it
      // failed, 'clientError' below has answered and closed. Only chunked requests pay for this.
      if (req.headers['transfer-encoding'] !== undefined && !req.complete) {
        // Its place on the connection is taken now: a request pipelined behind it is counted meanwhile.
        const nth = s._tsgiRequests;
        setImmediate(() => {
          if (!s.writableEnded && !s.destroyed) r = this.pipeline.handle(b, req, res, nth);
        });
        return;
      }
      r = this.pipeline.handle(b, req, res);
    };
    let server: http.Server | https.Server;
    if (b.http2) server = this.makeH2Server(b, opts, handler);
    else if (b.ssl) {
      const contexts = this.sniContexts(b);
      server = https.createServer(
        {
          ...opts,
          ...tlsOptions(loc.ssl),
          ...(this.asksForCertificates(b) ? { requestCert: true, rejectUnauthorized: false } : {}),
          SNICallback: (name, cb) => cb(null, contexts.get(name.toLowerCase())),
        },
        handler,
      );
    } else {
      server = http.createServer(opts, handler);
      // Plain HTTP/1.x: requests without a body take the fast lane (h1fast.ts); node:http serves the rest.
      if (this.fastLane) this.lanes.push(new FastLane(server, handler, {
        maxHeaderSize: opts.maxHeaderSize ?? 0,
        headersTimeoutMs: opts.headersTimeout ?? 60000,
        onHandOver: this.errorLog.enabled('debug') ? (s, why) => this.errorLog.log('debug', `*${(s as ClientSocket)._tsgiId ?? 0} fast lane: ${why}: the connection goes on in node:http`) : null,
      }));
    }
    // worker_connections: connections one worker holds at once (nginx's default is 512).
    server.maxConnections = this.conf.main.workerConnections ?? 512;
    // A client that shuts down its sending side after its request (`nc -N`, some HTTP/1.0 clients) still
    // gets the responses in progress, then the close, as from nginx; node:http's default drops them.
    (server as { httpAllowHalfOpen?: boolean }).httpAllowHalfOpen = true;
    server.on('connection', (s: ClientSocket) => {
      if (!b.ssl) {
        s._tsgiId = ++connectionIds;
        s._tsgiStart = Date.now();
      }
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
      if (this.counting) {
        countConnection(s);
        // An h2c socket belongs to its HTTP/2 session: nothing else may read it (its streams are counted below).
        if (!b.ssl && !b.http2) countReading(s);
      }
    });
    if (b.ssl) this.staple(b, server);
    // Over TLS, requests see the TLS socket, not the TCP one 'connection' gives: it gets the connection's
    // number ($connection, the error log's *N) and start (keepalive_time).
    if (b.ssl) {
      server.on('secureConnection', (s: ClientSocket) => {
        s._tsgiId = ++connectionIds;
        s._tsgiStart = Date.now();
        // Only HTTP/1.x over TLS: an h2 socket belongs to its HTTP/2 session.
        if (this.counting && (s as ClientSocket & { alpnProtocol?: string | false }).alpnProtocol !== 'h2') countReading(s);
      });
    }
    // A request with `Upgrade` (WebSocket): node:http hands over the socket, so it gets a response object of
    // its own and runs through the pipeline like any request. A backend's 101 turns the connection into a
    // tunnel (upstream/pass.ts); any other answer closes the connection after it (nginx would keep it).
    server.on('upgrade', (req: http.IncomingMessage, s: ClientSocket, head: Buffer) => {
      s.on('error', () => s.destroy());
      const start = (early: Buffer, body: Buffer | undefined): void => {
        const up = req as UpgradeRequest;
        up.tsgiUpgrade = early;
        up.tsgiBody = body;
        const res = new http.ServerResponse(req);
        res.assignSocket(s);
        res.shouldKeepAlive = false;
        res.on('finish', () => s.destroySoon());
        handler(req, res);
      };
      // node:http leaves the body of an upgrade request unread (a WebSocket handshake has none; an
      // `Upgrade: h2c` POST does): it is taken here so the request is served with it, as nginx serves it.
      if (req.headers['transfer-encoding'] !== undefined) {
        s.end(rawError(411, loc), 'latin1');
        return;
      }
      const n = Number(req.headers['content-length'] ?? 0);
      if (!(n > 0)) {
        start(head, undefined);
        return;
      }
      let got = head;
      const take = (d: Buffer): void => {
        got = got.length === 0 ? d : Buffer.concat([got, d]);
        if (got.length < n) return;
        s.removeListener('data', take);
        s.pause();
        s.setTimeout(0);
        start(Buffer.from(got.subarray(n)), got.subarray(0, n));
      };
      s.setTimeout(loc.clientBodyTimeoutMs ?? 60000, () => s.destroy());
      s.on('data', take);
      take(Buffer.alloc(0));
    });
    // An Expect other than 100-continue: 417, as node:http answers it (newer nginx does too); two Expect lines
    // go to the pipeline, which refuses the duplicate with 400 as nginx does.
    server.on('checkExpectation', (req: http.IncomingMessage, res: http.ServerResponse) => {
      let n = 0;
      for (let i = 0; i < req.rawHeaders.length; i += 2) if (req.rawHeaders[i]!.length === 6 && req.rawHeaders[i]!.toLowerCase() === 'expect') n++;
      if (n > 1) {
        handler(req, res);
        return;
      }
      res.writeHead(417);
      res.end();
    });
    // CONNECT: tsgi-proxy is not a forward proxy. nginx answers 405 to an authority-form target, else 400.
    server.on('connect', (req: http.IncomingMessage, s: Socket) => {
      // Over HTTP/2 node:http2 passes the stream's response, not a socket: raw HTTP/1.1 text written there
      // would go out as a 200's body. nginx 1.22 answers CONNECT on a stream with 400.
      if (isH2(req)) {
        h2Refuse(req, s as unknown as http2.Http2ServerResponse, loc, this.errorLog);
        return;
      }
      const ok = /^[^/\s]+:\d+$/.test(req.url ?? '');
      s.end(rawError(ok ? 405 : 400, loc), 'latin1');
    });
    server.on('clientError', (err: NodeJS.ErrnoException, s: Socket) => {
      // Malformed requests (llhttp errors), header timeouts: answer 400/408/431 and close, as nginx does.
      if (this.errorLog.enabled('info')) this.errorLog.log('info', `client sent invalid request (${err.code ?? err.message}), client: ${s.remoteAddress ?? ''}`);
      if (!s.writable || (err as { bytesParsed?: number }).bytesParsed === 0 && err.code === 'ECONNRESET') {
        s.destroy();
        return;
      }
      // A header timeout closes without an answer, as nginx does; a request too large or malformed gets 400.
      if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') {
        s.destroy();
        return;
      }
      // A Transfer-Encoding other than "chunked" alone: nginx answers 501 (llhttp refuses it as malformed).
      // Two Transfer-Encoding lines are refused as a duplicate (400) first, as nginx does.
      const status = err.code === 'HPE_HEADER_OVERFLOW' ? (requestLineTooLong(err, srv.largeHeaderLine!) ? 414 : 494) : err.code === 'HPE_INVALID_TRANSFER_ENCODING' ? (twoTransferEncodings(err) ? 400 : 501) : 400;
      s.end(rawError(status, loc), 'latin1');
    });
    return server;
  }

  /**
   * `listen ... http2`: node:http2's server. With ssl, ALPN offers h2 and http/1.1, and HTTP/1.x clients get
   * the same node:http machinery as on any other socket (allowHTTP1, with the same limits); without ssl it
   * speaks HTTP/2 with prior knowledge only (h2c), as nginx 1.22 does on such a socket.
   */
  private makeH2Server(b: Binding, opts: http.ServerOptions, handler: (req: http.IncomingMessage, res: http.ServerResponse) => void): http.Server {
    const srv = b.main.defaultServer;
    const settings = { maxConcurrentStreams: srv.http2MaxConcurrentStreams ?? 128 };
    // How many header fields a request may have: node:http2's default (128) resets a stream nginx serves (it
    // bounds only their size); node:http's count limit for HTTP/1.x is taken instead.
    const maxHeaderListPairs = 2000;
    const onRequest = handler as unknown as (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => void;
    let server: http2.Http2Server | http2.Http2SecureServer;
    if (b.ssl) {
      const contexts = this.sniContexts(b);
      server = http2.createSecureServer({
        ...tlsOptions(srv.loc.ssl),
        ...(this.asksForCertificates(b) ? { requestCert: true, rejectUnauthorized: false } : {}),
        SNICallback: (name, cb) => cb(null, contexts.get(name.toLowerCase())),
        allowHTTP1: true,
        settings,
        maxHeaderListPairs,
        maxSessionMemory: 64,
      }, onRequest);
    } else server = http2.createServer({ settings, maxHeaderListPairs, maxSessionMemory: 64 }, onRequest);
    // node:http's settings for the HTTP/1.x clients of an h2 socket are read from the server object.
    Object.assign(server, { keepAliveTimeout: opts.keepAliveTimeout, headersTimeout: opts.headersTimeout, requestTimeout: opts.requestTimeout, maxHeaderSize: opts.maxHeaderSize });
    const idleMs = srv.loc.keepaliveTimeoutMs ?? 75000;
    server.on('session', (session: http2.ServerHttp2Session) => {
      this.sessions.add(session);
      session.on('close', () => this.sessions.delete(session));
      // keepalive_timeout closes an idle connection (nginx uses it for HTTP/2 too); close() lets streams end.
      if (idleMs > 0) session.setTimeout(idleMs, () => session.close());
      if (this.stopping) session.close();
    });
    return server as unknown as http.Server;
  }

  /**
   * ssl_stapling: a handshake that asks for the certificate's status gets the response its server's Stapler
   * holds (looked up by the certificate the handshake uses, which SNI chose).
   */
  private staple(b: Binding, server: http.Server | https.Server): void {
    const byCert = new Map<string, Stapler>();
    for (const g of b.groups.values()) {
      for (const s of g.servers) {
        const ssl = s.loc.ssl;
        if (ssl.stapling !== true || ssl.certificate === undefined) continue;
        const der = pemCerts(ssl.certificate)[0];
        if (der === undefined) continue;
        const key = der.toString('base64');
        if (byCert.has(key)) continue;
        if (ssl.staplingFile !== undefined) byCert.set(key, new Stapler(der, der, undefined, false, 0, () => {}, ssl.staplingFile));
        else if (ssl.staplingIssuer !== undefined) {
          byCert.set(key, new Stapler(der, ssl.staplingIssuer, ssl.staplingUrl, ssl.staplingVerify === true, 30000, (level, msg) => this.errorLog.log(level, msg)));
        }
      }
    }
    if (byCert.size === 0) return;
    server.on('OCSPRequest', (cert: Buffer, _issuer: Buffer, cb: (err: Error | null, resp: Buffer | null) => void) => {
      cb(null, byCert.get(cert.toString('base64'))?.current() ?? null);
    });
  }

  /**
   * Binds every socket of the configuration, all at once (in a cluster worker each bind is a round trip to the
   * master: one after another, the first address would accept while the last still refused); rejects with
   * nginx's bind() message for the first address, in configuration order, that failed.
   */
  async listen(removeStaleUnix: boolean): Promise<void> {
    const results = await Promise.allSettled(this.conf.bindings.map((b) => this.bind(b, removeStaleUnix)));
    for (const r of results) if (r.status === 'rejected') throw r.reason;
  }

  private async bind(b: Binding, removeStaleUnix: boolean): Promise<void> {
    const server = this.makeServer(b);
    this.servers.push(server);
    if (b.unix && removeStaleUnix) {
      try {
        if (lstatSync(b.unix).isSocket()) unlinkSync(b.unix);
      } catch {
        // not there
      }
    }
    await new Promise<void>((resolve, reject) => {
      const onError = (e: NodeJS.ErrnoException) => {
        const addr = b.unix ? `unix:${b.unix}` : `${b.host.includes(':') ? `[${b.host}]` : b.host || '0.0.0.0'}:${b.port}`;
        reject(new Error(`bind() to ${addr} failed (${e.code === 'EADDRINUSE' ? '98: Address already in use' : e.code === 'EACCES' ? '13: Permission denied' : e.message})`));
      };
      server.once('error', onError);
      const done = () => {
        server.off('error', onError);
        server.on('error', (e) => this.errorLog.log('error', `server error: ${e.message}`));
        resolve();
      };
      if (b.unix) server.listen({ path: b.unix, backlog: b.backlog ?? 511 }, done);
      else server.listen({ port: b.port, host: b.host || (b.host === '' ? '0.0.0.0' : b.host), backlog: b.backlog ?? 511, ipv6Only: b.host === '::' }, done);
    });
  }

  /** Stops accepting. Graceful: requests in flight finish; idle connections close now, busy ones after. */
  async shutdown(graceful: boolean, timeoutMs = 0): Promise<void> {
    this.stopping = true;
    const closed = Promise.all(this.servers.map((s) => new Promise<void>((res) => s.close(() => res()))));
    if (!graceful) {
      for (const s of this.sockets) s.destroy();
      for (const s of this.sessions) s.destroy();
    } else {
      // HTTP/2 connections: GOAWAY, the streams in progress finish, then the session closes.
      for (const s of this.sessions) s.close();
      const closeIdle = (): void => {
        for (const s of this.servers) (s as Partial<http.Server>).closeIdleConnections?.();
        for (const l of this.lanes) l.closeIdle();
      };
      closeIdle();
      // Connections that finish a response later are closed by node once idle (server.close in progress).
      const idleSweep = setInterval(closeIdle, 100);
      const limit = timeoutMs > 0 ? setTimeout(() => {
        for (const s of this.sockets) s.destroy();
        for (const s of this.sessions) s.destroy();
      }, timeoutMs) : undefined;
      await closed;
      clearInterval(idleSweep);
      if (limit) clearTimeout(limit);
    }
    this.upstreams.closeIdle();
    await closed;
    await this.access.close();
  }
}
