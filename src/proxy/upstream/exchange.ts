/**
 * One request/response exchange with one backend peer, over a new or an idle persistent connection.
 * The response is parsed by llhttp (the parser node:http uses), so malformed status lines, headers or
 * chunked framing are rejected the way Node rejects them. After a framed response on a connection the
 * backend agreed to keep, the connection goes back to the peer's idle list.
 *
 * A connection is a Link: its socket, its parser and its listeners live as long as the connection, and the
 * listeners pass events to the exchange in progress (or, while idle, close the link). Taking and parking a
 * link therefore costs no listener or parser set-up per request.
 */
import { connect, isIP, type Socket } from 'node:net';
import { connect as tlsConnect, type ConnectionOptions, type TLSSocket } from 'node:tls';
import { VERIFY_ERRORS } from '../tlsclient.js';
import { HTTPParser } from 'node:_http_common';
import { nativeHandle, setReading, touchIdleTimer } from '../../types/socket-internals.js';
import type { Peer } from './peers.js';

export type FailKind = 'error' | 'timeout' | 'invalid_header';

export interface ExchangeOptions {
  connectTimeoutMs: number;
  readTimeoutMs: number;
  sendTimeoutMs: number;
  /** The request was HEAD: the response has no body whatever its headers say. */
  head: boolean;
  /**
   * How the connection may be kept: 'tsgi' when the response carries X-Tsgi-Keepalive: 1 and explicit
   * framing; 'http' when llhttp says the HTTP/1.1 response allows it; 'none' to always close.
   */
  keep: 'tsgi' | 'http' | 'none';
  poolMax: number;
  idleTimeoutMs: number;
  /** The upstream's keepalive_requests and keepalive_time: a link that reached either is closed, not parked. */
  maxUses: number;
  maxAgeMs: number;
  /** https:// and suwsgi://: TLS to the backend (undefined: plain TCP). */
  tls: UpstreamTls | undefined;
  /** *_request_buffering off: the body follows the request as it arrives (onConnected hands the socket). */
  streamBody: boolean;
  /**
   * The request may share a write, and a link, with the other requests of this event-loop turn for the same
   * peer (docs/protocol-keepalive.md, pipelining): a tsgi request with no body and no upgrade.
   */
  pipeline: boolean;
}

/** One request's TLS settings: node:tls options without the address, and the names nginx's log uses. */
export interface UpstreamTls {
  options: ConnectionOptions;
  /** The name the certificate is checked against (*_ssl_name or the target's host). */
  name: string;
  reuseSession: boolean;
}

/** What pass.ts gives an exchange; one object per request can serve as both options and handlers. */
export interface ExchangeHandlers {
  /** Return false to stop reading (the exchange then closes the connection). */
  /** `reason`: the status line's reason phrase ("OK"), passed on to the client as nginx does. */
  onHeaders(status: number, headers: string[], httpMinor: number, reason: string): boolean;
  onBody(chunk: Buffer): void;
  /** A read from the backend was parsed and the response is not complete yet. */
  onReadParsed(): void;
  onEnd(): void;
  /** `responseStarted` is true once any response byte arrived; `reused` when an idle connection failed. */
  onFail(kind: FailKind, message: string, responseStarted: boolean, reused: boolean): void;
  /** A 101: whether the client asked for an upgrade, so the connection may become a tunnel. */
  upgradeWanted(): boolean;
  /** The 101 head (relayed first), then the backend socket, free of the link, and the bytes after the head. */
  onUpgrade(status: number, headers: string[], reason: string): void;
  onTunnel(socket: Socket, rest: Buffer): void;
  /** With streamBody: the connection is up (the request head is written): the body may follow on it. */
  onConnected(socket: Socket): void;
}

const TSGI_HEADER = 'x-tsgi-keepalive';
const EMPTY = Buffer.alloc(0);

/**
 * Parsers are reused: a closed link's parser goes back to the pool on the next turn of the event loop —
 * never from inside its own callbacks, where freeing the native parser would pull it from under execute().
 */
