/**
 * Variables and templates. A template ("$scheme://$host$request_uri") is compiled once at config time into
 * literal parts and getters; evaluating it per request is a loop of string concatenations, no parsing.
 */
import { hostname } from 'node:os';
import type { Socket } from 'node:net';
import { ProxyConfError, type ConfPos } from './conf/errors.js';
import { parseSize } from './conf/table.js';
import type { Rq } from './request.js';
import { SSL_VARIABLES } from './tlsclient.js';
import { http2Variable, isH2 } from './http2.js';
import { STATS } from './stats.js';

export const PRODUCT = 'tsgi-proxy';
export const VERSION = '0.1.0';

export type Getter = (r: Rq) => string;

const HOSTNAME = hostname();
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

function pad2(n: number): string {
  return n < 10 ? '0' + n : String(n);
}

/** Time in the access log's "10/Oct/2000:13:55:36 -0700" form, cached per second (one format per second). */
let cachedLocalSec = -1;
let cachedLocal = '';
export function timeLocal(ms = Date.now()): string {
  const sec = Math.floor(ms / 1000);
  if (sec !== cachedLocalSec) {
    const d = new Date(sec * 1000);
    const off = -d.getTimezoneOffset();
    const sign = off >= 0 ? '+' : '-';
    const a = Math.abs(off);
    cachedLocal = `${pad2(d.getDate())}/${MONTHS[d.getMonth()]}/${d.getFullYear()}:${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())} ${sign}${pad2(Math.floor(a / 60))}${pad2(a % 60)}`;
    cachedLocalSec = sec;
  }
  return cachedLocal;
}

function timeIso(): string {
  const d = new Date();
  const off = -d.getTimezoneOffset();
  const a = Math.abs(off);
  return `${d.getFullYear()}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())}T${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}${off >= 0 ? '+' : '-'}${pad2(Math.floor(a / 60))}:${pad2(a % 60)}`;
}

function header(r: Rq, name: string): string {
  const v = r.req.headers[name];
  if (v === undefined) return '';
  return Array.isArray(v) ? v.join(name === 'cookie' ? '; ' : ', ') : v;
}

function sock(r: Rq): Socket {
  return r.req.socket;
}

/** A connection's addresses as variables give them: made once per connection (every request of it asks). */
interface PeerStrings {
  addr: string;
  port: string;
  localPort: string;
}

function peerOf(r: Rq, s: Socket): PeerStrings {
  const a = s.remoteAddress;
  return {
    addr: a === undefined ? (r.group.unix ? 'unix:' : '') : a.startsWith('::ffff:') ? a.slice(7) : a,
    port: s.remotePort !== undefined ? String(s.remotePort) : '',
    localPort: s.localPort !== undefined ? String(s.localPort) : r.group.port ? String(r.group.port) : '',
  };
}

function peer(r: Rq): PeerStrings {
  const s = sock(r) as Socket & { _tsgiPeer?: PeerStrings };
  // An HTTP/2 request's socket is node:http2's proxy of the session's: nothing is kept on it.
  if (isH2(r.req)) return peerOf(r, s);
  return (s._tsgiPeer ??= peerOf(r, s));
}

function serverPort(r: Rq): string {
  return peer(r).localPort;
}

function serverAddr(r: Rq): string {
  const a = sock(r).localAddress ?? '';
  return a.startsWith('::ffff:') ? a.slice(7) : a;
}

function remoteAddr(r: Rq): string {
  if (r.realAddr !== null) return r.realAddr;
  return connAddr(r);
}

/** The connection's own peer address ($realip_remote_addr). */
function connAddr(r: Rq): string {
  return peer(r).addr;
}

