/**
 * Upstream directives: the `upstream {}` block and its `server` lines and balancers, and the two modules
 * that pass requests to backends, uwsgi_* and proxy_*, which share one set of settings per module.
 */
import { ProxyConfError } from '../errors.js';
import type { NextUpstreamCond, PassConf, ResolverConf, UpstreamConf, UpstreamServerConf, UpstreamSettings } from '../model.js';
import type { ConfNode } from '../parse.js';
import type { LoadEnv, Scope } from '../scope.js';
import { isAbsolute, resolve as resolvePath } from 'node:path';
import { HSL, HTTP, LIF, LOC, MORE, UPS, badValue, duplicate, parseFlag, parseTimeMs, pos, sizeArg, timeArg, tuning, type DirectiveSpec } from '../table.js';
import { compileTemplate } from '../../vars.js';

type Spec = DirectiveSpec<Scope>;

export function newUpstream(name: string, d: ConfNode, implicit: boolean): UpstreamConf {
  return {
    name, servers: [], balance: { kind: 'round_robin' }, keepalive: undefined, keepaliveTimeoutMs: 60000, keepaliveRequests: 1000, keepaliveTimeMs: 3600000,
    implicit, pos: pos(d),
  };
}

/** Parses "unix:/path", "host:port", "[v6]:port" or "host" (with `defaultPort`) into an upstream server. */
export function parseServerAddress(s: Scope, d: ConfNode, addr: string, defaultPort: number | undefined): UpstreamServerConf {
  const srv: UpstreamServerConf = { name: addr, addrs: [], weight: 1, maxFails: 1, failTimeoutMs: 10000, backup: false, down: false, maxConns: 0, pos: pos(d) };
  if (addr.startsWith('unix:')) {
    const path = addr.slice(5);
    if (!path) throw new ProxyConfError('BAD_VALUE', `no path in the "${addr}"`, pos(d));
    srv.addrs.push({ path });
    return srv;
  }
  let host: string;
  let port: number | undefined;
  let m: RegExpExecArray | null;
  if ((m = /^\[([0-9a-fA-F:.]+)\](?::(\d+))?$/.exec(addr))) {
    host = m[1]!;
    port = m[2] ? Number(m[2]) : undefined;
  } else if ((m = /^([^:/]+)(?::(\d+))?$/.exec(addr))) {
    host = m[1]!;
    port = m[2] ? Number(m[2]) : undefined;
  } else throw new ProxyConfError('BAD_VALUE', `invalid host in upstream "${addr}"`, pos(d));
  port ??= defaultPort;
  if (port === undefined) throw new ProxyConfError('BAD_VALUE', `no port in upstream "${addr}"`, pos(d));
  if (port <= 0 || port > 65535) throw new ProxyConfError('BAD_VALUE', `invalid port in upstream "${addr}"`, pos(d));
  if (/^\d+\.\d+\.\d+\.\d+$/.test(host) || host.includes(':')) srv.addrs.push({ host, port });
  else s.env.pendingResolve.push({ server: srv, host, port, pos: pos(d) });
  return srv;
}

