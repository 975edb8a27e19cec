/**
 * uwsgi_pass and proxy_pass: read the client body, build the backend request (uwsgi vars or an HTTP/1.x
 * request), pick a peer, and relay the response. Failures before the response started are retried on the
 * next peer as *_next_upstream allows (never a non-idempotent request once it was sent, unless
 * non_idempotent is listed). The backend is read as fast as it sends (response buffering), so a slow client
 * does not hold it; with buffering off, the backend is paused while the client catches up.
 */
import { isH2 } from '../http2.js';
import type { IncomingMessage, OutgoingHttpHeaders } from 'node:http';
import { mkdir, unlink, writeFile } from 'node:fs/promises';
import { encodeVarLists, UwsgiEncodeError } from '../../protocol/uwsgi.js';
import type { PassConf, ResolverConf, UpstreamConf, UpstreamSettings } from '../conf/model.js';
import { resolveName } from './resolve.js';
import type { Pipeline, UpstreamHead } from '../pipeline.js';
import type { Rq, UpgradeRequest } from '../request.js';
import type { Socket } from 'node:net';
import { checkServerIdentity, type ConnectionOptions, type DetailedPeerCertificate } from 'node:tls';
import { httpDate } from '../special.js';
import { PRODUCT, VERSION } from '../vars.js';
import { charsetType, recode } from '../charset.js';
import { escapeUri } from '../uri.js';
import { exchange, sniName, type UpstreamTls, type ExchangeControl, type ExchangeHandlers, type ExchangeOptions, type FailKind } from './exchange.js';
import { PeerGroup, type Peer } from './peers.js';
import { bypassed, CacheCtx, hasHeader, matches, readEntry, sweeper, touch, updating, type CachedResponse } from '../cache.js';
import type { CacheZone } from '../conf/model.js';
import { parseRanges } from '../static.js';
import { statusReason } from '../special.js';

const IDEMPOTENT = new Set(['GET', 'HEAD', 'PUT', 'DELETE', 'OPTIONS', 'TRACE']);
/** Idle links per peer when the upstream has no `keepalive N` (tsgi links are offered by default). */
const DEFAULT_POOL = 32;

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'proxy-connection', 'x-tsgi-keepalive']);
const UWSGI_HIDDEN = new Set(['status', 'x-accel-expires', 'x-accel-redirect', 'x-accel-limit-rate', 'x-accel-buffering', 'x-accel-charset']);
const PROXY_HIDDEN = new Set(['date', 'server', 'x-pad', 'x-accel-expires', 'x-accel-redirect', 'x-accel-limit-rate', 'x-accel-buffering', 'x-accel-charset']);
/** Request headers not passed from a location that caches (the stored response must be the whole one), as nginx. */
const CACHE_DROPPED = new Set(['if-modified-since', 'if-unmodified-since', 'if-none-match', 'if-match', 'range', 'if-range']);

/** A request header's uwsgi var name ("user-agent" → "HTTP_USER_AGENT") and whether the name is valid. */
interface CgiName {
  key: string;
  /** Letters, digits and "-" only. */
  valid: boolean;
  /** Valid when underscores_in_headers is on. */
  validWithUnderscores: boolean;
}
/** Cached: header names repeat across requests. */
const cgiNames = new Map<string, CgiName>();
function cgiName(h: string): CgiName {
  let n = cgiNames.get(h);
  if (n === undefined) {
    n = { key: 'HTTP_' + h.toUpperCase().replace(/-/g, '_'), valid: /^[A-Za-z0-9-]+$/.test(h), validWithUnderscores: /^[A-Za-z0-9_-]+$/.test(h) };
    if (cgiNames.size < 4096) cgiNames.set(h, n);
  }
  return n;
}
/** The vars of the packet being built (reused: a packet is built in one synchronous call). */
const varKeys: string[] = [];
const varValues: string[] = [];

export class Upstreams {
  private readonly groups = new Map<UpstreamConf, PeerGroup>();
  private readonly dynamic = new Map<string, PeerGroup>();
  /** Resolved pass targets ("host:port") per resolver line: their peers and until when the answer holds. */
  private readonly byResolver = new Map<ResolverConf, Map<string, { group: PeerGroup; addrs: string; expires: number }>>();

  constructor(
    readonly p: Pipeline,
    private readonly named: Map<string, UpstreamConf>,
  ) {}

  group(conf: UpstreamConf): PeerGroup {
    let g = this.groups.get(conf);
    if (!g) {
      g = new PeerGroup(conf);
      this.groups.set(conf, g);
    }
    return g;
  }

  /** Closes idle persistent links (graceful stop). */
  closeIdle(): void {
    const resolved = [...this.byResolver.values()].flatMap((t) => [...t.values()].map((e) => e.group));
    for (const g of [...this.groups.values(), ...this.dynamic.values(), ...resolved]) {
      for (const peer of [...g.primary, ...g.backup]) for (const s of peer.idle.splice(0)) s.destroy();
    }
  }