/** Built-in variables by name. */
const BUILTIN: Record<string, Getter> = {
  uri: (r) => r.uri,
  document_uri: (r) => r.uri,
  request_uri: (r) => r.requestUri,
  args: (r) => r.args,
  query_string: (r) => r.args,
  is_args: (r) => (r.args ? '?' : ''),
  host: (r) => r.host,
  hostname: () => HOSTNAME,
  server_name: (r) => r.server.primaryName,
  server_port: serverPort,
  server_addr: serverAddr,
  server_protocol: (r) => `HTTP/${r.req.httpVersion}`,
  remote_addr: remoteAddr,
  binary_remote_addr: remoteAddr,
  remote_port: (r) => (r.realAddr !== null ? r.realPort : peer(r).port),
  realip_remote_addr: connAddr,
  realip_remote_port: (r) => peer(r).port,
  remote_user: (r) => {
    const a = r.req.headers.authorization;
    if (!a || !/^basic /i.test(a)) return '';
    const dec = Buffer.from(a.slice(6).trim(), 'base64').toString('latin1');
    const i = dec.indexOf(':');
    return i < 0 ? '' : dec.slice(0, i);
  },
  request_method: (r) => r.method,
  request: (r) => `${r.req.method} ${r.requestUri} HTTP/${r.req.httpVersion}`,
  scheme: (r) => (r.group.ssl ? 'https' : 'http'),
  https: (r) => (r.group.ssl ? 'on' : ''),
  status: (r) => String(r.status || r.res.statusCode),
  body_bytes_sent: (r) => String(r.bodyBytesSent),
  bytes_sent: (r) => String(r.bodyBytesSent),
  request_length: (r) => String((r.req.socket.bytesRead ?? 0)),
  content_length: (r) => header(r, 'content-length') || (r.body && (r.req.headers['transfer-encoding'] || isH2(r.req)) ? String(r.body.length) : ''),
  content_type: (r) => header(r, 'content-type'),
  time_local: () => timeLocal(),
  time_iso8601: timeIso,
  msec: () => (Date.now() / 1000).toFixed(3),
  request_time: (r) => ((Date.now() - r.start) / 1000).toFixed(3),
  document_root: (r) => r.documentRoot(),
  realpath_root: (r) => r.documentRoot(),
  request_filename: (r) => r.filename || r.documentRoot() + r.uri,
  nginx_version: () => VERSION,
  tsgi_proxy_version: () => VERSION,
  pid: () => String(process.pid),
  // What `set $limit_rate` gave (as a size; anything else is 0), else limit_rate.
  limit_rate: (r) => {
    const v = r.vars?.get('limit_rate');
    if (v === undefined) return String(r.conf.limitRate ?? 0);
    const n = parseSize(v);
    return Number.isNaN(n) ? '0' : String(n);
  },
  limit_req_status: (r) => r.limitReqStatus,
  limit_conn_status: (r) => r.limitConnStatus,
  connection_requests: (r) => String(r.nth),
  connection_time: (r) => ((Date.now() - ((r.req.socket as Socket & { _tsgiStart?: number })._tsgiStart ?? r.start)) / 1000).toFixed(3),
  connection: (r) => String((r.req.socket as Socket & { _tsgiId?: number })._tsgiId ?? 0),
  upstream_addr: (r) => r.upstreamAddr,
  upstream_status: (r) => r.upstreamStatus,
  upstream_response_length: (r) => (r.upstreamAddrs ? String(r.upstreamBytes) : ''),
  upstream_response_time: (r) => r.upstreamResponseTime,
  upstream_cache_status: (r) => r.cacheStatus,
  proxy_host: (r) => r.proxyHost,
  proxy_add_x_forwarded_for: (r) => {
    const x = header(r, 'x-forwarded-for');
    return x ? `${x}, ${remoteAddr(r)}` : remoteAddr(r);
  },
  // A body written to a file (client_body_in_file_only), or larger than client_body_buffer_size (which nginx
  // buffers in a file), is not in $request_body, as in nginx.
  request_body: (r) => (r.body && !r.bodyFile ? r.body.toString('latin1') : ''),
  request_body_file: (r) => r.bodyFile,
  // stub_status's counters, of this worker (docs/proxy.md: the page sums every worker's, these do not).
  connections_active: () => String(STATS.active),
  connections_reading: () => String(STATS.reading),
  connections_writing: () => String(STATS.writing),
  connections_waiting: () => String(Math.max(0, STATS.active - STATS.reading - STATS.writing)),
};