const upstreamBlock: Spec[] = [
  {
    name: 'upstream', ctx: HTTP, args: 1, block: true,
    set(s, d) {
      const name = d.args[0]!;
      if (s.http!.upstreams.has(name)) throw new ProxyConfError('DUPLICATE', `duplicate upstream "${name}"`, pos(d));
      const ups = newUpstream(name, d, false);
      s.http!.upstreams.set(name, ups);
      s.walk({ ...s, ctx: UPS, ups }, d.block!, UPS);
      if (ups.servers.length === 0) throw new ProxyConfError('BAD_VALUE', `no servers are inside upstream`, pos(d));
    },
  },
  {
    name: 'server', ctx: UPS, args: [1, MORE],
    set(s, d) {
      const srv = parseServerAddress(s, d, d.args[0]!, 80);
      for (const p of d.args.slice(1)) {
        const eq = p.indexOf('=');
        const key = eq >= 0 ? p.slice(0, eq) : p;
        const val = eq >= 0 ? p.slice(eq + 1) : '';
        const num = () => {
          const n = Number(val);
          if (!/^\d+$/.test(val)) throw new ProxyConfError('BAD_VALUE', `invalid parameter "${p}"`, pos(d));
          return n;
        };
        if (key === 'weight') {
          srv.weight = num();
          if (srv.weight <= 0) throw new ProxyConfError('BAD_VALUE', `invalid parameter "${p}"`, pos(d));
        } else if (key === 'max_fails') srv.maxFails = num();
        else if (key === 'fail_timeout') srv.failTimeoutMs = timeArg({ ...d, args: [val] });
        else if (key === 'max_conns') srv.maxConns = num();
        else if (p === 'backup') srv.backup = true;
        else if (p === 'down') srv.down = true;
        else if (key === 'resolve' || key === 'service' || key === 'slow_start' || key === 'route' || key === 'drain') {
          throw new ProxyConfError('NOT_SUPPORTED', `"${key}" in upstream "server" is not supported by tsgi-proxy`, pos(d));
        } else throw new ProxyConfError('BAD_VALUE', `invalid parameter "${p}"`, pos(d));
      }
      s.ups!.servers.push(srv);
    },
  },
  {
    name: 'least_conn', ctx: UPS, args: 0,
    set(s) {
      s.ups!.balance = { kind: 'least_conn' };
    },
  },
  {
    name: 'ip_hash', ctx: UPS, args: 0,
    set(s) {
      s.ups!.balance = { kind: 'ip_hash' };
    },
  },
  {
    name: 'hash', ctx: UPS, args: [1, 2],
    set(s, d) {
      if (d.args[1] !== undefined && d.args[1] !== 'consistent') throw new ProxyConfError('BAD_VALUE', `invalid parameter "${d.args[1]}"`, pos(d));
      s.ups!.balance = { kind: 'hash', key: compileTemplate(d.args[0]!, s.reg, pos(d)), consistent: d.args[1] === 'consistent' };
    },
  },
  {
    name: 'keepalive', ctx: UPS, args: 1,
    set(s, d) {
      const n = Number(d.args[0]);
      if (!/^\d+$/.test(d.args[0]!) || n <= 0) throw badValue(d, d.args[0]!);
      if (s.ups!.keepalive !== undefined) throw duplicate(d);
      s.ups!.keepalive = n;
    },
  },
  { name: 'keepalive_timeout', ctx: UPS, args: 1, set: (s, d) => void (s.ups!.keepaliveTimeoutMs = timeArg(d)) },
  { name: 'keepalive_time', ctx: UPS, args: 1, set: (s, d) => void (s.ups!.keepaliveTimeMs = timeArg(d)) },
  {
    name: 'keepalive_requests', ctx: UPS, args: 1,
    set(s, d) {
      const n = Number(d.args[0]);
      if (!/^\d+$/.test(d.args[0]!)) throw badValue(d, d.args[0]!);
      s.ups!.keepaliveRequests = n;
    },
  },
  // Shared-memory zones hold balancer state across nginx workers; tsgi-proxy keeps it per worker.
  tuning('zone', UPS, [1, 2]),
];

const NEXT_CONDS = new Set(['error', 'timeout', 'invalid_header', 'http_500', 'http_502', 'http_503', 'http_504', 'http_403', 'http_404', 'http_429', 'non_idempotent', 'off']);

