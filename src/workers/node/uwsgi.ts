/**
 * The uwsgi side: the packet of vars, then CONTENT_LENGTH body bytes (as nginx's uwsgi_pass sends them),
 * answered with an HTTP head and the body.
 *
 * A plain uwsgi client (nginx, the real uWSGI's tools) gets one request per connection, the body's end marked
 * by closing it: no chunked encoding, Connection: close. tsgi-proxy offers tsgi's keep-alive extension
 * (docs/protocol-keepalive.md: the var TSGI_KEEPALIVE=1); then the body's end is explicit (Content-Length,
 * chunked, or no body), the head says X-Tsgi-Keepalive: 1 and the connection is read for the next packet. A
 * response whose end cannot be made explicit (Connection: close from the app, an HTTP/1.0 request without a
 * length) is answered the plain way.
 *
 * Each request becomes node's own IncomingMessage and ServerResponse over the connection, so every app
 * contract (an Express app included) runs over uwsgi exactly as over HTTP: node's ServerResponse writes the
 * head and frames the body, the body streams with back-pressure both ways.
 */
import { IncomingMessage, ServerResponse } from 'node:http';
import net, { type Socket } from 'node:net';
import { decodePacket, type UwsgiPacket } from '../../protocol/uwsgi.js';
import type { Exchanges } from './exchange.js';
import type { WorkerLog } from './log.js';
import { UWSGI_VARS } from './request-info.js';

export interface UwsgiOptions {
  /** Largest vars block accepted (buffer-size). */
  bufferSize: number;
  /** A client silent this long while its request is read is dropped (socket-timeout). */
  timeoutMs: number;
}

/**
 * Kept connections a worker holds between requests; beyond it the least recently used one is closed (the
 * Python worker's limit per core: a Node worker is one core).
 */
export const MAX_IDLE = 64;
/** Bytes read after a request's body while its response is in progress, before reading pauses. */
const HELD_MAX = 64 * 1024;

/** node's marker for "write() returned false, 'drain' is owed" on an OutgoingMessage (see onDrain). */
const kNeedDrain: symbol | undefined = (() => {
  const probe = new ServerResponse(new IncomingMessage(new net.Socket()));
  return Object.getOwnPropertySymbols(probe).find((s) => s.description === 'kNeedDrain');
})();

type Conn = Socket & { _httpMessage?: (ServerResponse & { [key: symbol]: unknown }) | null };

/** node:http's server emits a response's 'drain' from its socket's; this does the same for uwsgi. */
function onDrain(this: Conn): void {
  const res = this._httpMessage;
  if (!res || res.writableEnded) return;
  if (kNeedDrain === undefined) {
    res.emit('drain');
  } else if (res[kNeedDrain]) {
    res[kNeedDrain] = false;
    res.emit('drain');
  }
}

function emitClose(res: ServerResponse): void {
  res.emit('close');
}

function ignore(): void {
  /* a reset or a broken pipe: 'close' follows, and the response (if any) sees it */
}

/** HTTP_USER_AGENT → user-agent, computed once per name. */
const headerNames = new Map<string, string>();
function headerName(key: string): string | undefined {
  if (key.charCodeAt(0) === 0x48 /* H */ && key.startsWith('HTTP_')) {
    let name = headerNames.get(key);
    if (name === undefined) {
      name = key.slice(5).toLowerCase().replace(/_/g, '-');
      if (headerNames.size < 4096) headerNames.set(key, name);
    }
    return name;
  }
  if (key === 'CONTENT_TYPE') return 'content-type';
  if (key === 'CONTENT_LENGTH') return 'content-length';
  return undefined;
}

/** What the framing reads and amends of node's OutgoingMessage (node 18 to 22): the head as built, and how the body ends. */
interface Outgoing {
  _header: string | null;
  _last: boolean;
  _hasBody: boolean;
  chunkedEncoding: boolean;
  /** The body's length when it all came with end() before the head was built. */
  _contentLength: number | null;
  _removedContLen: boolean;
  _storeHeader(firstLine: string, headers: unknown): void;
}
const storeHeader = (ServerResponse.prototype as unknown as Outgoing)._storeHeader;
const CONTENT_LENGTH = /\r\ncontent-length:[ \t]*(\d+)[ \t]*\r\n/i;
/** The line node adds to a head it will keep alive (the extension has no use for it: the marker says it). */
const NODE_KEEP_ALIVE = '\r\nConnection: keep-alive\r\n';

/**
 * A response on a uwsgi connection. When the request offered the keep-alive extension, node builds the head
 * as for a keep-alive HTTP client: Content-Length when the app gave it or the whole body came with end(),
 * else chunked (HTTP/1.1 requests only), nothing for HEAD, 1xx, 204 and 304; or Connection: close when the
 * app said so or the body's end can only be the close (HTTP/1.0, a body streamed without a length). `frame` then marks a head whose body ends explicitly.
 */