const parserPool: HTTPParser[] = [];
function takeParser(): HTTPParser {
  const p = parserPool.pop() ?? new HTTPParser();
  p.initialize(HTTPParser.RESPONSE, {}, 0, HTTPParser.kLenientNone);
  return p;
}
function releaseParser(p: HTTPParser, consumed: boolean): void {
  setImmediate(() => {
    // Detached from its (closed) handle here, outside any of its callbacks; a no-op once the handle is gone.
    if (consumed) p.unconsume();
    p[HTTPParser.kOnHeaders] = p[HTTPParser.kOnHeadersComplete] = p[HTTPParser.kOnBody] = p[HTTPParser.kOnMessageComplete] = noop;
    if (parserPool.length < 256) parserPool.push(p);
    else p.close();
  });
}
function noop(): number {
  return 0;
}

export interface ExchangeControl {
  /** The client went away: drop the connection. */
  abort(): void;
  /** Stop / restart reading the backend (flow control when the client is slow and buffering is off). */
  pause(): void;
  resume(): void;
}

/** One connection to a peer, busy with one exchange at a time or idle in the peer's list. */
export class Link {
  readonly parser: HTTPParser;
  /** The exchange whose response is being read; null while idle. */
  ex: Exchange | null = null;
  /** Exchanges sent after `ex` on this link (pipelined), whose responses follow its response in order. */
  queue: Exchange[] | null = null;
  /** The backend answered X-Tsgi-Keepalive: 2 on this link: it reads pipelined requests. */
  pipelined = false;
  /** Idle since the last response, waiting in peer.idle. */
  idle = false;
  /** The socket's current inactivity timeout, so an unchanged value is not set again. */
  private timeoutMs = -1;
  private released = false;
  /**
   * llhttp reads the socket's handle directly (as node:http's server does with its clients): no Buffer,
   * stream push or 'data' event per read. Reads then reach JavaScript only as parser callbacks and kOnExecute.
   */
  private readonly consumed: boolean;
  /** Parked by the read being parsed (consumed reads report after the response completed). */
  justParked = false;
  /** Responses carried, and when the connection was made (keepalive_requests, keepalive_time). */
  private uses = 0;
  private readonly born = Date.now();

  constructor(readonly peer: Peer, readonly socket: Socket, readonly secure: boolean) {
    const p = (this.parser = takeParser());
    p[HTTPParser.kOnHeaders] = (headers: string[]) => {
      const ex = this.ex;
      if (ex) ex.pendingHeaders = ex.pendingHeaders ? ex.pendingHeaders.concat(headers) : headers;
    };
    p[HTTPParser.kOnHeadersComplete] = (_maj: number, minor: number, headers: string[] | undefined, _m: unknown, _u: unknown, status: number, reason: string, _upgrade: boolean, shouldKeepAlive: boolean): number => {
      const ex = this.ex;
      // A response nobody asked for (bytes after the one this link carried): the link is out of step.
      if (!ex) {
        this.unsolicited();
        return 1;
      }
      return ex.headersComplete(minor, headers, status, reason, shouldKeepAlive);
    };
    p[HTTPParser.kOnBody] = (chunk: Buffer) => {
      this.ex?.body(chunk);
    };
    p[HTTPParser.kOnMessageComplete] = () => {
      this.ex?.messageComplete();
    };
    const s = socket;
    // A TLS socket's bytes are decrypted by its stream: the parser reads them from 'data'.
    const handle = secure ? null : nativeHandle(s);
    if (handle !== null) {
      p[HTTPParser.kOnExecute] = (rc: number | Error) => {
        // The stream's own read path would have restarted the idle timer; a consumed read does not.
        touchIdleTimer(s);
        const ex = this.ex;
        if (ex) return ex.executed(rc);
        if (this.justParked) {
          // The read that completed the response (and parked the link): fine, unless what followed it in the
          // same read did not parse, which puts the link out of step.
          this.justParked = false;
          if (rc instanceof Error) this.destroy();
          return;
        }
        // Anything from the backend while idle ends the connection.
        this.unsolicited();
      };
      p.consume(handle);
      this.consumed = true;
    } else {
      p[HTTPParser.kOnExecute] = noop;
      this.consumed = false;
    }
    // Without a consumed handle, bytes come here; with one, the listener keeps the stream flowing so that
    // the end of the stream is still reported.
    const onData = (buf: Buffer): void => {
      const ex = this.ex;
      if (!ex) {
        // Anything from the backend while idle ends the connection.
        this.unsolicited();
        return;
      }
      ex.data(buf);
    };
    const onEnd = (): void => {
      if (this.ex) this.ex.end();
      else this.unsolicited();
    };
    const onTimeout = (): void => {
      if (this.ex) this.ex.timeout();
      else this.unsolicited();
    };
    const onError = (e: NodeJS.ErrnoException): void => {
      if (this.ex) this.ex.error(e);
      else this.unsolicited();
    };
    const onClose = (): void => {
      if (this.ex) this.ex.closed();
      this.dropIdle();
      this.release();
    };
    s.on('data', onData).on('end', onEnd).on('timeout', onTimeout).on('error', onError).on('close', onClose);
    this.listeners = [['data', onData], ['end', onEnd], ['timeout', onTimeout], ['error', onError], ['close', onClose]];
  }