  /**
   * The peers of a pass: its upstream block, or for a target with variables the upstream or address its value
   * names. A host name is resolved through `resolver`: null is returned while it is, and the request goes on
   * (`fromCached`: through cached(), else start()) when the answer is in; a failure ends it with 502.
   */
  private groupFor(r: Rq, pass: PassConf, st: UpstreamSettings, cache: CacheCtx | undefined, fromCached: boolean): PeerGroup | undefined | null {
    if (pass.upstream) return this.group(pass.upstream);
    if (r.passGroup !== null) return r.passGroup;
    // A target with variables: an upstream name, an address (IP or unix socket), or a name the resolver knows;
    // what follows the host is the URI sent (nginx sends it as it is).
    let target = pass.dynamic!.eval(r).replace(/^(s?uwsgi|https?):\/\//, '');
    if (!target.startsWith('unix:')) {
      const slash = target.indexOf('/');
      r.dynUri = slash >= 0 ? target.slice(slash) : '';
      if (slash >= 0) target = target.slice(0, slash);
    }
    const named = this.named.get(target);
    if (named) return this.group(named);
    let g = this.dynamic.get(target);
    if (g) return g;
    let addr: { host: string; port: number } | { path: string } | undefined;
    let m: RegExpExecArray | null;
    const defaultPort = pass.scheme === 'https' ? 443 : pass.protocol === 'http' ? 80 : 0;
    if (target.startsWith('unix:')) addr = { path: target.slice(5) };
    else if ((m = /^(\d+\.\d+\.\d+\.\d+|\[[0-9a-fA-F:]+\]|localhost)(?::(\d+))?$/.exec(target))) {
      const host = m[1] === 'localhost' ? '127.0.0.1' : m[1]!.replace(/^\[|\]$/g, '');
      const port = m[2] ? Number(m[2]) : defaultPort;
      if (port > 0 && port < 65536) addr = { host, port };
    } else if (r.conf.resolver !== undefined && (m = /^([A-Za-z0-9_.-]+)(?::(\d+))?$/.exec(target))) {
      const port = m[2] ? Number(m[2]) : defaultPort;
      if (port > 0 && port < 65536) return this.resolved(r, pass, st, cache, fromCached, target, m[1]!, port);
    }
    if (!addr) {
      this.p.log(r, 'error', r.conf.resolver !== undefined ? `invalid port in upstream "${target}"` : `no resolver defined to resolve ${target}`);
      return undefined;
    }
    g = new PeerGroup(oneTimeUpstream(target, [addr], pass));
    if (this.dynamic.size < 1024) this.dynamic.set(target, g);
    return g;
  }

  /** The peers a resolver answer for `host` gives, kept until the answer expires (then asked again). */
  private resolved(r: Rq, pass: PassConf, st: UpstreamSettings, cache: CacheCtx | undefined, fromCached: boolean, target: string, host: string, port: number): PeerGroup | null {
    const conf = r.conf.resolver!;
    let known = this.byResolver.get(conf);
    if (known === undefined) this.byResolver.set(conf, (known = new Map()));
    const e = known.get(target);
    if (e !== undefined && e.expires > Date.now()) return e.group;
    const table = known;
    resolveName(conf, r.conf.resolverTimeoutMs!, host, (error, addrs, expires) => {
      if (r.res.writableEnded || r.res.destroyed) return;
      if (error !== null) {
        this.p.log(r, 'error', `${host} could not be resolved (${error})`);
        this.p.finalize(r, 502);
        return;
      }
      // The same addresses keep their peers (round-robin state, idle keepalive connections).
      const old = table.get(target);
      const same = old !== undefined && old.addrs === addrs.join(' ');
      const group = same ? old.group : new PeerGroup(oneTimeUpstream(target, addrs.map((a) => ({ host: a, port })), pass));
      if (table.size < 1024 || table.has(target)) table.set(target, { group, addrs: addrs.join(' '), expires });
      r.passGroup = group;
      if (fromCached) this.cached(r, pass, st, st.cache!);
      else this.start(r, pass, st, cache);
    });
    return null;
  }

  pass(r: Rq): void {
    const pass = r.conf.pass!;
    const st = pass.protocol === 'uwsgi' ? r.conf.uwsgi : r.conf.proxy;
    if (st.cache) {
      this.cached(r, pass, st, st.cache);
      return;
    }
    this.readAndStart(r, pass, st, undefined);
  }

  private readAndStart(r: Rq, pass: PassConf, st: UpstreamSettings, cache: CacheCtx | undefined): void {
    // An auth_request subrequest never reads the client's body (nginx gives it none); a body streamed to an
    // earlier pass (before an error_page redirect) is not read again: what was kept of it (r.body) is passed.
    if (!st.passRequestBody || !hasBody(r.req) || r.parent !== null || r.bodyStream !== null) {
      r.bodyStream = null;
      this.start(r, pass, st, cache);
      return;
    }
    if (!st.requestBuffering && this.streamable(r, pass, st)) {
      this.startStreaming(r, pass, st, cache);
      return;
    }
    readBody(r, this.p, () => this.start(r, pass, st, cache));
  }

  /**
   * *_request_buffering off applies, as in nginx, unless the body goes to a file (client_body_in_file_only)
   * or its length is unknown where the backend needs it (uwsgi, HTTP/1.0: such a body is read whole first).
   */
  private streamable(r: Rq, pass: PassConf, st: UpstreamSettings): boolean {
    if (r.conf.clientBodyInFileOnly !== 'off' || isH2(r.req) || (r.req as UpgradeRequest).tsgiBody !== undefined) return false;
    return r.req.headers['content-length'] !== undefined || (pass.protocol === 'http' && st.httpVersion === '1.1');
  }

  /** The request goes to the backend at once; its body follows as it arrives (BodyStream). */
  private startStreaming(r: Rq, pass: PassConf, st: UpstreamSettings, cache: CacheCtx | undefined): void {
    const max = r.conf.clientMaxBodySize!;
    const cl = r.req.headers['content-length'];
    if (max > 0 && cl !== undefined && Number(cl) > max) {
      this.p.log(r, 'error', `client intended to send too large body: ${cl} bytes`);
      r.res.shouldKeepAlive = false;
      this.p.finalize(r, 413);
      return;
    }
    r.bodyStream = new BodyStream(r, this.p, cl === undefined);
    this.start(r, pass, st, cache);
  }

  /**
   * A location that caches: the key's file answers (HIT; UPDATING when it expired and another request of this
   * worker is fetching it, with *_cache_use_stale updating), or the request goes to the backend as a MISS,
   * EXPIRED (the old entry kept for *_cache_use_stale) or BYPASS, and its response may be stored.
   */
  private cached(r: Rq, pass: PassConf, st: UpstreamSettings, zone: CacheZone): void {
    if (!st.cacheMethods!.has(r.method)) {
      this.readAndStart(r, pass, st, undefined);
      return;
    }
    if (pass.protocol === 'http') {
      // $proxy_host is part of the default key: known before the request is built.
      const g = this.groupFor(r, pass, st, undefined, true);
      if (g === null) return;
      if (!g) {
        this.p.finalize(r, 502);
        return;
      }
      r.proxyHost = g.conf.name;
    }
    // nginx's default proxy key is documented as $scheme$proxy_host$request_uri; what it uses is the pass URL's
    // scheme and host with the URI sent upstream ("http://127.0.0.1:8081/x"), the same for a client request.
    const key = st.cacheKey !== undefined ? st.cacheKey.eval(r) : pass.protocol === 'http' ? `${pass.scheme}://${r.proxyHost}${upstreamUri(r, pass)}` : '';
    const ctx = new CacheCtx(zone, key, st, r);
    if (bypassed(r, st)) {
      r.cacheStatus = 'BYPASS';
      this.readAndStart(r, pass, st, ctx);
      return;
    }
    void readEntry(ctx.file).then((e) => {
      if (r.res.headersSent || r.res.destroyed) return;
      if (e !== null && matches(r, e, key)) {
        if (e.validUntil > Date.now()) {
          r.cacheStatus = 'HIT';
          touch(zone, ctx.file);
          this.serveCached(r, pass, st, e, false);
          return;
        }
        ctx.stale = e;
        if (updating.has(ctx.file) && st.cacheUseStale!.has('updating')) {
          r.cacheStatus = 'UPDATING';
          this.serveCached(r, pass, st, e, false);
          return;
        }
        r.cacheStatus = 'EXPIRED';
      } else r.cacheStatus = 'MISS';
      sweeper(zone);
      const file = ctx.file;
      if (!updating.has(file)) {
        updating.add(file);
        r.res.once('close', () => updating.delete(file));
      }
      this.readAndStart(r, pass, st, ctx);
    });
  }

  /**
   * Answers from a stored response (HIT, STALE, UPDATING, or a held MISS with a Range): the backend's head as
   * relayed, and its body, or ranges of it when the backend offered them (Accept-Ranges), as nginx's range
   * filter does for cached responses (`single`: one range at most, for a response still being received).
   */
  serveCached(r: Rq, pass: PassConf, st: UpstreamSettings, e: CachedResponse, single: boolean): void {
    let status = e.status;
    let reason = e.reason;
    let headers = e.headers;
    let body = e.body;
    let parts: Array<[number, number]> | undefined;
    let partType = '';
    let accel = '';
    const range = r.req.headers.range;
    if (range !== undefined && status === 200 && !r.forceStatus && r.conf.maxRanges !== 0 && hasHeader(headers, 'accept-ranges')) {
      const size = body.length;
      const ranges = parseRanges(range, size, single ? 1 : r.conf.maxRanges);
      if (ranges === 'unsatisfiable') {
        this.p.finalize(r, 416, undefined, ['Content-Range', `bytes */${size}`]);
        return;
      }
      if (ranges !== 'ignore') {
        // The backend's own Content-Range and Content-Length give way to the range's.
        const rest: string[] = [];
        for (let i = 0; i < headers.length; i += 2) {
          const n = headers[i]!.toLowerCase();
          if (n === 'content-length' || n === 'content-range') continue;
          if (n === 'x-accel-charset' && ranges.length > 1) {
            // Applies to the parts' type, not to multipart/byteranges.
            accel = st.ignoreHeaders!.has(n) ? '' : headers[i + 1]!.trim();
            continue;
          }
          if (n === 'content-type' && ranges.length > 1) {
            partType = headers[i + 1]!;
            continue;
          }
          rest.push(headers[i]!, headers[i + 1]!);
        }
        status = 206;
        reason = statusReason(206);
        if (ranges.length === 1) {
          const [s, t] = ranges[0]!;
          rest.push('Content-Range', `bytes ${s}-${t}/${size}`);
          body = body.subarray(s, t + 1);
        } else parts = ranges;
        headers = rest;
      }
    }
    if (parts !== undefined) {
      // multipart/byteranges: the part headers carry the type (and charset) the whole response had.
      const boundary = String(Date.now()).padStart(20, '0');
      const out: Buffer[] = [];
      const whole = body;
      const size = whole.length;
      let total = 0;
      // The parts carry the whole response's type, with its charset as the single-part answer would have it.
      r.recode = null;
      if (partType !== '') partType = accel !== '' ? this.accelCharset(r, partType, accel) : r.conf.charset ? charsetType(this.p, r, partType) : partType;
      const recodeTable = r.recode;
      const typeLine = partType !== '' ? `Content-Type: ${partType}\r\n` : '';
      const heads = parts.map(([s, t]) => Buffer.from(`\r\n--${boundary}\r\n${typeLine}Content-Range: bytes ${s}-${t}/${size}\r\n\r\n`, 'latin1'));
      const tail = Buffer.from(`\r\n--${boundary}--\r\n`, 'latin1');
      for (let i = 0; i < parts.length; i++) {
        const [s, t] = parts[i]!;
        const piece = whole.subarray(s, t + 1);
        out.push(heads[i]!, recodeTable ? recode(piece, recodeTable) : piece);
        total += heads[i]!.length + piece.length;
      }
      out.push(tail);
      total += tail.length;
      body = Buffer.concat(out, total);
      this.relayHead(r, status, reason, ['Content-Type', `multipart/byteranges; boundary=${boundary}`, ...headers], pass.protocol, st, total);
      // The body is built: nothing more to recode.
      r.recode = null;
    } else this.relayHead(r, status, reason, headers, pass.protocol, st, body.length);
    if (r.method === 'HEAD' || r.res.writableEnded) {
      r.res.end();
      return;
    }
    r.bodyBytesSent = body.length;
    r.res.end(r.recode ? recode(body, r.recode) : body);
  }

  private start(r: Rq, pass: PassConf, st: UpstreamSettings, cache: CacheCtx | undefined): void {
    const group = this.groupFor(r, pass, st, cache, false);
    if (group === null) return;
    r.passGroup = null;
    if (!group) {
      this.p.finalize(r, 502);
      return;
    }
    let request: Buffer[];
    try {
      if (cache !== undefined && cache.converted) {
        // *_cache_convert_head: the backend is asked for the whole response (GET), to be stored.
        r.method = 'GET';
        try {
          request = pass.protocol === 'uwsgi' ? this.uwsgiRequest(r, st) : this.httpRequest(r, pass, st, group);
        } finally {
          r.method = 'HEAD';
        }
      } else request = pass.protocol === 'uwsgi' ? this.uwsgiRequest(r, st) : this.httpRequest(r, pass, st, group);
    } catch (e) {
      if (e instanceof UwsgiEncodeError) {
        this.p.log(r, 'error', `uwsgi request is too large or not bytes: ${e.message}`);
        this.p.finalize(r, e.code === 'UWSGI_TOO_LARGE' ? 502 : 400);
        return;
      }
      throw e;
    }
    const relay = new Relay(this, r, pass, st, group, request, cache);
    const first = relay.nextPeer();
    if (!first) {
      this.p.log(r, 'error', `no live upstreams while connecting to upstream, upstream: "${group.conf.name}"`);
      r.upstreamAddrs = [group.conf.name];
      if (cache !== undefined && cache.stale !== null && st.cacheUseStale!.has('error')) {
        r.cacheStatus = 'STALE';
        this.serveCached(r, pass, st, cache.stale, false);
        return;
      }
      this.p.finalize(r, 502);
      return;
    }
    r.relay = relay;
    relay.attempt(first, true);
  }

  /**
   * The backend's head, relayed: hop-by-hop and hidden headers dropped, the rest in the backend's order
   * after Content-Type and Content-Length (and a Location proxy_redirect rewrote), which nginx writes
   * first. `knownLength`: the whole body is in hand; used as Content-Length when the backend gave none.
   */
  relayHead(r: Rq, status: number, reason: string, headers: string[], protocol: 'uwsgi' | 'http', st: UpstreamSettings, knownLength?: number): void {
    r.upstreamHeaders = headers;
    const rest: string[] = [];
    const hidden = protocol === 'uwsgi' ? UWSGI_HIDDEN : PROXY_HIDDEN;
    const extraHidden = st.hideHeaders!;
    const passAnyway = st.passHeaders!;
    const head: UpstreamHead = { reason, serverSet: false, dateSet: false };
    let type: string | undefined;
    let length: string | undefined;
    let location: string | undefined;
    let accelCharset: string | undefined;
    for (let i = 0; i < headers.length; i += 2) {
      const name = headers[i]!;
      const lower = name.toLowerCase();
      if (HOP_BY_HOP.has(lower)) continue;
      if ((hidden.has(lower) || extraHidden.has(lower)) && !passAnyway.has(lower)) {
        // Tested only for the (rare) hidden headers: the backend names the charset to send the body in.
        if (lower === 'x-accel-charset' && !st.ignoreHeaders!.has(lower)) accelCharset = headers[i + 1]!.trim();
        continue;
      }
      const value = headers[i + 1]!;
      if (lower === 'content-type' && type === undefined) {
        type = value;
        continue;
      }
      if (lower === 'content-length' && length === undefined) {
        length = value;
        continue;
      }
      if (lower === 'server') head.serverSet = true;
      else if (lower === 'date') head.dateSet = true;
      else if (protocol === 'http' && (lower === 'location' || lower === 'refresh') && st.redirect !== 'off') {
        const rewritten = this.rewriteRedirect(r, value, st);
        if (rewritten !== undefined && lower === 'location' && location === undefined) {
          // A Location proxy_redirect rewrote is the response's redirect: made absolute (absolute_redirect).
          location = this.p.absoluteLocation(r, rewritten);
          continue;
        }
        rest.push(name, rewritten ?? value);
        continue;
      }
      rest.push(name, value);
    }
    if (length === undefined && knownLength !== undefined && status !== 204 && status !== 304 && (status >= 200 || status < 100)) length = String(knownLength);
    const first: string[] = [];
    if (type !== undefined) first.push('Content-Type', accelCharset ? this.accelCharset(r, type, accelCharset) : r.conf.charset ? charsetType(this.p, r, type) : type);
    if (length !== undefined) first.push('Content-Length', length);
    if (location !== undefined) first.push('Location', location);
    for (let i = 0; i < rest.length; i++) first.push(rest[i]!);
    if (r.conf.chunkedTransferEncoding === false) r.res.useChunkedEncodingByDefault = false;
    this.p.sendHead(r, status, first, head);
  }

  /**
   * X-Accel-Charset from the backend: the body goes out in that charset (nginx's override charset), recoded
   * from the one the Content-Type names (or source_charset) through a charset_map; the type then names it.
   */
  accelCharset(r: Rq, type: string, dst: string): string {
    r.recode = null;
    const m = /;\s*charset\s*=\s*"?([^";\s]+)"?/i.exec(type);
    const src = m ? m[1]! : r.conf.sourceCharset ?? '';
    if (src === '') return type;
    const base = m ? type.slice(0, m.index) : type;
    if (src.toLowerCase() === dst.toLowerCase()) return `${base}; charset=${dst}`;
    const table = r.conf.charsetMaps?.get(`${src.toLowerCase()}\0${dst.toLowerCase()}`);
    if (table === undefined) {
      this.p.log(r, 'error', `no "charset_map" between the charsets "${src}" and "${dst}"`);
      return type;
    }
    r.recode = table;
    return `${base}; charset=${dst}`;
  }

  /** The value proxy_redirect makes of a Location or Refresh header; undefined when no rule matches. */
  private rewriteRedirect(r: Rq, value: string, st: UpstreamSettings): string | undefined {
    if (Array.isArray(st.redirect)) {
      for (const [from, to] of st.redirect) if (value.startsWith(from)) return to.eval(r) + value.slice(from.length);
      return undefined;
    }
    // "default": the pass URL with the location name replaced back.
    const pass = r.conf.pass!;
    if (pass.uri && r.location && !pass.uri.hasVars) {
      const from = `http://${r.proxyHost}${pass.uri.constant}`;
      if (value.startsWith(from)) return r.location.name + value.slice(from.length);
    }
    return undefined;
  }

  // ---- request building ----

  private uwsgiRequest(r: Rq, st: UpstreamSettings): Buffer[] {
    const keys = varKeys;
    const values = varValues;
    let n = 0;
    const params = st.params!;
    let overridden: Set<string> | undefined;
    for (const p of params) {
      const v = p.value.eval(r);
      if (p.ifNotEmpty && v === '') continue;
      keys[n] = p.key;
      values[n++] = v;
      if (p.key.startsWith('HTTP_')) (overridden ??= new Set()).add(p.key);
    }
    if (st.passRequestHeaders) {
      const ignoreInvalid = r.server.ignoreInvalidHeaders !== false;
      const underscores = r.server.underscoresInHeaders === true;
      const dropped = st.cache ? CACHE_DROPPED : undefined;
      const h = r.req.headers;
      for (const name in h) {
        const c = cgiName(name);
        if (ignoreInvalid && !c.valid && !(underscores && c.validWithUnderscores)) continue;
        if (overridden?.has(c.key)) continue;
        if (dropped !== undefined && dropped.has(name)) continue;
        const v = h[name]!;
        keys[n] = c.key;
        values[n++] = Array.isArray(v) ? v.join(', ') : v;
      }
    }
    if (st.tsgiKeepalive) {
      keys[n] = 'TSGI_KEEPALIVE';
      // 2: this proxy may pipeline, 1: it sends one request at a time (docs/protocol-keepalive.md).
      values[n++] = st.tsgiPipelining ? '2' : '1';
    }
    let packet: Buffer;
    try {
      packet = encodeVarLists(keys, values, n, st.modifier1, st.modifier2);
    } finally {
      // Nothing of this request stays reachable from the shared lists (kept at their size: no regrowth).
      for (let i = 0; i < n; i++) keys[i] = values[i] = '';
    }
    return r.body && st.passRequestBody ? [packet, r.body] : [packet];
  }

  private httpRequest(r: Rq, pass: PassConf, st: UpstreamSettings, group: PeerGroup): Buffer[] {
    r.proxyHost = group.conf.name;
    const uri = upstreamUri(r, pass);
    // proxy_method; a value that comes out empty keeps the client's method (nginx would send an empty one).
    const method = (st.method !== undefined && st.method.eval(r)) || r.method;
    let head = `${method} ${uri} HTTP/${st.httpVersion}\r\n`;
    // proxy_set_header defaults (Host $proxy_host, Connection close) unless set; an empty value removes.
    const set = new Map<string, string>([['host', r.proxyHost], ['connection', 'close']]);
    const names = new Map<string, string>([['host', 'Host'], ['connection', 'Connection']]);
    for (const p of st.params!) {
      const k = p.key.toLowerCase();
      set.set(k, p.value.eval(r));
      names.set(k, p.key);
    }
    for (const [k, v] of set) if (v !== '') head += `${names.get(k)}: ${v}\r\n`;
    if (st.passRequestHeaders) {
      const raw = r.req.rawHeaders;
      const dropped = st.cache ? CACHE_DROPPED : undefined;
      for (let i = 0; i < raw.length; i += 2) {
        const k = raw[i]!.toLowerCase();
        if (dropped !== undefined && dropped.has(k)) continue;
        if (set.has(k) || k === 'content-length' || k === 'transfer-encoding' || k === 'keep-alive' || k === 'te' || k === 'upgrade' || k === 'expect' || k === 'proxy-connection') continue;
        head += `${raw[i]}: ${raw[i + 1]}\r\n`;
      }
    }
    const body = st.passRequestBody ? r.body : null;
    if (body && !set.has('content-length')) head += `Content-Length: ${body.length}\r\n`;
    else if (r.bodyStream !== null && !set.has('content-length')) {
      head += r.bodyStream.chunked ? 'Transfer-Encoding: chunked\r\n' : `Content-Length: ${r.req.headers['content-length']!}\r\n`;
    }
    head += '\r\n';
    const h = Buffer.from(head, 'latin1');
    return body ? [h, body] : [h];
  }
}