class UwsgiResponse extends ServerResponse {
  /** The request carried TSGI_KEEPALIVE=1 (or 2: its front server may pipeline, which this server reads). */
  offered = false;
  /** The value the head's X-Tsgi-Keepalive echoes: the request's. */
  marker = '1';
  /** The head went out marked X-Tsgi-Keepalive: 1; once complete, the connection carries the next request. */
  kept = false;
  /** The Content-Length of a kept response (-1: chunked, or no body), checked against what was sent. */
  declared = -1;
  /** socket.bytesWritten when the head was built: the body's size is measured from there. */
  written0 = 0;

  _storeHeader(firstLine: string, headers: unknown): void {
    if (!this.offered) {
      storeHeader.call(this, firstLine, headers);
      return;
    }
    const out = this as unknown as UwsgiResponse & Outgoing;
    if (!this.useChunkedEncodingByDefault && typeof out._contentLength === 'number' && !out._removedContLen) {
      // An HTTP/1.0 request, the whole body known: node gives the Content-Length it gives HTTP/1.1 requests.
      this.useChunkedEncodingByDefault = true;
      storeHeader.call(this, firstLine, headers);
      this.useChunkedEncodingByDefault = false;
    } else {
      storeHeader.call(this, firstLine, headers);
    }
    frame(out);
  }
}

function frame(res: UwsgiResponse & Outgoing): void {
  let head = res._header!;
  let keep = !res._last;
  if (keep && res._hasBody && !res.chunkedEncoding) {
    // Neither chunked nor bodiless, yet not the last: the length is in the head (the app's, or node's).
    const m = CONTENT_LENGTH.exec(head);
    if (m === null) keep = false;
    else {
      res.declared = Number(m[1]);
      res.written0 = res.socket?.bytesWritten ?? 0;
    }
  }
  const i = head.indexOf(NODE_KEEP_ALIVE);
  if (keep) {
    if (i !== -1) head = head.slice(0, i) + head.slice(i + NODE_KEEP_ALIVE.length - 2);
    res._header = `${head.slice(0, -2)}X-Tsgi-Keepalive: ${res.marker}\r\n\r\n`;
    res.kept = true;
  } else {
    res._last = true;
    if (i !== -1) res._header = `${head.slice(0, i)}\r\nConnection: close\r\n${head.slice(i + NODE_KEEP_ALIVE.length)}`;
  }
}

export class UwsgiServer {
  readonly server: net.Server;
  /** Kept connections between requests, least recently used first. */
  readonly idle = new Set<Socket>();

  constructor(
    readonly exchanges: Exchanges,
    readonly log: WorkerLog,
    readonly opts: UwsgiOptions,
  ) {
    // allowHalfOpen: the client's end is handled here (see UwsgiConnection.end), not by node ending our side behind our back.
    this.server = net.createServer({ allowHalfOpen: true, noDelay: true }, (socket) => {
      this.exchanges.countConnection(socket);
      new UwsgiConnection(socket, this);
    });
  }

  /**
   * The worker stops: a kept connection between requests is closed now (tsgi-proxy sends a request that
   * crossed the close again, on a new connection); one in the middle of a request closes once it is answered.
   */
  stop(): void {
    for (const socket of this.idle) socket.destroy();
    this.idle.clear();
  }

  /** A kept connection waits for its next request; the least recently used one goes beyond MAX_IDLE. */
  rest(socket: Socket): void {
    const idle = this.idle;
    idle.add(socket);
    if (idle.size > MAX_IDLE) {
      const oldest = idle.values().next().value as Socket;
      idle.delete(oldest);
      oldest.destroy();
    }
  }
}

/** One uwsgi connection: a request, or (kept alive) one request after another. */
class UwsgiConnection {
  /** Reading a request packet (false: a request is being answered). */
  private reading = true;
  /** What has arrived of the packet being read. */
  private buf: Buffer | undefined;
  /** socket-timeout is armed. */
  private timed = true;
  /** The connection has answered a request and been kept. */
  private kept = false;
  /** The response is out and the connection is ending. */
  private closing = false;
  /** A kept response is complete; the rest of its request body is read before the next request. */
  private answered = false;
  private req: IncomingMessage | undefined;
  private res: UwsgiResponse | undefined;
  /** Body bytes of the request still to come. */
  private remaining = 0;
  /** Bytes after the body that arrived before the response was complete: the start of the next request. */
  private held: Buffer | undefined;

  constructor(
    private readonly socket: Conn,
    private readonly server: UwsgiServer,
  ) {
    socket.setTimeout(server.opts.timeoutMs);
    socket.on('data', (chunk: Buffer) => this.data(chunk));
    socket.on('end', () => this.end());
    socket.on('timeout', () => this.timeout());
    socket.on('close', () => this.closed());
    socket.on('drain', onDrain);
    socket.on('error', ignore);
  }

