/**
 * Core and http-core directives: main context (daemon, worker_processes, pid, error_log, user, events, http),
 * include, server, listen, server_name, location and the location-level settings of http core.
 */
import { basename, isAbsolute, resolve as resolvePath } from 'node:path';
import { ProxyConfError } from '../errors.js';
import { LocConf, type Expires, type HttpConf, type LocationConf, type ServerConf } from '../model.js';
import type { ConfNode } from '../parse.js';
import { parseConf } from '../parse.js';
import type { Scope } from '../scope.js';
import {
  ANY, EVENTS, HSL, HTTP, LIF, LOC, MAIN, MORE, SRV, badValue, duplicate, notSupported, parseFlag, parseTimeMs, pos, secondsArg, sizeArg, timeArg, tuning, unsupported,
  type DirectiveSpec,
} from '../table.js';
import { compileTemplate } from '../../vars.js';
import { BUILTIN_FILES } from '../builtin-files.js';
import { compileRegex } from './regex.js';

type Spec = DirectiveSpec<Scope>;

/** A location-level value that may be set once per level. */
export function locOnce<K extends keyof LocConf>(name: string, ctx: number, args: Spec['args'], key: K, parse: (d: ConfNode, s: Scope) => LocConf[K]): Spec {
  return {
    name,
    ctx,
    args,
    set(s, d) {
      if (s.loc[key] !== undefined) throw duplicate(d);
      s.loc[key] = parse(d, s);
    },
  };
}

/**
 * One `expires` value (also a variable's value per request): nginx's times in seconds, `-T` (no-cache),
 * `@T` (a time of day, under 24 hours, not with "modified"), epoch/max/off (not with "modified").
 * A string is the error: 'invalid' or nginx's message.
 */
export function parseExpires(v: string, modified: boolean): Expires | string {
  if (v === 'epoch' || v === 'max' || v === 'off') return modified ? 'invalid' : v === 'epoch' ? { mode: 'epoch' } : v === 'max' ? { mode: 'max' } : { mode: 'off' };
  let mode: 'access' | 'modified' | 'daily' = modified ? 'modified' : 'access';
  let t = v;
  let sign = 1;
  if (t.startsWith('@')) {
    if (modified) return 'daily time cannot be used with "modified" parameter';
    mode = 'daily';
    t = t.slice(1);
  } else if (t.startsWith('-')) {
    sign = -1;
    t = t.slice(1);
  }
  const ms = /ms/.test(t) ? Number.NaN : parseTimeMs(t);
  if (Number.isNaN(ms)) return 'invalid';
  if (mode === 'daily' && ms >= 86400000) return 'daily time value must be less than 24 hours';
  const t2 = sign * Math.floor(ms / 1000) * 1000;
  return mode === 'daily' ? { mode, ms: t2 } : mode === 'modified' ? { mode, ms: t2 } : { mode, ms: t2 };
}

export const flagLoc = (name: string, key: keyof LocConf, ctx = HSL): Spec =>
  locOnce(name, ctx, 'flag', key, (d) => parseFlag(d) as never);
const timeLoc = (name: string, key: keyof LocConf, ctx = HSL): Spec => locOnce(name, ctx, 1, key, (d) => timeArg(d) as never);


export function fullPath(s: Scope, p: string): string {
  return isAbsolute(p) ? p : resolvePath(s.env.prefix, p);
}

function confPath(s: Scope, p: string): string {
  return isAbsolute(p) ? p : resolvePath(s.env.confPrefix, p);
}