  private readonly listeners: Array<[string, Parameters<Socket['removeListener']>[1]]>;

  /**
   * After a relayed 101: the socket leaves the link (its listeners and parser) for a tunnel. `rc` is what
   * llhttp parsed of the read that held the head; the bytes after it already belong to the new protocol.
   */
  detach(rc: number, buf: Buffer | undefined): Buffer {
    const p = this.parser;
    const b = buf ?? (this.consumed ? p.getCurrentBuffer() : undefined);
    const rest = b !== undefined && rc < b.length ? Buffer.from(b.subarray(rc)) : EMPTY;
    this.ex = null;
    for (const [ev, fn] of this.listeners) this.socket.removeListener(ev, fn);
    if (this.consumed) p.unconsume();
    this.released = true;
    releaseParser(p, false);
    this.socket.setTimeout(0);
    return rest;
  }

  /** A pipelined response completed on this link without parking it: the upstream's keepalive_requests counts it. */
  countUse(): void {
    this.uses++;
  }

  setTimeout(ms: number): void {
    if (ms === this.timeoutMs) return;
    this.timeoutMs = ms;
    this.socket.setTimeout(ms);
  }

  /** After a kept response: back to the peer's idle list (or closed when the list is full). */
  park(opts: ExchangeOptions): void {
    this.ex = null;
    const peer = this.peer;
    if (peer.idle.length >= opts.poolMax || this.socket.destroyed || ++this.uses >= opts.maxUses || Date.now() - this.born >= opts.maxAgeMs) {
      this.destroy();
      return;
    }
    this.idle = true;
    this.justParked = true;
    this.setTimeout(opts.idleTimeoutMs);
    peer.idle.push(this);
  }

  destroy(): void {
    this.ex = null;
    this.dropIdle();
    this.socket.destroy();
    this.release();
    // Requests sent behind the one that ended the link got no response byte: each is tried again on its
    // own connection (pass.ts, as for a kept link the backend had closed).
    const q = this.queue;
    if (q !== null) {
      this.queue = null;
      for (let i = 0; i < q.length; i++) q[i]!.fail('error', 'upstream closed the connection');
    }
  }

  private unsolicited(): void {
    this.destroy();
  }

  private dropIdle(): void {
    if (!this.idle) return;
    this.idle = false;
    const list = this.peer.idle;
    const i = list.lastIndexOf(this);
    if (i >= 0) list.splice(i, 1);
  }

  private release(): void {
    if (this.released) return;
    this.released = true;
    releaseParser(this.parser, this.consumed);
  }

  /** Stops (or restarts) reading the backend: through the handle when llhttp reads it directly. */
  pauseReading(): void {
    setReading(this.socket, this.consumed, false);
  }

  resumeReading(): void {
    setReading(this.socket, this.consumed, true);
  }
}

function takeIdle(peer: Peer, secure: boolean): Link | undefined {
  const list = peer.idle;
  for (let i = list.length - 1; i >= 0; i--) {
    const l = list[i]!;
    // One upstream block may be reached over http:// and https://: only a link of the same kind is taken.
    if (l.secure !== secure) continue;
    if (i === list.length - 1) list.pop();
    else list.splice(i, 1);
    l.idle = false;
    if (l.socket.destroyed || !l.socket.writable) {
      l.destroy();
      continue;
    }
    return l;
  }
  return undefined;
}

/** nginx's words for a TLS handshake that failed (undefined: not a TLS error). */
function tlsFailure(e: NodeJS.ErrnoException, tls: UpstreamTls): string | undefined {
  const code = e.code ?? '';
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') return `upstream SSL certificate does not match "${tls.name}" while SSL handshaking to upstream`;
  const v = VERIFY_ERRORS[code];
  if (v !== undefined) return `upstream SSL certificate verify error: (${v[0]}:${v[1]}) while SSL handshaking to upstream`;
  if (code.startsWith('ERR_SSL') || code.startsWith('ERR_TLS') || (e as { library?: string }).library === 'SSL routines') {
    return `SSL_do_handshake() failed (SSL: ${e.message}) while SSL handshaking to upstream`;
  }
  return undefined;
}