const NO_CONDITIONS: ReadonlySet<string> = new Set();
/** "http_502" for 502: the next_upstream condition of a status, made once per status. */
const httpConds: string[] = [];
function httpCond(status: number): string {
  return (httpConds[status] ??= `http_${status}`);
}

/**
 * One request's pass to an upstream: its tries over the group's peers (next_upstream), and the relay of the
 * chosen response to the client. One object per request serves as the exchange's options and handlers, so
 * a try allocates no closures.
 */
class Relay implements ExchangeOptions, ExchangeHandlers {
  private readonly tried = new Set<Peer>();
  private readonly maxTries: number;
  private readonly deadline: number;
  private readonly conds: ReadonlySet<string>;
  private readonly idempotent: boolean;
  private readonly addrs: string[] = [];
  private readonly statuses: string[] = [];
  private readonly startedAt = Date.now();
  private ctl: ExchangeControl | undefined;
  private clientGone = false;
  // ExchangeOptions
  readonly connectTimeoutMs: number;
  readonly readTimeoutMs: number;
  readonly sendTimeoutMs: number;
  readonly head: boolean;
  keep: 'tsgi' | 'http' | 'none';
  readonly poolMax: number;
  readonly idleTimeoutMs: number;
  readonly maxUses: number;
  readonly maxAgeMs: number;
  readonly tls: UpstreamTls | undefined;
  readonly streamBody: boolean;
  readonly pipeline: boolean;
  // The try in progress.
  private peer: Peer | undefined;
  private headersSent = false;
  /** The backend's status and headers, held until the first body byte or the end (see onHeaders). */
  private headStatus = 0;
  private headReason = '';
  private headHeaders: string[] | null = null;
  private paused = false;
  // Body bytes are gathered for one event-loop turn, so a response that arrives with its end (the common
  // case) reaches the client in one write instead of one per chunk plus the end.
  private chunks: Buffer[] = [];
  private chunkBytes = 0;
  private flushQueued = false;