/** The directives one pass module (prefix "uwsgi" or "proxy") has, all stored in `loc[slot]`. */
function moduleSpecs(prefix: 'uwsgi' | 'proxy'): Spec[] {
  const slot = prefix === 'uwsgi' ? 'uwsgi' : 'proxy';
  const get = (s: Scope): UpstreamSettings => s.loc[slot];
  function once<K extends keyof UpstreamSettings>(suffix: string, args: Spec['args'], key: K, parse: (d: ConfNode, s: Scope) => UpstreamSettings[K], ctx = HSL): Spec {
    return {
      name: `${prefix}_${suffix}`, ctx, args,
      set(s, d) {
        const st = get(s);
        if (st[key] !== undefined) throw duplicate(d);
        st[key] = parse(d, s);
      },
    };
  }
  const time = (suffix: string, key: 'connectTimeoutMs' | 'readTimeoutMs' | 'sendTimeoutMs' | 'nextUpstreamTimeoutMs') => once(suffix, 1, key, (d) => timeArg(d));
  const flag = (suffix: string, key: 'buffering' | 'requestBuffering' | 'interceptErrors' | 'passRequestHeaders' | 'passRequestBody' | 'ignoreClientAbort' | 'tsgiKeepalive' | 'tsgiPipelining') =>
    once(suffix, 'flag', key, (d) => parseFlag(d));
  const specs: Spec[] = [
    {
      name: `${prefix}_pass`, ctx: LOC | LIF, args: 1,
      set(s, d) {
        if (s.loc.pass !== undefined) throw duplicate(d);
        s.loc.pass = parsePass(s, d, prefix === 'uwsgi' ? 'uwsgi' : 'http');
        if (s.location && s.location.kind === 'prefix' && s.location.name.endsWith('/')) s.location.autoRedirect = true;
        if (s.location && s.location.kind === 'noregex' && s.location.name.endsWith('/')) s.location.autoRedirect = true;
      },
    },
    {
      name: prefix === 'uwsgi' ? 'uwsgi_param' : 'proxy_set_header',
      ctx: HSL,
      args: prefix === 'uwsgi' ? [2, 3] : 2,
      set(s, d) {
        if (d.args[2] !== undefined && d.args[2] !== 'if_not_empty') throw new ProxyConfError('BAD_VALUE', `invalid parameter "${d.args[2]}"`, pos(d));
        (get(s).params ??= []).push({ key: d.args[0]!, value: compileTemplate(d.args[1]!, s.reg, pos(d)), ifNotEmpty: d.args[2] === 'if_not_empty' });
      },
    },
    time('connect_timeout', 'connectTimeoutMs'),
    time('read_timeout', 'readTimeoutMs'),
    time('send_timeout', 'sendTimeoutMs'),
    time('next_upstream_timeout', 'nextUpstreamTimeoutMs'),
    once('next_upstream', [1, MORE], 'nextUpstream', (d) => {
      const set = new Set<NextUpstreamCond>();
      for (const a of d.args) {
        if (!NEXT_CONDS.has(a)) throw new ProxyConfError('BAD_VALUE', `invalid value "${a}"`, pos(d));
        if (a === 'off') {
          if (d.args.length > 1) throw new ProxyConfError('BAD_VALUE', 'invalid value "off"', pos(d));
          return 'off';
        }
        set.add(a as NextUpstreamCond);
      }
      return set;
    }),
    once('next_upstream_tries', 1, 'nextUpstreamTries', (d) => {
      if (!/^\d+$/.test(d.args[0]!)) throw badValue(d, d.args[0]!);
      return Number(d.args[0]);
    }),
    flag('buffering', 'buffering'),
    flag('request_buffering', 'requestBuffering'),
    flag('intercept_errors', 'interceptErrors'),
    flag('pass_request_headers', 'passRequestHeaders'),
    flag('pass_request_body', 'passRequestBody'),
    flag('ignore_client_abort', 'ignoreClientAbort'),
    once('max_temp_file_size', 1, 'maxBufferedBytes', (d) => sizeArg(d)),
    {
      name: `${prefix}_hide_header`, ctx: HSL, args: 1,
      set: (s, d) => void (get(s).hideHeaders ??= new Set()).add(d.args[0]!.toLowerCase()),
    },
    {
      name: `${prefix}_pass_header`, ctx: HSL, args: 1,
      set: (s, d) => void (get(s).passHeaders ??= new Set()).add(d.args[0]!.toLowerCase()),
    },
    tuning(`${prefix}_buffers`, HSL, 2),
    tuning(`${prefix}_buffer_size`, HSL, 1),
    tuning(`${prefix}_busy_buffers_size`, HSL, 1),
    tuning(`${prefix}_temp_file_write_size`, HSL, 1),
    tuning(`${prefix}_temp_path`, HSL, [1, 4]),
    tuning(`${prefix}_socket_keepalive`, HSL, 'flag'),
    // TLS to the backend (https://, suwsgi://): SNI, verification, client certificate, protocols.
    once('ssl_server_name', 'flag', 'sslServerName', (d) => parseFlag(d)),
    once('ssl_name', 1, 'sslName', (d, s) => compileTemplate(d.args[0]!, s.reg, pos(d))),
    once('ssl_verify', 'flag', 'sslVerify', (d) => parseFlag(d)),
    once('ssl_verify_depth', 1, 'sslVerifyDepth', (d) => {
      if (!/^\d+$/.test(d.args[0]!)) throw badValue(d, d.args[0]!);
      return Number(d.args[0]);
    }),
    once('ssl_trusted_certificate', 1, 'sslTrusted', (d, s) => pemFile(s, d, 'CERTIFICATE').buf),
    {
      name: `${prefix}_ssl_certificate`, ctx: HSL, args: 1,
      set(s, d) {
        const st = get(s);
        if (st.sslCertificate !== undefined) throw duplicate(d);
        const f = pemFile(s, d, 'CERTIFICATE');
        st.sslCertificate = f.buf;
        st.sslCertificatePath = f.path;
      },
    },
    once('ssl_certificate_key', 1, 'sslCertificateKey', (d, s) => pemFile(s, d, 'PRIVATE KEY').buf),
    once('ssl_protocols', [1, MORE], 'sslProtocols', (d) => {
      for (const a of d.args) if (!TLS_PROTOCOLS.has(a)) throw new ProxyConfError('BAD_VALUE', `invalid value "${a}"`, pos(d));
      return d.args;
    }),
    once('ssl_ciphers', 1, 'sslCiphers', (d) => d.args[0]!),
    once('ssl_session_reuse', 'flag', 'sslSessionReuse', (d) => parseFlag(d)),
  ];
  if (prefix === 'uwsgi') {
    const mod = (suffix: 'modifier1' | 'modifier2') =>
      once(suffix, 1, suffix, (d) => {
        const n = Number(d.args[0]);
        if (!/^\d+$/.test(d.args[0]!) || n > 255) throw badValue(d, d.args[0]!);
        return n;
      });
    specs.push(mod('modifier1'), mod('modifier2'));
    // tsgi extension: whether to offer the persistent link to tsgi backends (docs/protocol-keepalive.md).
    specs.push(flag('tsgi_keepalive', 'tsgiKeepalive')); // uwsgi_tsgi_keepalive
    // tsgi extension: whether requests of one turn may share a link to a backend that pipelines.
    specs.push(flag('tsgi_pipelining', 'tsgiPipelining')); // uwsgi_tsgi_pipelining
  } else {
    specs.push(
      // proxy_method: the method sent to the backend instead of the client's (a template).
      once('method', 1, 'method', (d, s) => compileTemplate(d.args[0]!, s.reg, pos(d))),
      once('http_version', 1, 'httpVersion', (d) => {
        const v = d.args[0]!;
        if (v !== '1.0' && v !== '1.1') throw badValue(d, v);
        return v;
      }),
      {
        name: 'proxy_redirect', ctx: HSL, args: [1, 2],
        set(s, d) {
          const st = get(s);
          if (d.args.length === 1) {
            if (d.args[0] !== 'default' && d.args[0] !== 'off') throw badValue(d, d.args[0]!);
            st.redirect = d.args[0];
            return;
          }
          if (!Array.isArray(st.redirect)) st.redirect = [];
          st.redirect.push([d.args[0]!, compileTemplate(d.args[1]!, s.reg, pos(d))]);
        },
      },
    );
  }
  return specs;
}