/** Names of variables `set` declares anywhere in the configuration (checked once the whole file is read). */
export interface VarRegistry {
  declared: Set<string>;
  used: Array<{ name: string; pos: ConfPos }>;
  /** One slot per non-built-in name a template reads; `map` fills the slot's getter (a map may come after its
   * use, so templates hold the slot, not the map). */
  slots: Map<string, VarSlot>;
  /** Maps defined so far: each one's index in Rq.mapVals, the per-request cache. */
  mapCount: number;
  /** stub_status or a $connections_* variable is used: the connections are counted (stats.ts). */
  connStats: boolean;
}

export interface VarSlot {
  map: Getter | undefined;
}

export function newRegistry(): VarRegistry {
  return { declared: new Set(), used: [], slots: new Map(), mapCount: 0, connStats: false };
}

export function varSlot(reg: VarRegistry, name: string): VarSlot {
  let slot = reg.slots.get(name);
  if (!slot) reg.slots.set(name, (slot = { map: undefined }));
  return slot;
}

function captureGetter(n: number): Getter {
  return (r) => (r.captures && r.captures[n] !== undefined ? r.captures[n]! : '');
}

function argGetter(name: string): Getter {
  return (r) => {
    const a = r.args;
    if (!a) return '';
    let i = 0;
    while (i <= a.length) {
      let j = a.indexOf('&', i);
      if (j < 0) j = a.length;
      const eq = a.indexOf('=', i);
      const keyEnd = eq >= 0 && eq < j ? eq : j;
      if (keyEnd - i === name.length && a.slice(i, keyEnd).toLowerCase() === name) return eq >= 0 && eq < j ? a.slice(eq + 1, j) : '';
      i = j + 1;
    }
    return '';
  };
}

function cookieGetter(name: string): Getter {
  return (r) => {
    const c = header(r, 'cookie');
    if (!c) return '';
    for (const part of c.split(/;\s*/)) {
      const eq = part.indexOf('=');
      if (eq > 0 && part.slice(0, eq).trim().toLowerCase() === name) return part.slice(eq + 1);
    }
    return '';
  };
}

/** The getter for a variable name, or undefined when it is not a built-in or prefixed one. */
export function builtinGetter(name: string): Getter | undefined {
  const b = BUILTIN[name] ?? SSL_VARIABLES[name] ?? (name === 'http2' ? http2Variable : undefined);
  if (b) return b;
  if (/^[0-9]$/.test(name)) return captureGetter(Number(name));
  if (name.startsWith('http_')) {
    const h = name.slice(5).replace(/_/g, '-').toLowerCase();
    return (r) => header(r, h);
  }
  if (name.startsWith('arg_')) return argGetter(name.slice(4).toLowerCase());
  if (name.startsWith('cookie_')) return cookieGetter(name.slice(7).toLowerCase());
  if (name.startsWith('sent_trailer_')) {
    const t = name.slice(13).replace(/_/g, '-').toLowerCase();
    return (r) => r.trailers?.get(t) ?? '';
  }
  if (name.startsWith('upstream_http_')) {
    const h = name.slice(14).replace(/_/g, '-').toLowerCase();
    return (r) => listValue(r.upstreamHeaders, h, ', ');
  }
  if (name.startsWith('upstream_cookie_')) {
    const c = name.slice(16).toLowerCase();
    return (r) => {
      const list = r.upstreamHeaders;
      if (!list) return '';
      for (let i = 0; i < list.length; i += 2) {
        if (list[i]!.toLowerCase() !== 'set-cookie') continue;
        const v = list[i + 1]!;
        const eq = v.indexOf('=');
        if (eq > 0 && v.slice(0, eq).trim().toLowerCase() === c) {
          const semi = v.indexOf(';', eq);
          return v.slice(eq + 1, semi < 0 ? v.length : semi);
        }
      }
      return '';
    };
  }
  if (name.startsWith('sent_http_')) {
    const h = name.slice(10).replace(/_/g, '-').toLowerCase();
    return (r) => {
      // The head as written (writeHead with a list keeps no getHeader() copy).
      if (r.sentHeaders) return listValue(r.sentHeaders, h, ', ');
      const v = r.res.getHeader(h);
      return v === undefined ? '' : Array.isArray(v) ? v.join(', ') : String(v);
    };
  }
  return undefined;
}

