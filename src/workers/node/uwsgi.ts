/**
 * The uwsgi side: one request per connection, as nginx's uwsgi_pass sends it (the packet of vars, then
 * CONTENT_LENGTH body bytes), answered with an HTTP head and the body, ended by closing the connection.
 *
 * Each request becomes node's own IncomingMessage and ServerResponse over the connection, so every app
 * contract (an Express app included) runs over uwsgi exactly as over HTTP: the response is written by node's
 * ServerResponse (no chunked encoding, Connection: close), the body streams with back-pressure both ways.
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

/** node's marker for "write() returned false, 'drain' is owed" on an OutgoingMessage (see onDrain). */
const kNeedDrain: symbol | undefined = (() => {
  const probe = new ServerResponse(new IncomingMessage(new net.Socket()));
  return Object.getOwnPropertySymbols(probe).find((s) => s.description === 'kNeedDrain');
})();

type Res = ServerResponse & { [key: symbol]: unknown };
type Conn = Socket & { _httpMessage?: Res | null };

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

export class UwsgiServer {
  readonly server: net.Server;

  constructor(
    private readonly exchanges: Exchanges,
    private readonly log: WorkerLog,
    private readonly opts: UwsgiOptions,
  ) {
    // allowHalfOpen: the client's end is handled here (see start), not by node ending our side behind our back.
    this.server = net.createServer({ allowHalfOpen: true, noDelay: true }, (socket) => this.accept(socket));
  }

  private accept(socket: Socket): void {
    this.exchanges.countConnection(socket);
    let buf: Buffer | undefined;
    socket.setTimeout(this.opts.timeoutMs);
    const onTimeout = (): void => {
      this.log.error('bad request: no complete uwsgi request within socket-timeout; connection closed');
      socket.destroy();
    };
    const onEnd = (): void => {
      if (buf === undefined) {
        socket.destroy(); // connected and left without a word: nothing to say
        return;
      }
      const need = buf.length < 4 ? 4 : 4 + buf.readUInt16LE(1);
      this.log.error(buf.length < 4
        ? `bad request: truncated uwsgi header (${buf.length} of 4 bytes); connection closed`
        : `bad request: truncated uwsgi packet (${buf.length} of ${need} bytes); connection closed`);
      socket.destroy();
    };
    const onData = (chunk: Buffer): void => {
      buf = buf === undefined ? chunk : Buffer.concat([buf, chunk]);
      const p = decodePacket(buf, this.opts.bufferSize);
      if ('need' in p) return;
      socket.removeListener('data', onData);
      socket.removeListener('end', onEnd);
      socket.removeListener('timeout', onTimeout);
      if ('error' in p) {
        const hint = p.error.includes('larger than') ? ' (buffer-size; raise it if such requests are legitimate)' : '';
        this.log.error(`bad request: ${p.error}${hint}; connection closed`);
        socket.destroy();
        return;
      }
      if (p.modifier1 !== 0) {
        this.log.error(`bad request: uwsgi modifier1 ${p.modifier1} is not a request for an app (tsgi serves modifier1 0); connection closed`);
        socket.destroy();
        return;
      }
      socket.setTimeout(0);
      this.start(socket as Conn, p, buf.subarray(p.headerEnd));
    };
    socket.on('data', onData);
    socket.on('end', onEnd);
    socket.on('timeout', onTimeout);
    socket.on('error', () => {
      /* a reset or a broken pipe: 'close' follows, and the response (if any) sees it */
    });
  }

  private start(socket: Conn, p: UwsgiPacket, rest: Buffer): void {
    const req = new IncomingMessage(socket);
    const raw: string[] = [];
    const headers: Record<string, string> = {};
    let method = 'GET';
    let uri: string | undefined;
    let path = '';
    let query = '';
    let proto = 'HTTP/1.1';
    let length = 0;
    for (const [k, v] of p.vars) {
      switch (k) {
        case 'REQUEST_METHOD': method = v; continue;
        case 'REQUEST_URI': uri = v; continue;
        case 'PATH_INFO': path = v; continue;
        case 'QUERY_STRING': query = v; continue;
        case 'SERVER_PROTOCOL': proto = v; continue;
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

    const res = new ServerResponse(req);
    // The connection carries one response and its end is the end of the body: no chunked encoding.
    res.shouldKeepAlive = false;
    res.useChunkedEncodingByDefault = false;
    res.assignSocket(socket);
    socket.on('drain', onDrain);
    res.once('finish', () => {
      res.detachSocket(socket);
      // As node:http does once a response is complete: 'close' follows 'finish' (detached, the socket's own
      // close no longer reaches the response).
      process.nextTick(() => res.emit('close'));
      // What the app left of the body is read and dropped: a front server still sending it must not block
      // (nor be reset by a close with unread bytes) before it has read the response.
      if (!req.complete) req.resume();
      socket.end();
      // A peer that never closes its side is let go after socket-timeout.
      socket.setTimeout(this.opts.timeoutMs, () => socket.destroy());
    });
    socket.once('close', () => {
      if (!req.complete) req.destroy();
    });

    // The body: exactly CONTENT_LENGTH bytes (anything after is not the app's), streamed with back-pressure.
    let remaining = length;
    const first = rest.length > remaining ? rest.subarray(0, remaining) : rest;
    remaining -= first.length;
    if (first.length > 0) req.push(first);
    if (remaining === 0) {
      req.complete = true;
      req.push(null);
      socket.resume(); // whatever follows is read and dropped
    } else {
      const onBody = (chunk: Buffer): void => {
        if (remaining === 0) return;
        const part = chunk.length > remaining ? chunk.subarray(0, remaining) : chunk;
        remaining -= part.length;
        const more = req.push(part);
        if (remaining === 0) {
          req.complete = true;
          req.push(null);
        } else if (!more) {
          socket.pause(); // resumed by node when the app reads again
        }
      };
      socket.on('data', onBody);
    }
    // The client's end of the connection: nginx closes it when its own client has gone (uwsgi requests are
    // framed by CONTENT_LENGTH, never by a half-close), so a response still owed is abandoned, as node:http does.
    socket.once('end', () => {
      if (remaining > 0) {
        this.log.error(`client closed the connection with ${remaining} body bytes unsent (${method} ${req.url})`);
        req.destroy();
      }
      if (!res.writableFinished) socket.destroy();
    });
    this.exchanges.dispatch(req, res);
  }
}
