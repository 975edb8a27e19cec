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
import type { PassConf, UpstreamConf, UpstreamSettings } from '../conf/model.js';
import type { Pipeline, UpstreamHead } from '../pipeline.js';
import type { Rq, UpgradeRequest } from '../request.js';
import type { Socket } from 'node:net';
import { httpDate } from '../special.js';
import { PRODUCT, VERSION } from '../vars.js';
import { charsetType, recode } from '../charset.js';
import { escapeUri } from '../uri.js';
import { exchange, type ExchangeControl, type ExchangeHandlers, type ExchangeOptions, type FailKind } from './exchange.js';
import { PeerGroup, type Peer } from './peers.js';

const IDEMPOTENT = new Set(['GET', 'HEAD', 'PUT', 'DELETE', 'OPTIONS', 'TRACE']);
/** Idle links per peer when the upstream has no `keepalive N` (tsgi links are offered by default). */
const DEFAULT_POOL = 32;

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'proxy-connection', 'x-tsgi-keepalive']);
const UWSGI_HIDDEN = new Set(['status', 'x-accel-expires', 'x-accel-redirect', 'x-accel-limit-rate', 'x-accel-buffering', 'x-accel-charset']);
const PROXY_HIDDEN = new Set(['date', 'server', 'x-pad', 'x-accel-expires', 'x-accel-redirect', 'x-accel-limit-rate', 'x-accel-buffering', 'x-accel-charset']);

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
    for (const g of [...this.groups.values(), ...this.dynamic.values()]) {
      for (const peer of [...g.primary, ...g.backup]) for (const s of peer.idle.splice(0)) s.destroy();
    }
  }

  private groupFor(r: Rq, pass: PassConf): PeerGroup | undefined {
    if (pass.upstream) return this.group(pass.upstream);
    // A target with variables: an upstream name, or an address (IP or unix socket; no resolver).
    const target = pass.dynamic!.eval(r).replace(/^(uwsgi|http):\/\//, '');
    const named = this.named.get(target);
    if (named) return this.group(named);
    let g = this.dynamic.get(target);
    if (g) return g;
    let addr: { host: string; port: number } | { path: string } | undefined;
    let m: RegExpExecArray | null;
    if (target.startsWith('unix:')) addr = { path: target.slice(5) };
    else if ((m = /^(\d+\.\d+\.\d+\.\d+|\[[0-9a-fA-F:]+\]|localhost)(?::(\d+))?$/.exec(target))) {
      const host = m[1] === 'localhost' ? '127.0.0.1' : m[1]!.replace(/^\[|\]$/g, '');
      const port = m[2] ? Number(m[2]) : pass.protocol === 'http' ? 80 : 0;
      if (port > 0 && port < 65536) addr = { host, port };
    }
    if (!addr) {
      this.p.log(r, 'error', `no resolver defined to resolve ${target}`);
      return undefined;
    }
    g = new PeerGroup({
      name: target, servers: [{ name: target, addrs: [addr], weight: 1, maxFails: 1, failTimeoutMs: 10000, backup: false, down: false, maxConns: 0, pos: pass.pos }],
      balance: { kind: 'round_robin' }, keepalive: undefined, keepaliveTimeoutMs: 60000, keepaliveRequests: 1000, keepaliveTimeMs: 3600000, implicit: true, pos: pass.pos,
    });
    if (this.dynamic.size < 1024) this.dynamic.set(target, g);
    return g;
  }

  pass(r: Rq): void {
    const pass = r.conf.pass!;
    const st = pass.protocol === 'uwsgi' ? r.conf.uwsgi : r.conf.proxy;
    if (!st.passRequestBody || !hasBody(r.req)) {
      this.start(r, pass, st);
      return;
    }
    readBody(r, this.p, () => this.start(r, pass, st));
  }

  private start(r: Rq, pass: PassConf, st: UpstreamSettings): void {
    const group = this.groupFor(r, pass);
    if (!group) {
      this.p.finalize(r, 502);
      return;
    }
    let request: Buffer[];
    try {
      request = pass.protocol === 'uwsgi' ? this.uwsgiRequest(r, st) : this.httpRequest(r, pass, st, group);
    } catch (e) {
      if (e instanceof UwsgiEncodeError) {
        this.p.log(r, 'error', `uwsgi request is too large or not bytes: ${e.message}`);
        this.p.finalize(r, e.code === 'UWSGI_TOO_LARGE' ? 502 : 400);
        return;
      }
      throw e;
    }
    const relay = new Relay(this, r, pass, st, group, request);
    const first = relay.nextPeer();
    if (!first) {
      this.p.log(r, 'error', `no live upstreams while connecting to upstream, upstream: "${group.conf.name}"`);
      r.upstreamAddrs = [group.conf.name];
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
    for (let i = 0; i < headers.length; i += 2) {
      const name = headers[i]!;
      const lower = name.toLowerCase();
      if (HOP_BY_HOP.has(lower)) continue;
      if ((hidden.has(lower) || extraHidden.has(lower)) && !passAnyway.has(lower)) continue;
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
    if (type !== undefined) first.push('Content-Type', r.conf.charset ? charsetType(this.p, r, type) : type);
    if (length !== undefined) first.push('Content-Length', length);
    if (location !== undefined) first.push('Location', location);
    for (let i = 0; i < rest.length; i++) first.push(rest[i]!);
    if (r.conf.chunkedTransferEncoding === false) r.res.useChunkedEncodingByDefault = false;
    this.p.sendHead(r, status, first, head);
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
      const h = r.req.headers;
      for (const name in h) {
        const c = cgiName(name);
        if (ignoreInvalid && !c.valid && !(underscores && c.validWithUnderscores)) continue;
        if (overridden?.has(c.key)) continue;
        const v = h[name]!;
        keys[n] = c.key;
        values[n++] = Array.isArray(v) ? v.join(', ') : v;
      }
    }
    if (st.tsgiKeepalive) {
      keys[n] = 'TSGI_KEEPALIVE';
      values[n++] = '1';
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
    let uri: string;
    if (pass.uri && !r.validLocation) uri = escapeUri(r.uri) + (r.args ? '?' + r.args : '');
    else if (pass.uri) {
      const base = pass.uri.eval(r);
      if (pass.dynamic === undefined && r.location && r.location.kind !== 'regex' && r.location.kind !== 'named' && r.uri.startsWith(r.location.name)) {
        uri = base + escapeUri(r.uri.slice(r.location.name.length)) + (r.args ? '?' + r.args : '');
      } else uri = base + (r.args && !base.includes('?') ? '?' + r.args : '');
    } else if (r.internal || r.uri !== r.originalUri) uri = escapeUri(r.uri) + (r.args ? '?' + r.args : '');
    else uri = r.requestUri;
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
      for (let i = 0; i < raw.length; i += 2) {
        const k = raw[i]!.toLowerCase();
        if (set.has(k) || k === 'content-length' || k === 'transfer-encoding' || k === 'keep-alive' || k === 'te' || k === 'upgrade' || k === 'expect' || k === 'proxy-connection') continue;
        head += `${raw[i]}: ${raw[i + 1]}\r\n`;
      }
    }
    const body = st.passRequestBody ? r.body : null;
    if (body && !set.has('content-length')) head += `Content-Length: ${body.length}\r\n`;
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
  readonly keep: 'tsgi' | 'http' | 'none';
  readonly poolMax: number;
  readonly idleTimeoutMs: number;
  readonly maxUses: number;
  readonly maxAgeMs: number;
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
    this.head = r.method === 'HEAD';
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
    this.r.bodyBytesSent += chunk.length;
    this.r.upstreamBytes += chunk.length;
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
    if (reused && !responseStarted) {
      // A kept link the backend had closed: try again on a fresh connection, not a failure.
      this.addrs.pop();
      this.attempt(peer, false);
      return;
    }
    this.statuses.push(kind === 'timeout' ? '504' : '502');
    p.log(r, 'error', `${message}, upstream: "${this.pass.scheme}://${peer.label}"`);
    this.group.fail(peer);
    const canRetry = this.conds.has(kind) && (this.idempotent || (!responseStarted && kind === 'error' && !connectedAndSent(message)));
    const next = canRetry ? this.nextPeer() : null;
    if (next) {
      this.attempt(next, true);
      return;
    }
    this.record();
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

function connectionCleared(st: UpstreamSettings): boolean {
  return st.params!.some((p) => p.key.toLowerCase() === 'connection' && p.value.constant === '');
}

/** A failure that happened after the request was written (so a non-idempotent one must not be repeated). */
function connectedAndSent(message: string): boolean {
  return !message.startsWith('connect()') && !message.includes('while connecting');
}

let tempFiles = 0;

/**
 * client_body_in_file_only: the body (also kept in memory, to pass and retry) is written to a file of its
 * own in client_body_temp_path before the request goes on; `clean` removes it once the response is done.
 */
function bodyToFile(r: Rq, p: Pipeline, done: () => void): void {
  const dir = r.conf.clientBodyTempPath!;
  const path = `${dir}/${process.pid}${String(++tempFiles % 1000000).padStart(6, '0')}`;
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
    if (r.conf.clientBodyInFileOnly !== 'off') bodyToFile(r, p, done);
    else done();
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
    if (r.conf.clientBodyInFileOnly !== 'off') bodyToFile(r, p, done);
    else done();
  });
  r.req.on('error', () => {
    finished = true;
    clearTimeout(timer);
  });
}