  private data(chunk: Buffer): void {
    if (this.reading) {
      this.packet(chunk);
      return;
    }
    if (this.remaining > 0) {
      // The body: exactly CONTENT_LENGTH bytes, streamed with back-pressure.
      const n = chunk.length < this.remaining ? chunk.length : this.remaining;
      const req = this.req!;
      const more = req.push(n === chunk.length ? chunk : chunk.subarray(0, n));
      this.remaining -= n;
      if (this.remaining > 0) {
        if (!more) this.socket.pause(); // resumed by node when the app reads again
        return;
      }
      req.complete = true;
      req.push(null);
      if (n === chunk.length) {
        if (this.answered) this.next();
        return;
      }
      chunk = chunk.subarray(n);
    }
    // After the body, before the response is complete. Nothing comes there from a front server that waits for
    // each response, but on a connection that may be kept it is the next request: held until then. On a
    // plain uwsgi connection it is not the app's: dropped.
    if (this.res!.offered && !this.closing) {
      this.held = this.held === undefined ? chunk : Buffer.concat([this.held, chunk]);
      if (this.held.length >= HELD_MAX) this.socket.pause();
    }
    if (this.answered) this.next();
  }

  private packet(chunk: Buffer): void {
    const { socket, server } = this;
    let buf: Buffer;
    if (this.buf === undefined) {
      buf = chunk;
      if (this.kept) server.idle.delete(socket); // no longer idle: a request is coming
    } else {
      buf = Buffer.concat([this.buf, chunk]);
    }
    this.buf = buf;
    const p = decodePacket(buf, server.opts.bufferSize);
    if ('need' in p) {
      if (!this.timed) {
        // A kept connection waits for its next request without a limit (its front server closes it when it
        // wants), but the request once begun must arrive whole within socket-timeout.
        this.timed = true;
        socket.setTimeout(server.opts.timeoutMs);
      }
      return;
    }
    this.buf = undefined;
    if ('error' in p) {
      const hint = p.error.includes('larger than') ? ' (buffer-size; raise it if such requests are legitimate)' : '';
      server.log.error(`bad request: ${p.error}${hint}; connection closed`);
      socket.destroy();
      return;
    }
    if (p.modifier1 !== 0) {
      server.log.error(`bad request: uwsgi modifier1 ${p.modifier1} is not a request for an app (tsgi serves modifier1 0); connection closed`);
      socket.destroy();
      return;
    }
    // socket-timeout stays armed while the request is answered: it ends a connection whose client stops
    // taking the response (see timeout()), never an app that takes its time.
    this.start(p, buf.subarray(p.headerEnd));
  }

  private start(p: UwsgiPacket, rest: Buffer): void {
    const socket = this.socket;
    this.reading = false;
    const req = new IncomingMessage(socket);
    const raw: string[] = [];
    const headers: Record<string, string> = {};
    let method = 'GET';
    let uri: string | undefined;
    let path = '';
    let query = '';
    let proto = 'HTTP/1.1';
    let length = 0;
    let offered = false;
    let marker = '1';
    for (const [k, v] of p.vars) {
      switch (k) {
        case 'REQUEST_METHOD': method = v; continue;
        case 'REQUEST_URI': uri = v; continue;
        case 'PATH_INFO': path = v; continue;
        case 'QUERY_STRING': query = v; continue;
        case 'SERVER_PROTOCOL': proto = v; continue;
        case 'TSGI_KEEPALIVE': offered = v === '1' || v === '2'; marker = v; continue;
        case 'CONTENT_LENGTH': length = /^\d+$/.test(v) ? Number(v) : 0; break;
      }
      const name = headerName(k);
      if (name === undefined) continue;
      const seen = headers[name];
      if (seen === undefined) {
        headers[name] = v;
      } else {
        // nginx sends Content-Type and Content-Length twice (CONTENT_TYPE and HTTP_CONTENT_TYPE): one counts.
        if (name === 'content-type' || name === 'content-length') continue;
        headers[name] = `${seen}${name === 'cookie' ? '; ' : ', '}${v}`;
      }
      raw.push(name, v);
    }
    req.method = method;
    req.url = uri ?? (query ? `${path}?${query}` : path);
    const minor = proto === 'HTTP/1.0' ? 0 : 1;
    req.httpVersionMajor = 1;
    req.httpVersionMinor = minor;
    req.httpVersion = minor === 0 ? '1.0' : '1.1';
    req.rawHeaders = raw;
    req.headers = headers;
    (req as IncomingMessage & { [UWSGI_VARS]: Array<[string, string]> })[UWSGI_VARS] = p.vars;

    const res = new UwsgiResponse(req);
    if (offered) {
      // As for a keep-alive HTTP client; `frame` decides once the head is built.
      res.offered = true;
      res.marker = marker;
      res.shouldKeepAlive = true;
      res.useChunkedEncodingByDefault = minor === 1;
    } else {
      // The connection carries one response and its end is the end of the body: no chunked encoding.
      res.shouldKeepAlive = false;
      res.useChunkedEncodingByDefault = false;
    }
    this.req = req;
    this.res = res;
    res.assignSocket(socket);
    res.once('finish', this.finished);

    // The body: exactly CONTENT_LENGTH bytes (anything after is not the app's: see `data`).
    let remaining = length;
    const first = rest.length > remaining ? rest.subarray(0, remaining) : rest;
    remaining -= first.length;
    this.remaining = remaining;
    if (first.length > 0) req.push(first);
    if (remaining === 0) {
      req.complete = true;
      req.push(null);
      if (offered && rest.length > first.length) this.held = rest.subarray(first.length);
    }
    this.server.exchanges.dispatch(req, res);
  }