const includeSpec: Spec = {
  name: 'include',
  ctx: ANY,
  args: 1,
  set(s, d) {
    const arg = d.args[0]!;
    const path = confPath(s, arg);
    if (s.env.includeDepth > 32) throw new ProxyConfError('FILE', `include nesting too deep for "${arg}"`, pos(d));
    let files: string[];
    if (/[*?[]/.test(path)) files = s.env.fs.glob(path);
    else files = [path];
    for (const f of files) {
      let text = s.env.fs.read(f);
      let name = f;
      if (text instanceof Error) {
        // Built-in copies of the files every nginx installation has, for configs that include them by name.
        const builtin = !/[*?[]/.test(arg) ? BUILTIN_FILES[basename(arg)] : undefined;
        if (builtin === undefined) throw new ProxyConfError('FILE', `open() "${f}" failed (${text.message})`, pos(d));
        text = builtin;
        name = `<built-in>/${basename(arg)}`;
      }
      s.env.filesRead.push(name);
      const nodes = parseConf(text, name);
      s.env.includeDepth++;
      try {
        s.walk(s, nodes, s.ctx);
      } finally {
        s.env.includeDepth--;
      }
    }
  },
};

// ---- main context ----

const mainSpecs: Spec[] = [
  {
    name: 'daemon', ctx: MAIN, args: 'flag',
    set(s, d) {
      if (s.main.daemon !== undefined) throw duplicate(d);
      s.main.daemon = parseFlag(d);
    },
  },
  {
    name: 'master_process', ctx: MAIN, args: 'flag',
    set(s, d) {
      if (s.main.masterProcess !== undefined) throw duplicate(d);
      s.main.masterProcess = parseFlag(d);
    },
  },
  {
    name: 'worker_processes', ctx: MAIN, args: 1,
    set(s, d) {
      if (s.main.workerProcesses !== undefined) throw duplicate(d);
      const v = d.args[0]!;
      if (v === 'auto') s.main.workerProcesses = 0;
      else if (/^\d+$/.test(v) && Number(v) > 0) s.main.workerProcesses = Number(v);
      else throw badValue(d, v);
    },
  },
  {
    name: 'pid', ctx: MAIN, args: 1,
    set(s, d) {
      if (s.main.pid !== undefined) throw duplicate(d);
      s.main.pid = d.args[0] === 'off' ? '' : fullPath(s, d.args[0]!);
    },
  },
  {
    name: 'user', ctx: MAIN, args: [1, 2],
    set(s, d) {
      if (s.main.user !== undefined) throw duplicate(d);
      s.main.user = { user: d.args[0]!, group: d.args[1] };
    },
  },
  {
    name: 'worker_shutdown_timeout', ctx: MAIN, args: 1,
    set(s, d) {
      s.main.workerShutdownTimeoutMs = timeArg(d);
    },
  },
  {
    name: 'env', ctx: MAIN, args: 1,
    set(s, d) {
      s.main.env.push(d.args[0]!);
    },
  },
  {
    name: 'error_log', ctx: MAIN | HSL, args: [1, 2],
    set(s, d) {
      const level = d.args[1] ?? 'error';
      if (!['debug', 'info', 'notice', 'warn', 'error', 'crit', 'alert', 'emerg'].includes(level)) throw badValue(d, level);
      const p = d.args[0]!;
      if (p.startsWith('syslog:') || p.startsWith('memory:')) throw notSupported(d, `"${p.split(':')[0]}:"`);
      // Only the main-level error log is written; lower levels log to it too (documented).
      if (s.ctx === MAIN) s.main.errorLogs.push({ path: p === 'stderr' ? 'stderr' : fullPath(s, p), level });
    },
  },
  tuning('worker_rlimit_nofile', MAIN, 1),
  {
    name: 'worker_priority', ctx: MAIN, args: 1,
    set(s, d) {
      const v = d.args[0]!;
      if (!/^[+-]?\d+$/.test(v)) throw new ProxyConfError('BAD_VALUE', `invalid number "${v}"`, pos(d));
      const n = Number(v);
      if (n < -20 || n > 19) throw new ProxyConfError('BAD_VALUE', `invalid number "${v}"`, pos(d));
      s.main.workerPriority = n;
    },
  },
  // Node cannot pin a process to CPUs; the scheduler places the workers (as without the directive).
  tuning('worker_cpu_affinity', MAIN, [1, MORE]),
  tuning('thread_pool', MAIN, [2, 3]),
  tuning('pcre_jit', MAIN, 'flag'),
  tuning('timer_resolution', MAIN, 1),
  {
    name: 'events', ctx: MAIN, args: 0, block: true,
    set(s, d) {
      if (s.main.events) throw duplicate(d);
      s.main.events = true;
      s.walk({ ...s, ctx: EVENTS }, d.block!, EVENTS);
    },
  },
  {
    name: 'worker_connections', ctx: EVENTS, args: 1,
    set(s, d) {
      const v = Number(d.args[0]);
      if (!Number.isInteger(v) || v <= 0) throw badValue(d, d.args[0]!);
      s.main.workerConnections = v;
    },
  },
  tuning('multi_accept', EVENTS, 'flag'),
  tuning('accept_mutex', EVENTS, 'flag'),
  tuning('accept_mutex_delay', EVENTS, 1),
  {
    name: 'use', ctx: EVENTS, args: 1,
    set(_s, d) {
      if (!['epoll', 'poll', 'select'].includes(d.args[0]!)) throw badValue(d, d.args[0]!);
    },
  },
  {
    name: 'http', ctx: MAIN, args: 0, block: true,
    set(s, d) {
      if (s.main.http) throw duplicate(d);
      const http: HttpConf = {
        loc: new LocConf(), servers: [], upstreams: new Map(), implicitUpstreams: new Map(), logFormats: new Map(), limitReqZones: new Map(), limitConnZones: new Map(),
        mergeSlashes: undefined, clientHeaderTimeoutMs: undefined, largeHeaderBytes: undefined, largeHeaderLine: undefined, ignoreInvalidHeaders: undefined,
        underscoresInHeaders: undefined, pos: pos(d),
      };
      s.main.http = http;
      s.walk({ ...s, ctx: HTTP, http, loc: http.loc, script: [] }, d.block!, HTTP);
    },
  },
];

// ---- server, listen, server_name ----

export function parseListen(d: ConfNode): ServerConf['listens'][number] {
  const a = d.args[0]!;
  const l: ServerConf['listens'][number] = { host: '', port: 80, unix: undefined, defaultServer: false, ssl: false, http2: false, backlog: undefined, pos: pos(d) };
  if (a.startsWith('unix:')) {
    l.unix = a.slice(5);
    l.port = 0;
    if (!l.unix) throw badValue(d, a);
  } else {
    let m: RegExpExecArray | null;
    if ((m = /^\[([0-9a-fA-F:.]+)\](?::(\d+))?$/.exec(a))) {
      l.host = m[1] === '::' ? '::' : m[1]!;
      if (m[2]) l.port = Number(m[2]);
    } else if (/^\d+$/.test(a)) l.port = Number(a);
    else if ((m = /^([^:]+)(?::(\d+))?$/.exec(a))) {
      l.host = m[1] === '*' ? '' : m[1] === 'localhost' ? '127.0.0.1' : m[1]!;
      if (m[2]) l.port = Number(m[2]);
      if (l.host !== '' && !/^\d+\.\d+\.\d+\.\d+$/.test(l.host)) throw notSupported(d, `host name "${l.host}"`);
    } else throw new ProxyConfError('BAD_VALUE', `invalid port in "${a}" of the "listen" directive`, pos(d));
    if (l.port <= 0 || l.port > 65535) throw new ProxyConfError('BAD_VALUE', `invalid port in "${a}" of the "listen" directive`, pos(d));
    if (l.host === '0.0.0.0') l.host = '';
  }
  for (const p of d.args.slice(1)) {
    if (p === 'default_server' || p === 'default') l.defaultServer = true;
    else if (p === 'ssl') l.ssl = true;
    else if (p === 'http2') l.http2 = true;
    else if (p.startsWith('backlog=')) {
      const b = Number(p.slice(8));
      if (!Number.isInteger(b)) throw new ProxyConfError('BAD_VALUE', `invalid backlog "${p.slice(8)}"`, pos(d));
      l.backlog = b;
    } else if (p === 'bind' || p === 'deferred' || p.startsWith('ipv6only=') || p.startsWith('so_keepalive=') || p.startsWith('rcvbuf=') || p.startsWith('sndbuf=')) {
      // Socket tuning with no effect on what is served.
    } else throw new ProxyConfError('NOT_SUPPORTED', `invalid parameter "${p}"`, pos(d));
  }
  return l;
}

function addServerNames(srv: ServerConf, d: ConfNode, s: Scope): void {
  for (const raw of d.args) {
    const n = raw.toLowerCase();
    if (srv.primaryName === '' && !n.startsWith('~')) srv.primaryName = raw === '$hostname' ? '' : n;
    if (n.startsWith('~')) {
      srv.names.regex.push(compileRegex(raw.slice(1), false, d, s));
      if (srv.primaryName === '') srv.primaryName = raw;
    } else if (n.startsWith('*.')) srv.names.wildStart.push(n.slice(1));
    else if (n.startsWith('.')) {
      srv.names.wildStart.push(n);
      srv.names.exact.add(n.slice(1));
    } else if (n.endsWith('.*')) srv.names.wildEnd.push(n.slice(0, -1));
    else if (n.includes('*')) throw new ProxyConfError('BAD_VALUE', `invalid server name or wildcard "${raw}"`, pos(d));
    else srv.names.exact.add(n);
  }
}

const serverSpecs: Spec[] = [
  {
    name: 'server', ctx: HTTP, args: 0, block: true,
    set(s, d) {
      const srv: ServerConf = {
        listens: [], names: { exact: new Set(), wildStart: [], wildEnd: [], regex: [] }, primaryName: '', loc: new LocConf(),
        script: [], locations: [], named: new Map(), mergeSlashes: undefined, clientHeaderTimeoutMs: undefined,
        largeHeaderBytes: undefined, largeHeaderLine: undefined, ignoreInvalidHeaders: undefined, underscoresInHeaders: undefined, pos: pos(d),
      };
      s.http!.servers.push(srv);
      s.walk({ ...s, ctx: SRV, srv, loc: srv.loc, script: srv.script, location: undefined }, d.block!, SRV);
    },
  },
  {
    name: 'listen', ctx: SRV, args: [1, MORE],
    set(s, d) {
      s.srv!.listens.push(parseListen(d));
    },
  },
  {
    name: 'server_name', ctx: SRV, args: [1, MORE],
    set(s, d) {
      addServerNames(s.srv!, d, s);
    },
  },
];

/** Settings nginx keeps at server level (used when the request line and headers are read). */
function srvLevel(name: string, key: 'mergeSlashes' | 'clientHeaderTimeoutMs' | 'ignoreInvalidHeaders' | 'underscoresInHeaders', parse: (d: ConfNode) => number | boolean, args: Spec['args']): Spec {
  return {
    name, ctx: HTTP | SRV, args,
    set(s, d) {
      const target = (s.srv ?? s.http!) as unknown as Record<string, unknown>;
      if (target[key] !== undefined) throw duplicate(d);
      target[key] = parse(d);
    },
  };
}

// ---- location ----

function locationSpec(): Spec {
  return {
    name: 'location', ctx: SRV | LOC, args: [1, 2], block: true,
    set(s, d) {
      let mod = '';
      let name = d.args[0]!;
      if (d.args.length === 2) {
        mod = d.args[0]!;
        name = d.args[1]!;
      } else if (name.startsWith('=')) {
        mod = '=';
        name = name.slice(1);
      } else if (name.startsWith('^~')) {
        mod = '^~';
        name = name.slice(2);
      } else if (name.startsWith('~*')) {
        mod = '~*';
        name = name.slice(2);
      } else if (name.startsWith('~')) {
        mod = '~';
        name = name.slice(1);
      }
      const parent = s.location;
      const loc: LocationConf = {
        name, kind: 'prefix', regex: undefined, conf: new LocConf(), script: [], children: [], parent, autoRedirect: false, pos: pos(d),
      };
      if (mod === '=') loc.kind = 'exact';
      else if (mod === '^~') loc.kind = 'noregex';
      else if (mod === '~' || mod === '~*') {
        loc.kind = 'regex';
        loc.regex = compileRegex(name, mod === '~*', d, s);
      } else if (mod !== '') throw new ProxyConfError('BAD_VALUE', `invalid location modifier "${mod}"`, pos(d));
      else if (name.startsWith('@')) loc.kind = 'named';
      if (loc.kind === 'named') {
        if (parent) throw new ProxyConfError('NOT_ALLOWED_HERE', `named location "${name}" can be on the server level only`, pos(d));
        if (s.srv!.named.has(name)) throw new ProxyConfError('DUPLICATE', `duplicate location "${name}"`, pos(d));
        s.srv!.named.set(name, loc);
      } else if (parent) {
        if (parent.kind === 'exact') throw new ProxyConfError('NOT_ALLOWED_HERE', `location "${name}" cannot be inside the exact location "${parent.name}"`, pos(d));
        if (parent.kind === 'named') throw new ProxyConfError('NOT_ALLOWED_HERE', `location "${name}" cannot be inside the named location "${parent.name}"`, pos(d));
        if (loc.kind !== 'regex' && parent.kind !== 'regex' && !name.startsWith(parent.name)) {
          throw new ProxyConfError('NOT_ALLOWED_HERE', `location "${name}" is outside location "${parent.name}"`, pos(d));
        }
        parent.children.push(loc);
      } else {
        const list = s.srv!.locations;
        if (loc.kind !== 'regex' && list.some((o) => o.kind !== 'regex' && o.name === name && (o.kind === 'exact') === (loc.kind === 'exact'))) {
          throw new ProxyConfError('DUPLICATE', `duplicate location "${name}"`, pos(d));
        }
        list.push(loc);
      }
      s.walk({ ...s, ctx: LOC, loc: loc.conf, location: loc, script: loc.script }, d.block!, LOC);
    },
  };
}

// ---- location-level http core ----

const locSpecs: Spec[] = [
  locOnce('client_max_body_size', HSL, 1, 'clientMaxBodySize', (d) => sizeArg(d)),
  timeLoc('client_body_timeout', 'clientBodyTimeoutMs'),
  unsupported('send_timeout', HSL, 1, 'no timeout between two writes to the client is enforced yet'),
  {
    // keepalive_timeout idle [header]: the optional second value is what the Keep-Alive response header
    // announces, in seconds (none when unset or 0). Given alone, the first value leaves the header to be
    // inherited from the enclosing level, as in nginx (the two are merged separately).
    name: 'keepalive_timeout',
    ctx: HSL,
    args: [1, 2],
    set(s, d) {
      if (s.loc.keepaliveTimeoutMs !== undefined) throw duplicate(d);
      s.loc.keepaliveTimeoutMs = timeArg(d);
      if (d.args.length === 2) s.loc.keepaliveHeaderS = secondsArg(d, 1);
    },
  },
  locOnce('keepalive_requests', HSL, 1, 'keepaliveRequests', (d) => {
    const n = Number(d.args[0]);
    if (!Number.isInteger(n) || n < 0) throw badValue(d, d.args[0]!);
    return n;
  }),
  locOnce('keepalive_time', HSL, 1, 'keepaliveTimeMs', (d) => timeArg(d)),
  locOnce('keepalive_disable', HSL, [1, 2], 'keepaliveDisable', (d) => {
    const v = { msie6: false, safari: false };
    for (const a of d.args) {
      if (a === 'msie6') v.msie6 = true;
      else if (a === 'safari') v.safari = true;
      else if (a !== 'none') throw badValue(d, a);
    }
    return v;
  }),
  locOnce('server_tokens', HSL, 1, 'serverTokens', (d) => {
    const v = d.args[0]!;
    if (v === 'on' || v === 'build') return true;
    if (v === 'off') return false;
    throw badValue(d, v, 'it must be "on", "off" or "build"');
  }),
  flagLoc('absolute_redirect', 'absoluteRedirect'),
  flagLoc('server_name_in_redirect', 'serverNameInRedirect'),
  flagLoc('port_in_redirect', 'portInRedirect'),
  flagLoc('log_not_found', 'logNotFound'),
  flagLoc('recursive_error_pages', 'recursiveErrorPages'),
  flagLoc('tcp_nodelay', 'tcpNodelay'),
  flagLoc('chunked_transfer_encoding', 'chunkedTransferEncoding'),
  flagLoc('etag', 'etag'),
  locOnce('if_modified_since', HSL, 1, 'ifModifiedSince', (d) => {
    const v = d.args[0]!;
    if (v !== 'off' && v !== 'exact' && v !== 'before') throw badValue(d, v);
    return v;
  }),
  {
    name: 'internal', ctx: LOC, args: 0,
    set(s, d) {
      if (s.loc.internal !== undefined) throw duplicate(d);
      s.loc.internal = true;
    },
  },
  {
    name: 'error_page', ctx: HSL | LIF, args: [2, MORE],
    set(s, d) {
      const args = d.args;
      const uriSrc = args[args.length - 1]!;
      let overwrite: number | 'target' | undefined;
      const codes: number[] = [];
      for (const a of args.slice(0, -1)) {
        if (a.startsWith('=')) {
          if (a === '=') overwrite = 'target';
          else {
            const n = Number(a.slice(1));
            if (!Number.isInteger(n) || n < 100 || n > 999) throw new ProxyConfError('BAD_VALUE', `invalid value "${a}"`, pos(d));
            overwrite = n;
          }
          continue;
        }
        const n = Number(a);
        if (!/^\d{3}$/.test(a) || n < 300 || n > 599) throw new ProxyConfError('BAD_VALUE', `value "${a}" must be between 300 and 599`, pos(d));
        codes.push(n);
      }
      if (codes.length === 0) throw new ProxyConfError('ARG_COUNT', 'invalid number of arguments in "error_page" directive', pos(d));
      const list = (s.loc.errorPages ??= []);
      list.push({ codes, overwrite, uri: compileTemplate(uriSrc, s.reg, pos(d)) });
    },
  },
  {
    name: 'add_header', ctx: HSL | LIF, args: [2, 3],
    set(s, d) {
      if (d.args[2] !== undefined && d.args[2] !== 'always') throw badValue(d, d.args[2]);
      const lower = d.args[0]!.toLowerCase();
      const single = lower === 'etag' || lower === 'last-modified' ? lower : undefined;
      (s.loc.addHeaders ??= []).push({ name: d.args[0]!, value: compileTemplate(d.args[1]!, s.reg, pos(d)), always: d.args[2] === 'always', single });
    },
  },
  {
    name: 'add_trailer', ctx: HSL | LIF, args: [2, 3],
    set(s, d) {
      if (d.args[2] !== undefined && d.args[2] !== 'always') throw badValue(d, d.args[2]);
      (s.loc.addTrailers ??= []).push({ name: d.args[0]!, value: compileTemplate(d.args[1]!, s.reg, pos(d)), always: d.args[2] === 'always', single: undefined });
    },
  },
  locOnce('limit_rate', HSL | LIF, 1, 'limitRate', (d) => sizeArg(d)),
  locOnce('limit_rate_after', HSL | LIF, 1, 'limitRateAfter', (d) => sizeArg(d)),
  locOnce('expires', HSL | LIF, [1, 2], 'expires', (d, s) => {
    const modified = d.args.length === 2;
    if (modified && d.args[0] !== 'modified') throw new ProxyConfError('BAD_VALUE', `invalid value "${d.args[0]}" in "expires" directive`, pos(d));
    const v = d.args[d.args.length - 1]!;
    if (v.includes('$')) return { mode: 'var', modified, value: compileTemplate(v, s.reg, pos(d)) };
    const e = parseExpires(v, modified);
    if (typeof e === 'string') throw new ProxyConfError('BAD_VALUE', e === 'invalid' ? '"expires" directive invalid value' : `"expires" directive ${e}`, pos(d));
    return e;
  }),
  // Tuning without an observable effect in Node (see docs/proxy.md).
  tuning('sendfile', HSL | LIF, 'flag'),
  // How nginx reads files (threads, O_DIRECT): what is sent is the same.
  tuning('aio', HSL, 1),
  tuning('aio_write', HSL, 'flag'),
  tuning('directio', HSL, 1),
  tuning('directio_alignment', HSL, 1),
  {
    name: 'disable_symlinks', ctx: HSL, args: [1, 2],
    set(_s, d) {
      if (d.args[0] !== 'off') throw notSupported(d, `"disable_symlinks ${d.args[0]}"`);
    },
  },
  tuning('tcp_nopush', HSL, 'flag'),
  tuning('sendfile_max_chunk', HSL, 1),
  tuning('types_hash_max_size', HSL, 1),
  tuning('types_hash_bucket_size', HSL, 1),
  tuning('server_names_hash_max_size', HTTP, 1),
  tuning('server_names_hash_bucket_size', HTTP, 1),
  tuning('variables_hash_max_size', HTTP, 1),
  tuning('variables_hash_bucket_size', HTTP, 1),
  tuning('client_body_buffer_size', HSL, 1),
  tuning('client_header_buffer_size', HTTP | SRV, 1),
  // The levels (further arguments) of nginx's temp tree are accepted; files go straight into the directory.
  locOnce('client_body_temp_path', HSL, [1, 4], 'clientBodyTempPath', (d, s) => {
    for (const l of d.args.slice(1)) if (!/^[12]$/.test(l)) throw badValue(d, l);
    return fullPath(s, d.args[0]!);
  }),
  // tsgi-proxy always holds a request body in one buffer: what this asks for is already the case.
  tuning('client_body_in_single_buffer', HSL, 'flag'),
  locOnce('client_body_in_file_only', HSL, 1, 'clientBodyInFileOnly', (d) => {
    const v = d.args[0]!;
    if (v !== 'on' && v !== 'off' && v !== 'clean') throw badValue(d, v);
    return v;
  }),
  tuning('output_buffers', HSL, 2),
  tuning('postpone_output', HSL, 1),
  tuning('reset_timedout_connection', HSL, 'flag'),
  tuning('lingering_close', HSL, 1),
  tuning('lingering_time', HSL, 1),
  tuning('lingering_timeout', HSL, 1),
  locOnce('open_file_cache', HSL, [1, 2], 'openFileCacheOn', (d) => {
    if (d.args[0] === 'off' && d.args.length === 1) return false;
    if (!/^max=\d+$/.test(d.args[0]!) || (d.args[1] !== undefined && !/^inactive=/.test(d.args[1]))) throw badValue(d, d.args.join(' '));
    return true;
  }),
  locOnce('open_file_cache_valid', HSL, 1, 'openFileCacheValidMs', (d) => timeArg(d)),
  tuning('open_file_cache_min_uses', HSL, 1),
  tuning('open_file_cache_errors', HSL, 'flag'),
  tuning('msie_padding', HSL, 'flag'),
  srvLevel('merge_slashes', 'mergeSlashes', parseFlag, 'flag'),
  srvLevel('client_header_timeout', 'clientHeaderTimeoutMs', (d) => timeArg(d), 1),
  srvLevel('ignore_invalid_headers', 'ignoreInvalidHeaders', parseFlag, 'flag'),
  srvLevel('underscores_in_headers', 'underscoresInHeaders', parseFlag, 'flag'),
  {
    // Each line (the request line, a header line) must fit in one buffer; all of them in the buffers.
    name: 'large_client_header_buffers', ctx: HTTP | SRV, args: 2,
    set(s, d) {
      const target = s.srv ?? s.http!;
      if (target.largeHeaderBytes !== undefined) throw duplicate(d);
      const n = Number(d.args[0]);
      if (!Number.isInteger(n) || n <= 0) throw badValue(d, d.args[0]!);
      const size = sizeArg(d, 1);
      target.largeHeaderLine = size;
      target.largeHeaderBytes = n * size;
    },
  },
];

export const coreSpecs: Spec[] = [includeSpec, ...mainSpecs, ...serverSpecs, locationSpec(), ...locSpecs];