  constructor(
    private readonly u: Upstreams,
    private readonly r: Rq,
    private readonly pass: PassConf,
    private readonly st: UpstreamSettings,
    private readonly group: PeerGroup,
    private readonly request: Buffer[],
    /** The cache entry this response may be stored in (undefined: the location does not cache). */
    private readonly cache: CacheCtx | undefined,
  ) {
    this.maxTries = st.nextUpstreamTries || Number.POSITIVE_INFINITY;
    this.deadline = st.nextUpstreamTimeoutMs ? Date.now() + st.nextUpstreamTimeoutMs : Number.POSITIVE_INFINITY;
    const conds = st.nextUpstream === 'off' ? NO_CONDITIONS : st.nextUpstream!;
    this.conds = conds;
    this.idempotent = IDEMPOTENT.has(r.req.method ?? 'GET') || conds.has('non_idempotent');
    this.keep = pass.protocol === 'uwsgi' ? (st.tsgiKeepalive ? 'tsgi' : 'none') : group.conf.keepalive !== undefined && st.httpVersion === '1.1' && connectionCleared(st) ? 'http' : 'none';
    this.poolMax = group.conf.keepalive ?? DEFAULT_POOL;
    this.idleTimeoutMs = group.conf.keepaliveTimeoutMs;
    this.maxUses = group.conf.keepaliveRequests;
    this.maxAgeMs = group.conf.keepaliveTimeMs;
    this.connectTimeoutMs = st.connectTimeoutMs!;
    this.readTimeoutMs = st.readTimeoutMs!;
    this.sendTimeoutMs = st.sendTimeoutMs!;
    this.head = r.method === 'HEAD' && (cache === undefined || !cache.converted);
    this.tls = pass.secure ? upstreamTls(r, st, group) : undefined;
    this.streamBody = r.bodyStream !== null;
    if (this.streamBody) {
      // The body is sent once, as it arrives: the connection is not kept (it could carry half a body).
      this.keep = 'none';
      r.bodyStream!.relay = this;
    }
    // Only requests that can be sent again safely share a link: no body, an idempotent method, no upgrade.
    this.pipeline = this.keep === 'tsgi' && st.tsgiPipelining === true && request.length === 1 && IDEMPOTENT.has(r.method) && (r.req as UpgradeRequest).tsgiUpgrade === undefined;
  }