/** One request/response on a link. */
export class Exchange implements ExchangeControl {
  started = false;
  done = false;
  headersDone = false;
  keepable = false;
  /** The request is written out: the idle timer switches from *_send_timeout to *_read_timeout. */
  sent = false;
  connected: boolean;
  pendingHeaders: string[] | null = null;
  /** A 101 was relayed: the read that carried it hands the socket to a tunnel. */
  upgrading = false;
  /**
   * Pipelined: this exchange's response became the one being read in the middle of a read. That read's end
   * (executed) says nothing of whether any byte of this response came with it.
   */
  midRead = false;
  private connectTimer: NodeJS.Timeout | undefined;

  constructor(
    readonly link: Link,
    readonly opts: ExchangeOptions,
    public h: ExchangeHandlers,
    readonly reused: boolean,
  ) {
    this.connected = reused;
  }

  headersComplete(minor: number, headers: string[] | undefined, status: number, reason: string, shouldKeepAlive: boolean): number {
    this.started = true;
    const pending = this.pendingHeaders;
    if (pending !== null) {
      headers = headers === undefined ? pending : pending.concat(headers);
      this.pendingHeaders = null;
    } else if (headers === undefined) headers = [];
    if (this.done) return 1; // bytes after the response this connection carried: ignored
    if (status >= 100 && status < 200 && status !== 101) return 0; // interim response: wait for the final one
    if (status === 101 && this.h.upgradeWanted()) {
      // The connection becomes a tunnel once this read is parsed (executed/data below); the link is done.
      this.upgrading = true;
      this.done = true;
      this.cleanup();
      this.h.onUpgrade(status, headers, reason);
      return 0;
    }
    if (status === 101) {
      // A 101 the client did not ask for (no Upgrade header) cannot be relayed as a response.
      this.fail('invalid_header', 'upstream sent "101 Switching Protocols", which tsgi-proxy does not relay, while reading response header from upstream');
      return 1;
    }
    this.headersDone = true;
    const opts = this.opts;
    if (opts.keep === 'tsgi') {
      let offered = false;
      let closing = false;
      let framed = status === 204 || status === 304 || opts.head;
      for (let i = 0; i < headers.length; i += 2) {
        const k = headers[i]!.toLowerCase();
        if (k === TSGI_HEADER) {
          const v = headers[i + 1]!.trim();
          offered = v === '1' || v === '2';
          this.link.pipelined = v === '2';
        }
        else if (k === 'connection' && /close/i.test(headers[i + 1]!)) closing = true;
        else if (k === 'content-length' || (k === 'transfer-encoding' && /chunked/i.test(headers[i + 1]!))) framed = true;
      }
      this.keepable = offered && framed && !closing;
    } else if (opts.keep === 'http') this.keepable = shouldKeepAlive;
    if (!this.h.onHeaders(status, headers, minor, reason)) {
      this.finish(false);
      return 0;
    }
    return opts.head ? 1 : 0; // 1: this response has no body
  }

  body(chunk: Buffer): void {
    if (!this.done) this.h.onBody(chunk);
  }

  messageComplete(): void {
    if (!this.headersDone || this.done) return;
    this.finish(this.keepable);
    this.h.onEnd();
  }

  data(buf: Buffer): void {
    if (this.done) return;
    this.started = true;
    const rc = this.link.parser.execute(buf);
    if (this.upgrading) this.tunnel(rc, buf);
    else this.executed(rc);
  }

  private tunnel(rc: number | Error, buf: Buffer | undefined): void {
    this.upgrading = false;
    const link = this.link;
    const rest = link.detach(typeof rc === 'number' ? rc : Number.MAX_SAFE_INTEGER, buf);
    this.h.onTunnel(link.socket, rest);
  }

