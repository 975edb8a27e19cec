/**
 * HTTP/2 clients (`listen ... http2`). node:http2's compatibility layer hands the pipeline request and
 * response objects shaped like node:http's, so every phase runs unchanged; what differs is fixed here, at
 * the two ends: the request is made to look as nginx makes an HTTP/2 request look (a Host header from
 * :authority, one Cookie header, no pseudo-headers), and the response head loses what HTTP/2 forbids.
 */
import type { IncomingMessage } from 'node:http';
import { Http2ServerResponse } from 'node:http2';
import type { Socket } from 'node:net';
import type { Rq } from './request.js';

/**
 * node:http's response says `destroyed` once its client is gone, and every asynchronous step (the cache
 * lookup, auth_basic, auth_request, a limit_req delay, static files) checks it before it goes on. node:http2's
 * compatibility response has no such property: a stream reset during such a step went on to ask the backend
 * for a client that had left, and a cache lookup left its key "updating" for good. It is given one here,
 * once, on the prototype (nothing per request): the stream's own.
 */
if (!('destroyed' in Http2ServerResponse.prototype)) {
  Object.defineProperty(Http2ServerResponse.prototype, 'destroyed', {
    get(this: Http2ServerResponse): boolean {
      return this.stream?.destroyed ?? true;
    },
    configurable: true,
  });
}

/** Whether a request came over HTTP/2. */
export function isH2(req: IncomingMessage): boolean {
  return req.httpVersion === '2.0';
}

/**
 * nginx gives an HTTP/2 request a `Host` header made from :authority when it has none, and joins its cookie
 * fields into one `Cookie` header ("a=1; b=2"), which is what $http_host, $http_cookie and the headers
 * passed to a backend see. The pseudo-headers (:method, :path...) leave the raw list (what is passed on) but
 * stay in `headers`, where node:http2 reads the method and the path from.
 */
export function adaptH2Request(req: IncomingMessage): void {
  const raw = req.rawHeaders;
  const out: string[] = [];
  let authority: string | undefined;
  let host = false;
  const cookies: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    const value = raw[i + 1]!;
    if (name.charCodeAt(0) === 58 /* : */) {
      if (name === ':authority') authority = value;
      continue;
    }
    if (name === 'cookie') {
      cookies.push(value);
      continue;
    }
    if (name === 'host') host = true;
    out.push(name, value);
  }
  if (!host && authority !== undefined) {
    out.unshift('host', authority);
    req.headers.host = authority;
  }
  if (cookies.length > 0) {
    const cookie = cookies.join('; ');
    out.push('cookie', cookie);
    req.headers.cookie = cookie;
  }
  Object.defineProperty(req, 'rawHeaders', { value: out, configurable: true });
  keepConnectionFacts(req);
}

/** What is read of a connection after a request's end (the access log): addresses, numbers, counters. */
const CONNECTION_FACTS = ['remoteAddress', 'remotePort', 'localAddress', 'localPort', 'encrypted', '_tsgiId', '_tsgiStart'] as const;

/**
 * node:http2's `req.socket` reaches the connection only while the stream is open (after that it reads the
 * closed stream, which has no address), but the access log is written after the response: the facts it
 * needs are kept at the start. Everything else, destroy() included, still goes to the stream, as before.
 */
function keepConnectionFacts(req: IncomingMessage): void {
  const socket = (req as IncomingMessage & { stream?: { session?: { socket?: Socket } } }).stream?.session?.socket;
  if (socket === undefined) return;
  const facts = new Map<string | symbol, unknown>();
  for (const k of CONNECTION_FACTS) facts.set(k, (socket as unknown as Record<string, unknown>)[k]);
  const compat = req.socket;
  const view = new Proxy(compat, {
    get: (target, prop) => (facts.has(prop) ? facts.get(prop) : Reflect.get(target, prop)),
  });
  Object.defineProperty(req, 'socket', { value: view, configurable: true });
}

/** Header fields HTTP/2 forbids in a response (RFC 9113 8.2.2); node:http2 throws on them. */
const CONNECTION_SPECIFIC = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade']);

/** A flat [name, value, ...] response head without the fields HTTP/2 forbids. */
export function h2HeaderList(list: string[]): string[] {
  let drop = false;
  for (let i = 0; i < list.length; i += 2) if (CONNECTION_SPECIFIC.has(list[i]!.toLowerCase())) drop = true;
  if (!drop) return list;
  const out: string[] = [];
  for (let i = 0; i < list.length; i += 2) if (!CONNECTION_SPECIFIC.has(list[i]!.toLowerCase())) out.push(list[i]!, list[i + 1]!);
  return out;
}

/** $http2: "h2" over TLS, "h2c" in clear text, empty for HTTP/1.x. */
export function http2Variable(r: Rq): string {
  return isH2(r.req) ? (r.group.ssl ? 'h2' : 'h2c') : '';
}