/** The values of header `h` (lower case) in a flat name/value list, joined as nginx joins them. */
function listValue(list: string[] | null, h: string, sep: string): string {
  if (!list) return '';
  let out: string | undefined;
  for (let i = 0; i < list.length; i += 2) {
    if (list[i]!.toLowerCase() === h) out = out === undefined ? list[i + 1]! : out + sep + list[i + 1]!;
  }
  return out ?? '';
}

function varGetter(name: string, reg: VarRegistry, pos: ConfPos): Getter {
  const b = builtinGetter(name);
  if (b) {
    if (name.startsWith('connections_')) reg.connStats = true;
    return b;
  }
  reg.used.push({ name, pos });
  const slot = varSlot(reg, name);
  // A variable from `set` (which may overwrite a map variable, as in nginx), a `map`, or a named regex capture.
  return (r) => {
    const v = r.vars?.get(name);
    if (v !== undefined) return v;
    if (slot.map !== undefined) return slot.map(r);
    const g = r.captures?.groups?.[name];
    return g ?? '';
  };
}

/** A compiled template. `constant` is set when there are no variables at all. */
export interface Template {
  readonly source: string;
  readonly constant: string | undefined;
  readonly hasVars: boolean;
  eval(r: Rq): string;
}

const NAME_CHAR = /[A-Za-z0-9_]/;

/**
 * Compiles "$var" and "${var}" references. `wrap`, when given, is applied to each variable's value (the
 * access log escapes values, never the literal text of the format).
 */
export function compileTemplate(src: string, reg: VarRegistry, pos: ConfPos, namedCaptures?: Set<string>, wrap?: (s: string, r: Rq) => string, wrapOnly?: (name: string) => boolean): Template {
  const lits: string[] = [];
  const getters: Getter[] = [];
  let lit = '';
  let i = 0;
  while (i < src.length) {
    const c = src[i]!;
    if (c !== '$') {
      lit += c;
      i++;
      continue;
    }
    let name = '';
    if (src[i + 1] === '{') {
      const end = src.indexOf('}', i + 2);
      if (end < 0) throw new ProxyConfError('BAD_VALUE', `the closing bracket in "${src.slice(i + 2)}" variable is missing`, pos);
      name = src.slice(i + 2, end);
      i = end + 1;
    } else {
      let j = i + 1;
      if (j < src.length && /[0-9]/.test(src[j]!)) j++; // $1..$9 are one digit
      else while (j < src.length && NAME_CHAR.test(src[j]!)) j++;
      name = src.slice(i + 1, j);
      i = j;
    }
    if (name === '') throw new ProxyConfError('BAD_VALUE', `invalid variable name in "${src}"`, pos);
    lits.push(lit);
    lit = '';
    const g: Getter = namedCaptures?.has(name) ? (r) => r.captures?.groups?.[name] ?? '' : varGetter(name, reg, pos);
    getters.push(wrap && (wrapOnly === undefined || wrapOnly(name)) ? (r) => wrap(g(r), r) : g);
  }
  lits.push(lit);
  if (getters.length === 0) {
    return { source: src, constant: lit, hasVars: false, eval: () => lit };
  }
  if (getters.length === 1 && lits[0] === '' && lits[1] === '') {
    const g = getters[0]!;
    return { source: src, constant: undefined, hasVars: true, eval: g };
  }
  return {
    source: src,
    constant: undefined,
    hasVars: true,
    eval(r: Rq): string {
      let s = lits[0]!;
      for (let k = 0; k < getters.length; k++) s += getters[k]!(r) + lits[k + 1]!;
      return s;
    },
  };
}

/** After the whole configuration is read: every variable used must be built in or declared by `set`. */
/** Access log escaping: an empty value is "-"; '"', '\\' and bytes outside printable ASCII become \xXX (escape=default). */
export function escapeLogDefault(s: string): string {
  if (s === '') return '-';
  if (!/["\\\x00-\x1f\x7f-\xff]/.test(s)) return s;
  return s.replace(/["\\\x00-\x1f\x7f-\xff]/g, (c) => '\\x' + c.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0'));
}

export function escapeLogJson(s: string): string {
  return JSON.stringify(s).slice(1, -1);
}

export function checkVariables(reg: VarRegistry): void {
  for (const u of reg.used) {
    if (!reg.declared.has(u.name)) throw new ProxyConfError('BAD_VALUE', `unknown "${u.name}" variable`, u.pos);
  }
}