  /** What llhttp made of the bytes of one read (parsed by execute() above, or straight from the handle). */
  executed(rc: number | Error): void {
    if (this.upgrading) {
      this.tunnel(rc, undefined);
      return;
    }
    if (this.midRead) this.midRead = false;
    else this.started = true;
    if (rc instanceof Error) {
      if (this.done) {
        // The response was complete; what followed it did not parse: the link is out of step.
        if (this.link.ex === null) this.link.destroy();
        return;
      }
      const code = (rc as Error & { code?: string }).code ?? 'HPE_ERROR';
      this.fail('invalid_header', this.headersDone ? `upstream sent invalid response body (${code})` : `upstream sent invalid header (${code}) while reading response header from upstream`);
      return;
    }
    if (!this.done) this.h.onReadParsed();
  }

  end(): void {
    if (this.done) return;
    // End of a read-until-close body, or a response cut short.
    const rc = this.link.parser.finish();
    if (this.done) return;
    if (rc instanceof Error || !this.headersDone) {
      this.fail(this.headersDone ? 'error' : this.started ? 'invalid_header' : 'error', this.headersDone ? 'upstream prematurely closed connection while reading upstream' : 'upstream prematurely closed connection while reading response header from upstream');
      return;
    }
    this.finish(false);
    this.h.onEnd();
  }

  timeout(): void {
    // Without a write callback (equal timeouts), the request was sent once nothing of it is left buffered.
    if (!this.sent && (this.opts.sendTimeoutMs !== this.opts.readTimeoutMs || !this.connected || this.link.socket.writableLength !== 0)) {
      this.fail('timeout', 'upstream timed out (110: Connection timed out) while sending request to upstream');
      return;
    }
    this.fail('timeout', this.headersDone ? 'upstream timed out (110: Connection timed out) while reading upstream' : 'upstream timed out (110: Connection timed out) while reading response header from upstream');
  }

  error(e: NodeJS.ErrnoException): void {
    const tls = this.opts.tls;
    if (tls !== undefined) {
      const m = tlsFailure(e, tls);
      if (m !== undefined) {
        this.fail('error', m);
        return;
      }
    }
    const what = !this.connected ? 'connect() failed' : this.started ? 'recv() failed' : 'send() failed';
    this.fail('error', `${what} (${e.code ?? e.message}) while ${this.connected ? (this.started ? 'reading upstream' : 'sending request to upstream') : 'connecting to upstream'}`);
  }

  closed(): void {
    if (!this.done) this.fail('error', 'upstream closed the connection');
  }

  onConnect(): void {
    this.connected = true;
    clearTimeout(this.connectTimer);
    this.link.setTimeout(this.sent ? this.opts.readTimeoutMs : this.opts.sendTimeoutMs);
    if (this.opts.streamBody) this.h.onConnected(this.link.socket);
  }

  startConnectTimer(): void {
    this.connectTimer = setTimeout(() => this.fail('timeout', 'upstream timed out (110: Connection timed out) while connecting to upstream'), this.opts.connectTimeoutMs);
  }

  onSent(e?: Error | null): void {
    if (e || this.done) return;
    this.sent = true;
    if (this.connected) this.link.setTimeout(this.opts.readTimeoutMs);
  }

  cleanup(): void {
    if (this.connectTimer !== undefined) clearTimeout(this.connectTimer);
    this.link.peer.conns--;
  }

  private finish(keep: boolean): void {
    if (this.done) return;
    this.done = true;
    this.cleanup();
    const link = this.link;
    const q = link.queue;
    if (q !== null && keep && !link.socket.destroyed) {
      // Pipelined: the next response on this link is the next exchange's (parsed from the same read).
      link.countUse();
      const next = (link.ex = q.shift()!);
      next.midRead = true;
      if (q.length === 0) link.queue = null;
      return;
    }
    if (keep && !link.socket.destroyed) link.park(this.opts);
    else link.destroy();
  }

  fail(kind: FailKind, message: string): void {
    if (this.done) return;
    this.done = true;
    this.cleanup();
    this.link.destroy();
    this.h.onFail(kind, message, this.started, this.reused);
  }

  abort(): void {
    if (this.done) return;
    const link = this.link;
    if (link.queue !== null) {
      // The link carries other clients' requests: this response is still read (and dropped), theirs follow.
      this.h = MUTED;
      link.resumeReading();
      return;
    }
    this.done = true;
    this.cleanup();
    link.destroy();
  }

  pause(): void {
    this.link.pauseReading();
  }

  resume(): void {
    this.link.resumeReading();
  }
}