  /** The response went out whole (its 'finish'). */
  private readonly finished = (): void => {
    const { socket, server } = this;
    const res = this.res!;
    const req = this.req!;
    res.detachSocket(socket);
    // As node:http does once a response is complete: 'close' follows 'finish' (detached, the socket's own
    // close no longer reaches the response).
    process.nextTick(emitClose, res);
    if (res.kept && !server.exchanges.stopping && !socket.destroyed &&
        (res.declared < 0 || socket.bytesWritten - res.written0 - (res as unknown as Outgoing)._header!.length === res.declared)) {
      // Kept: the rest of the request body is read and dropped first (an app need not read it).
      if (this.remaining === 0) this.next();
      else {
        this.answered = true;
        req.resume();
      }
      return;
    }
    // What the app left of the body is read and dropped: a front server still sending it must not block
    // (nor be reset by a close with unread bytes) before it has read the response.
    if (!req.complete) req.resume();
    this.closing = true;
    socket.end();
    // A peer that never closes its side is let go after socket-timeout.
    this.timed = true;
    socket.setTimeout(server.opts.timeoutMs);
  };

  /** A kept response is complete and its request read: on to the next request. */
  private next(): void {
    const { socket, server } = this;
    if (this.timed) {
      // A kept connection waits for its next request without a limit (its front server closes it).
      this.timed = false;
      socket.setTimeout(0);
    }
    this.answered = false;
    this.reading = true;
    this.kept = true;
    this.req = undefined;
    this.res = undefined;
    if (socket.isPaused()) socket.resume();
    const held = this.held;
    if (held !== undefined) {
      this.held = undefined;
      this.packet(held);
    } else if (server.exchanges.stopping) {
      socket.destroy(); // idle in a stopping worker: closed, as `UwsgiServer.stop` closes the others
    } else {
      server.rest(socket);
    }
  }

  /** The client's end of the connection. */
  private end(): void {
    const socket = this.socket;
    if (this.reading) {
      // Between requests: a kept connection's normal end, or a client that connected and left without a
      // word; a request begun and not finished is worth a line.
      const buf = this.buf;
      if (buf !== undefined) {
        const need = buf.length < 4 ? 4 : 4 + buf.readUInt16LE(1);
        this.server.log.error(buf.length < 4
          ? `bad request: truncated uwsgi header (${buf.length} of 4 bytes); connection closed`
          : `bad request: truncated uwsgi packet (${buf.length} of ${need} bytes); connection closed`);
      }
      socket.destroy();
      return;
    }
    // nginx closes it when its own client has gone (uwsgi requests are framed by CONTENT_LENGTH, never by a
    // half-close), so a response still owed is abandoned, as node:http does.
    const req = this.req!;
    const res = this.res!;
    if (this.remaining > 0) {
      this.server.log.error(`client closed the connection with ${this.remaining} body bytes unsent (${req.method ?? ''} ${req.url ?? ''})`);
      req.destroy();
    }
    if (!res.writableFinished || (res.offered && !this.closing)) socket.destroy();
  }

  private timeout(): void {
    const socket = this.socket;
    if (!this.reading && !this.closing) {
      // A request is being answered. node emits 'timeout' only when no write has progressed for
      // socket-timeout: with bytes still waiting to go out, the client has stopped reading.
      if (socket.writableLength === 0) return; // the app is taking its time (harakiri is its limit)
      this.server.log.error(`the client did not take the response within socket-timeout (${this.server.opts.timeoutMs / 1000} s); connection closed`);
    } else if (!this.closing) {
      this.server.log.error('bad request: no complete uwsgi request within socket-timeout; connection closed');
    }
    socket.destroy();
  }

  private closed(): void {
    this.server.idle.delete(this.socket);
    const req = this.req;
    if (req !== undefined && !req.complete) req.destroy();
  }
}