function parsePass(s: Scope, d: ConfNode, protocol: 'uwsgi' | 'http'): PassConf {
  let target = d.args[0]!;
  let scheme = protocol === 'uwsgi' ? 'uwsgi' : 'http';
  const p = pos(d);
  const m = /^([a-z]+):\/\//i.exec(target);
  if (m) {
    scheme = m[1]!.toLowerCase();
    const ok = protocol === 'uwsgi' ? scheme === 'uwsgi' || scheme === 'suwsgi' : scheme === 'http' || scheme === 'https';
    if (!ok) throw new ProxyConfError('BAD_VALUE', `invalid URL prefix in "${target}"`, p);
    target = target.slice(m[0].length);
  } else if (protocol === 'http' && !target.includes('$')) throw new ProxyConfError('BAD_VALUE', `invalid URL prefix in "${target}"`, p);
  const secure = scheme === 'https' || scheme === 'suwsgi';
  const pass: PassConf = { protocol, scheme, upstream: undefined, dynamic: undefined, uri: undefined, pos: p, secure };
  if (secure) s.env.tlsPasses.push({ pass, loc: s.loc });
  if (target.includes('$')) {
    pass.dynamic = compileTemplate(target, s.reg, p);
    return pass;
  }
  // proxy_pass http://host:port/uri — the URI part replaces the matched location prefix.
  let hostPart = target;
  if (protocol === 'http' && !target.startsWith('unix:')) {
    const slash = target.indexOf('/');
    if (slash >= 0) {
      hostPart = target.slice(0, slash);
      pass.uri = compileTemplate(target.slice(slash), s.reg, p);
    }
  } else if (protocol === 'http' && target.startsWith('unix:')) {
    // unix:/path/to.sock:/uri
    const colon = target.indexOf(':', 5);
    if (colon >= 0) {
      hostPart = target.slice(0, colon);
      pass.uri = compileTemplate(target.slice(colon + 1), s.reg, p);
    }
  }
  // Resolved after the walk (finalize): an upstream block may be defined further down the file.
  s.env.pendingPass.push({ pass, hostPart, node: d, scope: s });
  return pass;
}