/** The handlers of an exchange whose client left while its link carried other requests. */
const MUTED: ExchangeHandlers = {
  onHeaders: () => true,
  onBody: noop,
  onReadParsed: noop,
  onEnd: noop,
  onFail: noop,
  upgradeWanted: () => false,
  onUpgrade: noop,
  onTunnel: noop,
  onConnected: noop,
};

/**
 * Pipelining (docs/protocol-keepalive.md): the requests for one peer that arrive in the same turn of the event
 * loop share one link, up to this many, and leave in one write when the turn ends. One backend worker then
 * reads them in one read and answers them in order, without a wake-up per request.
 */
const PIPELINE_DEPTH = 4;

function endBatch(peer: Peer, link: Link): void {
  if (peer.batch === link) peer.batch = null;
  link.socket.uncork();
}

/** A TLS connection to a peer, offering its last session when *_ssl_session_reuse is on. */
function connectTls(peer: Peer, tls: UpstreamTls): TLSSocket {
  const a = peer.addr;
  // A resumed session is not checked again (Node has no peer certificate then): a location that verifies
  // resumes only a session verified for the same name.
  const verify = tls.options.checkServerIdentity !== undefined;
  const offer = tls.reuseSession && (!verify || peer.tlsSessionName === tls.name);
  const o: ConnectionOptions = { ...tls.options, session: offer ? peer.tlsSession : undefined };
  if ('path' in a) o.path = a.path;
  else {
    o.host = a.host;
    o.port = a.port;
  }
  const s = tlsConnect(o);
  if (tls.reuseSession) {
    s.on('session', (session: Buffer) => {
      peer.tlsSession = session;
      peer.tlsSessionName = verify ? tls.name : '';
    });
  }
  return s;
}

/** Whether a name may be sent as SNI (RFC 6066: not an address literal, as nginx checks). */
export function sniName(name: string): boolean {
  return name !== '' && isIP(name) === 0;
}

export function exchange(peer: Peer, request: Buffer[], opts: ExchangeOptions, h: ExchangeHandlers, allowReuse = true): ExchangeControl {
  const tls = opts.tls;
  const onSent0 = opts.sendTimeoutMs !== opts.readTimeoutMs;
  if (opts.pipeline && allowReuse) {
    const b = peer.batch;
    if (b !== null && b.ex !== null && !b.socket.destroyed && b.secure === (tls !== undefined)) {
      peer.conns++;
      const ex = new Exchange(b, opts, h, true);
      const q = (b.queue ??= []);
      q.push(ex);
      if (q.length + 1 >= PIPELINE_DEPTH) peer.batch = null;
      b.socket.write(request[0]!, onSent0 ? (e?: Error | null): void => ex.onSent(e) : undefined);
      return ex;
    }
  }
  let link = allowReuse && opts.keep !== 'none' ? takeIdle(peer, tls !== undefined) : undefined;
  peer.conns++;
  let ex: Exchange;
  if (link) {
    ex = new Exchange(link, opts, h, true);
    link.ex = ex;
    link.justParked = false;
    link.setTimeout(opts.sendTimeoutMs);
    if (opts.pipeline && link.pipelined) {
      // This link collects the turn's other requests for the peer; the corked write leaves when the turn ends.
      peer.batch = link;
      link.socket.cork();
      setImmediate(endBatch, peer, link);
    }
  } else {
    const socket = tls !== undefined ? connectTls(peer, tls) : 'path' in peer.addr ? connect(peer.addr.path) : connect(peer.addr.port, peer.addr.host);
    socket.setNoDelay(true);
    link = new Link(peer, socket, tls !== undefined);
    ex = new Exchange(link, opts, h, false);
    link.ex = ex;
    ex.startConnectTimer();
    // With TLS, *_connect_timeout covers the handshake too (as nginx's).
    socket.once(tls !== undefined ? 'secureConnect' : 'connect', () => {
      if (link!.ex === ex) ex.onConnect();
    });
  }
  const s = link.socket;
  // The write callback only switches the timer from the send to the read timeout: when they are equal (the
  // defaults), it is left out, which spares the stream a callback per request.
  const onSent = onSent0 ? (e?: Error | null): void => ex.onSent(e) : undefined;
  if (request.length === 1) s.write(request[0]!, onSent);
  else {
    s.cork();
    for (let i = 0; i < request.length; i++) s.write(request[i]!, i === request.length - 1 ? onSent : undefined);
    s.uncork();
  }
  return ex;
}