  onConnected(socket: Socket): void {
    this.r.bodyStream?.attach(socket);
  }

  /** A streamed body failed (too large, too slow): the backend is dropped and the client answered. */
  bodyFailed(status: number): void {
    this.clientGone = true;
    this.ctl?.abort();
    if (!this.r.res.headersSent) this.u.p.finalize(this.r, status);
    else this.r.res.destroy();
  }

  nextPeer(): Peer | null {
    if (this.tried.size >= this.maxTries || Date.now() > this.deadline) return null;
    const p = this.group.select(this.r, this.tried);
    if (p) this.tried.add(p);
    return p;
  }

  /** The client went away before the response was complete (called from the pipeline). */
  clientClosed(): void {
    this.clientGone = true;
    if (!this.st.ignoreClientAbort) this.ctl?.abort();
  }

  attempt(peer: Peer, allowReuse: boolean): void {
    this.addrs.push(peer.label);
    this.peer = peer;
    this.headersSent = false;
    this.headHeaders = null;
    this.paused = false;
    this.chunks = [];
    this.chunkBytes = 0;
    if (this.cache !== undefined) this.cache.reset();
    this.ctl = exchange(peer, this.request, this, this, allowReuse);
  }

  private record(): void {
    const r = this.r;
    r.upstreamAddrs = this.addrs;
    r.upstreamStatuses = this.statuses;
    r.upstreamTimeMs = Date.now() - this.startedAt;
  }

  private sendHeadNow(knownLength?: number): void {
    const headers = this.headHeaders!;
    this.headHeaders = null;
    this.headersSent = true;
    this.u.relayHead(this.r, this.headStatus, this.headReason, headers, this.pass.protocol, this.st, knownLength);
  }

