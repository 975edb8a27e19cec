/**
 * One request/response exchange with one backend peer, over a new or an idle persistent connection.
 * The response is parsed by llhttp (the parser node:http uses), so malformed status lines, headers or
 * chunked framing are rejected the way Node rejects them. After a framed response on a connection the
 * backend agreed to keep, the socket goes back to the peer's idle list.
 */
import { connect, type Socket } from 'node:net';
import { HTTPParser } from 'node:_http_common';
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
}

export interface ExchangeHandlers {
  /** Return false to stop reading (the exchange then closes the connection). */
  onHeaders(status: number, headers: string[], httpMinor: number): boolean;
  onBody(chunk: Buffer): void;
  onEnd(): void;
  /** `responseStarted` is true once any response byte arrived; `reused` when an idle connection failed. */
  onFail(kind: FailKind, message: string, responseStarted: boolean, reused: boolean): void;
}

const TSGI_HEADER = 'x-tsgi-keepalive';

/**
 * Parsers are reused: a finished one goes back to the pool on the next turn of the event loop — never from
 * inside its own callbacks, where freeing the native parser would pull it from under execute().
 */
const parserPool: HTTPParser[] = [];
function takeParser(): HTTPParser {
  const p = parserPool.pop() ?? new HTTPParser();
  p.initialize(HTTPParser.RESPONSE, {}, 0, HTTPParser.kLenientNone);
  return p;
}
function releaseParser(p: HTTPParser): void {
  setImmediate(() => {
    p[HTTPParser.kOnHeaders] = p[HTTPParser.kOnHeadersComplete] = p[HTTPParser.kOnBody] = p[HTTPParser.kOnMessageComplete] = noop;
    if (parserPool.length < 256) parserPool.push(p);
    else p.close();
  });
}
function noop(): number {
  return 0;
}

function dropFromIdle(peer: Peer, s: Socket): void {
  const i = peer.idle.indexOf(s);
  if (i >= 0) peer.idle.splice(i, 1);
}

function parkIdle(peer: Peer, s: Socket, opts: ExchangeOptions): void {
  if (peer.idle.length >= opts.poolMax || s.destroyed) {
    s.destroy();
    return;
  }
  s.removeAllListeners('data');
  s.removeAllListeners('end');
  s.removeAllListeners('timeout');
  s.removeAllListeners('error');
  s.removeAllListeners('close');
  const drop = () => {
    dropFromIdle(peer, s);
    s.destroy();
  };
  // Anything from the backend while idle, or its close, ends the connection.
  s.on('data', drop);
  s.on('end', drop);
  s.on('error', drop);
  s.on('close', () => dropFromIdle(peer, s));
  s.setTimeout(opts.idleTimeoutMs, drop);
  peer.idle.push(s);
}

function takeIdle(peer: Peer): Socket | undefined {
  while (peer.idle.length) {
    const s = peer.idle.pop()!;
    if (s.destroyed || !s.writable) continue;
    s.removeAllListeners('data');
    s.removeAllListeners('end');
    s.removeAllListeners('timeout');
    s.removeAllListeners('error');
    s.removeAllListeners('close');
    s.setTimeout(0);
    return s;
  }
  return undefined;
}

export interface ExchangeControl {
  /** The client went away: drop the connection. */
  abort(): void;
  /** Stop / restart reading the backend (flow control when the client is slow and buffering is off). */
  pause(): void;
  resume(): void;
}