/** After the walk: bind each static pass target to its upstream block, or to an implicit one-server upstream. */
export function bindPassTargets(s0: Scope): void {
  for (const { pass, hostPart, node, scope } of s0.env.pendingPass) {
    const named = scope.http!.upstreams.get(hostPart);
    if (named) {
      pass.upstream = named;
      continue;
    }
    // By scheme: plain and TLS connections to one address are not each other's keepalive links.
    const key = `${pass.scheme}|${hostPart}`;
    let ups = scope.http!.implicitUpstreams.get(key);
    if (!ups) {
      ups = newUpstream(hostPart, node, true);
      ups.servers.push(parseServerAddress(scope, node, hostPart, pass.scheme === 'https' ? 443 : pass.protocol === 'http' ? 80 : undefined));
      scope.http!.implicitUpstreams.set(key, ups);
    }
    pass.upstream = ups;
  }
}

const TLS_PROTOCOLS = new Set(['SSLv2', 'SSLv3', 'TLSv1', 'TLSv1.1', 'TLSv1.2', 'TLSv1.3']);

/** A PEM file of a *_ssl_* directive, read at start (variables in the name are not supported). */
function pemFile(s: Scope, d: ConfNode, kind: 'CERTIFICATE' | 'PRIVATE KEY'): { buf: Buffer; path: string } {
  const file = d.args[0]!;
  if (file.includes('$')) throw new ProxyConfError('NOT_SUPPORTED', `variables in "${d.name}" directive are not supported by tsgi-proxy`, pos(d));
  const path = isAbsolute(file) ? file : resolvePath(s.env.confPrefix, file);
  const text = s.env.fs.read(path);
  const what = kind === 'CERTIFICATE' ? 'certificate' : 'certificate key';
  if (text instanceof Error) throw new ProxyConfError('FILE', `cannot load ${what} "${path}": ${text.message}`, pos(d));
  if (!(kind === 'CERTIFICATE' ? /-----BEGIN CERTIFICATE-----/ : /-----BEGIN [A-Z ]*PRIVATE KEY-----/).test(text)) {
    throw new ProxyConfError('FILE', `cannot load ${what} "${path}": no PEM ${kind === 'CERTIFICATE' ? 'certificate' : 'private key'} in it`, pos(d));
  }
  return { buf: Buffer.from(text, 'latin1'), path };
}