  private readonly flush = (): void => {
    this.flushQueued = false;
    const res = this.r.res;
    if (res.writableEnded || this.chunks.length === 0) return;
    if (this.headHeaders) this.sendHeadNow();
    const chunks = this.chunks;
    const data = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, this.chunkBytes);
    this.chunks = [];
    this.chunkBytes = 0;
    const ok = res.write(this.r.recode ? recode(data, this.r.recode) : data);
    // Buffering on: keep reading the backend unless the client's backlog passed the limit.
    const limit = this.st.buffering ? this.st.maxBufferedBytes! : 0;
    if (!ok && !this.paused && res.writableLength > limit) {
      this.paused = true;
      const c = this.ctl!;
      c.pause();
      res.once('drain', () => {
        this.paused = false;
        c.resume();
      });
    }
  };

  onHeaders(status: number, headers: string[], _httpMinor: number, reason: string): boolean {
    const peer = this.peer!;
    this.statuses.push(String(status));
    if (this.idempotent && this.conds.has(httpCond(status))) {
      if (status !== 403 && status !== 404) this.group.fail(peer);
      const next = this.nextPeer();
      if (next) {
        this.attempt(next, true);
        return false;
      }
    }
    this.group.success(peer);
    this.record();
    if (this.clientGone) return false;
    const r = this.r;
    const c = this.cache;
    if (c !== undefined) {
      if (c.stale !== null && this.st.cacheUseStale!.has(httpCond(status))) {
        r.cacheStatus = 'STALE';
        this.u.serveCached(r, this.pass, this.st, c.stale, false);
        return false;
      }
      // $upstream_http_* may be used in *_no_cache.
      r.upstreamHeaders = headers;
      c.decide(r, status, reason, headers);
    }
    if (this.st.interceptErrors && status >= 300 && r.conf.errorPages?.some((p) => p.codes.includes(status))) {
      this.u.p.finalize(r, status);
      return false;
    }
    // The head goes out with the first body byte (or the end): a body that is malformed from its first
    // byte still becomes a clean 502 rather than a cut response.
    this.headStatus = status;
    this.headReason = reason;
    this.headHeaders = headers;
    return true;
  }

  onBody(chunk: Buffer): void {
    this.r.upstreamBytes += chunk.length;
    const c = this.cache;
    if (c !== undefined && c.storeMs > 0) {
      if (c.capture(chunk)) {
        if (c.hold) return;
      } else if (c.hold) {
        // Too large to store: what was held goes out as the whole response (the Range is not applied).
        for (const b of c.release()) {
          this.r.bodyBytesSent += b.length;
          this.chunks.push(b);
          this.chunkBytes += b.length;
        }
        return;
      } else c.release();
    }
    this.r.bodyBytesSent += chunk.length;
    this.chunks.push(chunk);
    this.chunkBytes += chunk.length;
  }

  /**
   * The body so far goes out at the end of this event-loop turn (other reads of the turn join it). Not
   * scheduled when the read also completed the response: onEnd sends everything at once.
   */
  onReadParsed(): void {
    if (this.chunks.length !== 0 && !this.flushQueued) {
      this.flushQueued = true;
      setImmediate(this.flush);
    }
  }

  onEnd(): void {
    this.record();
    const r = this.r;
    const res = r.res;
    const c = this.cache;
    if (c !== undefined && c.storeMs > 0) {
      const stored = c.store();
      // Once: onEnd runs again below when the file is in place.
      c.storeMs = 0;
      void stored.then((e) => {
        if (res.writableEnded || res.destroyed) return;
        if (c.hold) this.u.serveCached(r, this.pass, this.st, e, true);
        else this.onEnd();
      });
      return;
    }
    if (res.writableEnded) return;
    // Usually the whole body is here already: head and body leave in one write, with a length.
    if (this.headHeaders) this.sendHeadNow(r.method === 'HEAD' ? undefined : this.chunkBytes);
    const chunks = this.chunks;
    const data = chunks.length === 0 ? undefined : chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, this.chunkBytes);
    this.chunks = [];
    this.chunkBytes = 0;
    res.end(data !== undefined && r.recode ? recode(data, r.recode) : data);
  }

  onFail(kind: FailKind, message: string, responseStarted: boolean, reused: boolean): void {
    if (this.clientGone) return;
    const r = this.r;
    const p = this.u.p;
    const peer = this.peer!;
    // Body bytes already parsed: the client gets them, then the cut (it must see the failure).
    if (!this.headersSent && this.headHeaders && this.chunks.length) this.flush();
    if (this.headersSent) {
      p.log(r, 'error', `${message}, upstream: "${this.pass.scheme}://${peer.label}"`);
      r.res.destroy();
      return;
    }
    const bs = this.r.bodyStream;
    if (bs !== null) bs.detach();
    if (reused && !responseStarted && (bs === null || !bs.sent)) {
      // A kept link the backend had closed: try again on a fresh connection, not a failure.
      this.addrs.pop();
      this.attempt(peer, false);
      return;
    }
    this.statuses.push(kind === 'timeout' ? '504' : '502');
    p.log(r, 'error', `${message}, upstream: "${this.pass.scheme}://${peer.label}"`);
    this.group.fail(peer);
    // A streamed body cannot be sent twice: once a byte of it went out, no other peer is tried (nginx's rule).
    const canRetry = this.conds.has(kind) && (this.idempotent || (!responseStarted && kind === 'error' && !connectedAndSent(message))) && (bs === null || !bs.sent);
    const next = canRetry ? this.nextPeer() : null;
    if (next) {
      this.attempt(next, true);
      return;
    }
    this.record();
    const c = this.cache;
    if (c !== undefined && c.stale !== null && this.st.cacheUseStale!.has(kind)) {
      r.cacheStatus = 'STALE';
      this.u.serveCached(r, this.pass, this.st, c.stale, false);
      return;
    }
    p.finalize(r, kind === 'timeout' ? 504 : 502);
  }
  upgradeWanted(): boolean {
    return (this.r.req as UpgradeRequest).tsgiUpgrade !== undefined && !this.clientGone;
  }

  /**
   * The backend switched protocols for a client that asked to: the 101 goes out as nginx writes it (Server,
   * Date, `Connection: upgrade`, the backend's Upgrade, then its other headers; add_header does not apply).
   */
  onUpgrade(status: number, headers: string[], reason: string): void {
    const r = this.r;
    this.statuses.push(String(status));
    this.group.success(this.peer!);
    this.record();
    r.upstreamHeaders = headers;
    const conf = r.conf;
    const list: string[] = ['Server', conf.serverTokens !== false ? `${PRODUCT}/${VERSION}` : PRODUCT, 'Date', httpDate(), 'Connection', 'upgrade'];
    const hidden = this.pass.protocol === 'uwsgi' ? UWSGI_HIDDEN : PROXY_HIDDEN;
    const rest: string[] = [];
    for (let i = 0; i < headers.length; i += 2) {
      const lower = headers[i]!.toLowerCase();
      if (lower === 'upgrade') list.push('Upgrade', headers[i + 1]!);
      else if (!HOP_BY_HOP.has(lower) && !((hidden.has(lower) || this.st.hideHeaders!.has(lower)) && !this.st.passHeaders!.has(lower))) rest.push(headers[i]!, headers[i + 1]!);
    }
    for (const h of rest) list.push(h);
    r.status = 101;
    r.sentHeaders = list;
    const res = r.res;
    res.writeHead(101, reason || 'Switching Protocols', list as unknown as OutgoingHttpHeaders);
    res.flushHeaders();
  }

  /**
   * Both connections become one tunnel, as in nginx: bytes pass both ways with flow control; the tunnel ends
   * when either side ends or fails (the other is closed once what it was sent is written), or when nothing
   * passed either way for *_read_timeout (nginx re-arms that timer on activity in either direction). The
   * access log line (status 101, $body_bytes_sent counting the backend's bytes) is written when it ends.
   */
  onTunnel(back: Socket, rest: Buffer): void {
    const r = this.r;
    r.relay = null;
    const client = r.req.socket;
    const early = (r.req as UpgradeRequest).tsgiUpgrade!;
    const label = this.peer!.label;
    const scheme = this.pass.scheme;
    if (rest.length) {
      r.bodyBytesSent += rest.length;
      client.write(rest);
    }
    if (early.length) back.write(early);
    let over = false;
    const end = (): void => {
      if (over) return;
      over = true;
      client.destroySoon();
      back.destroySoon();
    };
    back.setTimeout(this.readTimeoutMs, () => {
      this.u.p.log(r, 'info', `upstream timed out (110: Connection timed out) while proxying upgraded connection, upstream: "${scheme}://${label}"`);
      over = true;
      back.destroy();
      client.destroy();
    });
    back.on('data', (d: Buffer) => {
      r.bodyBytesSent += d.length;
      if (!client.write(d)) {
        back.pause();
        client.once('drain', () => back.resume());
      }
    });
    client.on('data', (d: Buffer) => {
      if (!back.write(d)) {
        client.pause();
        back.once('drain', () => client.resume());
      }
    });
    back.on('end', end).on('close', end).on('error', end);
    client.on('end', end).on('close', end);
    client.resume();
  }
}