export function exchange(peer: Peer, request: Buffer[], opts: ExchangeOptions, h: ExchangeHandlers, allowReuse = true): ExchangeControl {
  let socket = allowReuse && opts.keep !== 'none' ? takeIdle(peer) : undefined;
  const reused = socket !== undefined;
  let connected = reused;
  let started = false;
  let done = false;
  let headersDone = false;
  let keepable = false;
  let connectTimer: NodeJS.Timeout | undefined;
  /** The request is written out: the idle timer switches from *_send_timeout to *_read_timeout. */
  let sent = false;
  peer.conns++;

  if (!socket) {
    socket = 'path' in peer.addr ? connect(peer.addr.path) : connect(peer.addr.port, peer.addr.host);
    socket.setNoDelay(true);
    connectTimer = setTimeout(() => fail('timeout', 'upstream timed out (110: Connection timed out) while connecting to upstream'), opts.connectTimeoutMs);
    socket.once('connect', () => {
      connected = true;
      clearTimeout(connectTimer);
      socket!.setTimeout(sent ? opts.readTimeoutMs : opts.sendTimeoutMs);
    });
  } else socket.setTimeout(opts.sendTimeoutMs);
  const s = socket;

  const parser = takeParser();
  let pendingHeaders: string[] = [];
  parser[HTTPParser.kOnHeaders] = (headers: string[]) => {
    pendingHeaders = pendingHeaders.concat(headers);
  };
  parser[HTTPParser.kOnHeadersComplete] = (_maj: number, minor: number, headers: string[] | undefined, _m: unknown, _u: unknown, status: number, _msg: string, _upgrade: boolean, shouldKeepAlive: boolean): number => {
    if (headers === undefined) headers = pendingHeaders;
    else if (pendingHeaders.length) headers = pendingHeaders.concat(headers);
    pendingHeaders = [];
    if (done) return 1; // bytes after the response this connection carried: ignored
    if (status >= 100 && status < 200 && status !== 101) return 0; // interim response: wait for the final one
    if (status === 101) {
      // Protocol upgrades are not relayed over uwsgi or proxied HTTP/1.0.
      fail('invalid_header', 'upstream sent "101 Switching Protocols", which tsgi-proxy does not relay, while reading response header from upstream');
      return 1;
    }
    headersDone = true;
    if (opts.keep === 'tsgi') {
      let offered = false;
      let closing = false;
      let framed = status === 204 || status === 304 || opts.head;
      for (let i = 0; i < headers.length; i += 2) {
        const k = headers[i]!.toLowerCase();
        if (k === TSGI_HEADER) offered = headers[i + 1]!.trim() === '1';
        else if (k === 'connection' && /close/i.test(headers[i + 1]!)) closing = true;
        else if (k === 'content-length' || (k === 'transfer-encoding' && /chunked/i.test(headers[i + 1]!))) framed = true;
      }
      keepable = offered && framed && !closing;
    } else if (opts.keep === 'http') keepable = shouldKeepAlive;
    if (!h.onHeaders(status, headers, minor)) {
      finish(false);
      return 0;
    }
    return opts.head ? 1 : 0; // 1: this response has no body
  };
  parser[HTTPParser.kOnBody] = (chunk: Buffer) => {
    if (!done) h.onBody(chunk);
  };
  parser[HTTPParser.kOnMessageComplete] = () => {
    if (!headersDone || done) return;
    finish(keepable);
    h.onEnd();
  };
  parser[HTTPParser.kOnExecute] = () => {};

  function cleanup(): void {
    clearTimeout(connectTimer);
    peer.conns--;
    releaseParser(parser);
  }

  function finish(keep: boolean): void {
    if (done) return;
    done = true;
    cleanup();
    if (keep && !s.destroyed) parkIdle(peer, s, opts);
    else s.destroy();
  }

  function fail(kind: FailKind, message: string): void {
    if (done) return;
    done = true;
    cleanup();
    s.destroy();
    h.onFail(kind, message, started, reused);
  }

  s.on('data', (buf: Buffer) => {
    if (done) return;
    started = true;
    const rc = parser.execute(buf);
    if (rc instanceof Error) {
      const code = (rc as Error & { code?: string }).code ?? 'HPE_ERROR';
      fail('invalid_header', headersDone ? `upstream sent invalid response body (${code})` : `upstream sent invalid header (${code}) while reading response header from upstream`);
    }
  });
  s.on('end', () => {
    if (done) return;
    // End of a read-until-close body, or a response cut short.
    const rc = parser.finish();
    if (done) return;
    if (rc instanceof Error || !headersDone) {
      fail(headersDone ? 'error' : started ? 'invalid_header' : 'error', headersDone ? 'upstream prematurely closed connection while reading upstream' : 'upstream prematurely closed connection while reading response header from upstream');
      return;
    }
    finish(false);
    h.onEnd();
  });
  s.on('timeout', () => {
    if (!sent) {
      fail('timeout', 'upstream timed out (110: Connection timed out) while sending request to upstream');
      return;
    }
    fail('timeout', headersDone ? 'upstream timed out (110: Connection timed out) while reading upstream' : 'upstream timed out (110: Connection timed out) while reading response header from upstream');
  });
  s.on('error', (e: NodeJS.ErrnoException) => {
    const what = !connected ? 'connect() failed' : started ? 'recv() failed' : 'send() failed';
    fail('error', `${what} (${e.code ?? e.message}) while ${connected ? (started ? 'reading upstream' : 'sending request to upstream') : 'connecting to upstream'}`);
  });
  s.on('close', () => {
    if (!done) fail('error', 'upstream closed the connection');
  });

  const onSent = (e?: Error | null) => {
    if (e || done) return;
    sent = true;
    if (connected) s.setTimeout(opts.readTimeoutMs);
  };
  if (request.length === 1) s.write(request[0]!, onSent);
  else {
    s.cork();
    for (let i = 0; i < request.length; i++) s.write(request[i]!, i === request.length - 1 ? onSent : undefined);
    s.uncork();
  }

  return {
    abort() {
      if (done) return;
      done = true;
      cleanup();
      s.destroy();
    },
    pause: () => s.pause(),
    resume: () => s.resume(),
  };
}