/** After inheritance: what nginx checks for each TLS pass (a trusted certificate to verify with, a key for a certificate). */
export function checkUpstreamTls(env: LoadEnv): void {
  for (const { pass, loc } of env.tlsPasses) {
    const prefix = pass.protocol === 'uwsgi' ? 'uwsgi' : 'proxy';
    const st = pass.protocol === 'uwsgi' ? loc.uwsgi : loc.proxy;
    if (st.sslVerify && st.sslTrusted === undefined) throw new ProxyConfError('BAD_VALUE', `no ${prefix}_ssl_trusted_certificate for ${prefix}_ssl_verify`, pass.pos);
    if (st.sslCertificate !== undefined && st.sslCertificateKey === undefined) {
      throw new ProxyConfError('BAD_VALUE', `no "${prefix}_ssl_certificate_key" is defined for certificate "${st.sslCertificatePath!}"`, pass.pos);
    }
  }
}

/**
 * resolver and resolver_timeout: the DNS servers a pass target with variables is resolved through when its
 * value names a host (upstream/resolve.ts). Addresses are IP literals, with an optional port (53).
 */
const resolverSpecs: Spec[] = [
  {
    name: 'resolver', ctx: HSL, args: [1, MORE],
    set(s, d) {
      if (s.loc.resolver !== undefined) throw duplicate(d);
      const rc: ResolverConf = { servers: [], validMs: undefined, ipv4: true, ipv6: true };
      for (const a of d.args) {
        const eq = a.indexOf('=');
        const key = eq > 0 ? a.slice(0, eq) : '';
        const val = a.slice(eq + 1);
        if (key === 'valid') {
          const ms = parseTimeMs(val);
          if (Number.isNaN(ms)) throw new ProxyConfError('BAD_VALUE', `invalid parameter: ${a}`, pos(d));
          rc.validMs = ms;
        } else if (key === 'ipv4' || key === 'ipv6') {
          if (val !== 'on' && val !== 'off') throw new ProxyConfError('BAD_VALUE', `invalid parameter: ${a}`, pos(d));
          rc[key] = val === 'on';
        } else if (key === 'status_zone') {
          throw new ProxyConfError('NOT_SUPPORTED', `"status_zone" in "resolver" is not supported by tsgi-proxy (it has no per-zone resolver statistics)`, pos(d));
        } else rc.servers.push(resolverAddress(d, a));
      }
      if (!rc.ipv4 && !rc.ipv6) throw new ProxyConfError('BAD_VALUE', '"ipv4" and "ipv6" cannot both be "off"', pos(d));
      if (rc.servers.length === 0) throw new ProxyConfError('BAD_VALUE', 'no name servers defined', pos(d));
      s.loc.resolver = rc;
    },
  },
  {
    name: 'resolver_timeout', ctx: HSL, args: 1,
    set(s, d) {
      if (s.loc.resolverTimeoutMs !== undefined) throw duplicate(d);
      s.loc.resolverTimeoutMs = timeArg(d);
    },
  },
];

/** One resolver address ("10.0.0.1", "10.0.0.1:5353", "[::1]", "[::1]:53") as node:dns wants it. */
function resolverAddress(d: ConfNode, a: string): string {
  const m = /^(?:(\d+\.\d+\.\d+\.\d+)|\[([0-9a-fA-F:.]+)\])(?::(\d+))?$/.exec(a);
  if (!m) throw new ProxyConfError('BAD_VALUE', `host not found in resolver "${a}" (tsgi-proxy takes IP addresses here)`, pos(d));
  const port = m[3] !== undefined ? Number(m[3]) : 53;
  if (port <= 0 || port > 65535) throw new ProxyConfError('BAD_VALUE', `invalid port in resolver "${a}"`, pos(d));
  return m[1] !== undefined ? `${m[1]}:${port}` : `[${m[2]}]:${port}`;
}

export const upstreamSpecs: Spec[] = [...upstreamBlock, ...moduleSpecs('uwsgi'), ...moduleSpecs('proxy'), ...resolverSpecs];