/** The URI proxy_pass sends: the client's, or with the location prefix replaced by the pass URI part. */
function upstreamUri(r: Rq, pass: PassConf): string {
  if (pass.dynamic !== undefined && r.dynUri !== '') return r.dynUri;
  if (pass.uri && !r.validLocation) return escapeUri(r.uri) + (r.args ? '?' + r.args : '');
  if (pass.uri) {
    const base = pass.uri.eval(r);
    if (pass.dynamic === undefined && r.location && r.location.kind !== 'regex' && r.location.kind !== 'named' && r.uri.startsWith(r.location.name)) {
      return base + escapeUri(r.uri.slice(r.location.name.length)) + (r.args ? '?' + r.args : '');
    }
    return base + (r.args && !base.includes('?') ? '?' + r.args : '');
  }
  if (r.internal || r.uri !== r.originalUri) return escapeUri(r.uri) + (r.args ? '?' + r.args : '');
  return r.requestUri;
}

/** The upstream a pass target with variables makes: its addresses as one server's (nginx's implicit upstream). */
function oneTimeUpstream(name: string, addrs: Array<{ host: string; port: number } | { path: string }>, pass: PassConf): UpstreamConf {
  return {
    name, servers: [{ name, addrs, weight: 1, maxFails: 1, failTimeoutMs: 10000, backup: false, down: false, maxConns: 0, pos: pass.pos }],
    balance: { kind: 'round_robin' }, keepalive: undefined, keepaliveTimeoutMs: 60000, keepaliveRequests: 1000, keepaliveTimeMs: 3600000, implicit: true, pos: pass.pos,
  };
}

function connectionCleared(st: UpstreamSettings): boolean {
  return st.params!.some((p) => p.key.toLowerCase() === 'connection' && p.value.constant === '');
}

/** A failure that happened after the request was written (so a non-idempotent one must not be repeated). */
function connectedAndSent(message: string): boolean {
  return !message.startsWith('connect()') && !message.includes('while connecting') && !message.includes('while SSL handshaking');
}

const TLS_ORDER = ['TLSv1', 'TLSv1.1', 'TLSv1.2', 'TLSv1.3'] as const;
/** The node:tls options a location's *_ssl_* settings make (the same for all its requests). */
const tlsBase = new WeakMap<UpstreamSettings, ConnectionOptions>();

/**
 * One request's TLS to the backend: SNI when *_ssl_server_name is on (the *_ssl_name, or the target's host,
 * unless it is an address), and with *_ssl_verify the certificate checked against that name and the
 * trusted certificates, its chain no deeper than *_ssl_verify_depth (Node has no such limit of its own).
 */
function upstreamTls(r: Rq, st: UpstreamSettings, group: PeerGroup): UpstreamTls {
  let base = tlsBase.get(st);
  if (base === undefined) {
    const versions = TLS_ORDER.filter((v) => st.sslProtocols!.includes(v));
    base = {
      rejectUnauthorized: st.sslVerify,
      ca: st.sslTrusted,
      cert: st.sslCertificate,
      key: st.sslCertificateKey,
      ciphers: st.sslCiphers,
      minVersion: versions[0],
      maxVersion: versions[versions.length - 1],
    };
    tlsBase.set(st, base);
  }
  const target = group.conf.name;
  const name = st.sslName !== undefined ? st.sslName.eval(r) : target.replace(/^\[([^\]]*)\].*$|:\d+$/, '$1');
  const options: ConnectionOptions = { ...base, servername: st.sslServerName && sniName(name) ? name : '' };
  if (st.sslVerify) {
    const depth = st.sslVerifyDepth!;
    options.checkServerIdentity = (_host, cert) => {
      // OpenSSL's count: the intermediates between the certificate and the trust anchor (neither counts).
      let intermediates = -1;
      for (let c = cert as DetailedPeerCertificate; c.issuerCertificate !== undefined && c.issuerCertificate !== c && c.issuerCertificate.fingerprint256 !== c.fingerprint256; c = c.issuerCertificate) intermediates++;
      if (intermediates > depth) return Object.assign(new Error('certificate chain too long'), { code: 'CERT_CHAIN_TOO_LONG' });
      return checkServerIdentity(name, cert);
    };
  }
  return { options, name, reuseSession: st.sslSessionReuse! };
}

/**
 * *_request_buffering off: the client's body, passed to the backend connection of the current try as it
 * arrives (chunk-framed when its length is unknown). Bytes that arrive before a connection is up wait here;
 * once a byte went out, `sent` forbids another try. client_max_body_size and client_body_timeout still
 * apply. A body no larger than client_body_buffer_size is also kept for $request_body, as nginx's is.
 */
export class BodyStream {
  relay: { bodyFailed(status: number): void } | null = null;
  private sink: Socket | null = null;
  private pending: Buffer[] = [];
  private kept: Buffer[] | null = [];
  private size = 0;
  private ended = false;
  /** The whole body arrived. */
  private complete = false;
  sent = false;
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly r: Rq, private readonly p: Pipeline, readonly chunked: boolean) {
    const req = r.req;
    this.timer = setTimeout(this.onTimeout, r.conf.clientBodyTimeoutMs!);
    req.on('data', this.onData);
    req.on('end', this.onEnd);
    r.res.once('close', () => clearTimeout(this.timer));
  }

  private readonly onTimeout = (): void => {
    if (this.ended) return;
    this.ended = true;
    this.p.log(this.r, 'info', 'client timed out (110: Connection timed out) while reading client request body');
    this.r.res.shouldKeepAlive = false;
    this.fail(408);
  };

  private readonly onData = (c: Buffer): void => {
    if (this.ended) return;
    this.size += c.length;
    const max = this.r.conf.clientMaxBodySize!;
    if (max > 0 && this.size > max) {
      this.ended = true;
      clearTimeout(this.timer);
      this.p.log(this.r, 'error', `client intended to send too large chunked body: ${this.size} bytes`);
      this.r.res.shouldKeepAlive = false;
      this.fail(413);
      return;
    }
    this.timer.refresh();
    if (this.kept !== null) {
      if (this.size <= this.r.conf.clientBodyBufferSize!) this.kept.push(c);
      else this.kept = null;
    }
    if (this.sink !== null) this.write(this.sink, c);
    else {
      this.pending.push(c);
      // Nothing to send to yet: the client waits rather than the body piling up here.
      if (this.pending.length > 16) this.r.req.pause();
    }
  };

  private readonly onEnd = (): void => {
    if (this.ended) return;
    this.ended = true;
    this.complete = true;
    clearTimeout(this.timer);
    if (this.kept !== null) this.r.body = this.kept.length === 1 ? this.kept[0]! : Buffer.concat(this.kept, this.size);
    if (this.sink !== null && this.chunked) this.sink.write('0\r\n\r\n');
  };

  private fail(status: number): void {
    if (this.relay !== null) this.relay.bodyFailed(status);
    else if (!this.r.res.headersSent) this.p.finalize(this.r, status);
  }

  private write(s: Socket, c: Buffer): void {
    if (s.destroyed) return;
    this.sent = true;
    const ok = this.chunked ? (s.write(`${c.length.toString(16)}\r\n`), s.write(c), s.write('\r\n')) : s.write(c);
    if (!ok) {
      const req = this.r.req;
      req.pause();
      s.once('drain', () => req.resume());
    }
  }

  /** The connection of a try is up: what arrived so far goes, the rest follows. */
  attach(s: Socket): void {
    this.sink = s;
    const pending = this.pending;
    this.pending = [];
    for (const c of pending) this.write(s, c);
    if (this.complete && this.chunked) s.write('0\r\n\r\n');
    this.r.req.resume();
  }

  /** The try failed: nothing more goes to its connection. */
  detach(): void {
    this.sink = null;
  }
}

let tempFiles = 0;

/**
 * client_body_in_file_only: the body (also kept in memory, to pass and retry) is written to a file of its
 * own in client_body_temp_path before the request goes on; `clean` removes it once the response is done.
 */
function bodyToFile(r: Rq, p: Pipeline, done: () => void): void {
  const path = tempName(r);
  const dir = r.conf.clientBodyTempPath!;
  void (async () => {
    try {
      await mkdir(dir, { recursive: true, mode: 0o700 });
      await writeFile(path, r.body!, { flag: 'wx', mode: 0o600 });
    } catch (e) {
      p.log(r, 'error', `open() "${path}" failed (${(e as Error).message})`);
      p.finalize(r, 500);
      return;
    }
    r.bodyFile = path;
    if (r.conf.clientBodyInFileOnly === 'clean') r.res.once('close', () => void unlink(path).catch(() => undefined));
    done();
  })();
}

function tempName(r: Rq): string {
  return `${r.conf.clientBodyTempPath!}/${process.pid}${String(++tempFiles % 1000000).padStart(6, '0')}`;
}

/**
 * The body read: to its file with client_body_in_file_only, then on. A body larger than
 * client_body_buffer_size is one nginx buffers in a temporary file, which it unlinks as soon as it is opened:
 * $request_body is empty and $request_body_file names a file that is not there. tsgi-proxy keeps the body in
 * memory and gives it such a name too, with no disk write.
 */
function toFileOrDone(r: Rq, p: Pipeline, done: () => void): void {
  if (r.conf.clientBodyInFileOnly !== 'off') bodyToFile(r, p, done);
  else {
    if (r.body!.length > r.conf.clientBodyBufferSize!) r.bodyFile = tempName(r);
    done();
  }
}

function hasBody(req: IncomingMessage): boolean {
  // HTTP/2 needs no length: a request has a body unless its HEADERS frame ended the stream.
  if (isH2(req)) return (req as IncomingMessage & { stream: { endAfterHeaders: boolean } }).stream.endAfterHeaders !== true;
  const cl = req.headers['content-length'];
  return (cl !== undefined && cl !== '0') || req.headers['transfer-encoding'] !== undefined;
}

/** Reads the whole request body into r.body, enforcing client_max_body_size and client_body_timeout. */
export function readBody(r: Rq, p: Pipeline, done: () => void): void {
  const max = r.conf.clientMaxBodySize!;
  const cl = r.req.headers['content-length'];
  if (max > 0 && cl !== undefined && Number(cl) > max) {
    p.log(r, 'error', `client intended to send too large body: ${cl} bytes`);
    r.res.shouldKeepAlive = false;
    p.finalize(r, 413);
    return;
  }
  const early = (r.req as UpgradeRequest).tsgiBody;
  if (early !== undefined) {
    // An upgrade request's body, read by front.ts (node:http leaves it in the socket).
    if (max > 0 && early.length > max) {
      p.finalize(r, 413);
      return;
    }
    r.body = early;
    toFileOrDone(r, p, done);
    return;
  }
  const chunks: Buffer[] = [];
  let size = 0;
  let finished = false;
  const timeoutMs = r.conf.clientBodyTimeoutMs!;
  const timer = setTimeout(onTimeout, timeoutMs);
  function onTimeout(): void {
    if (finished) return;
    finished = true;
    p.log(r, 'info', 'client timed out (110: Connection timed out) while reading client request body');
    r.res.shouldKeepAlive = false;
    p.finalize(r, 408);
  }
  r.req.on('data', (c: Buffer) => {
    if (finished) return;
    size += c.length;
    if (max > 0 && size > max) {
      finished = true;
      clearTimeout(timer);
      p.log(r, 'error', `client intended to send too large chunked body: ${size} bytes`);
      r.res.shouldKeepAlive = false;
      p.finalize(r, 413);
      return;
    }
    chunks.push(c);
    timer.refresh();
  });
  r.req.on('end', () => {
    if (finished) return;
    finished = true;
    clearTimeout(timer);
    r.body = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size);
    toFileOrDone(r, p, done);
  });
  r.req.on('error', () => {
    finished = true;
    clearTimeout(timer);
  });
}
