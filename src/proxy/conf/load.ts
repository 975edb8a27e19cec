/**
 * Loading a configuration: read the main file, walk it through the directive tables (includes are read as
 * they are met), then finalize — bind pass targets to upstreams, resolve upstream host names, check
 * variables, let every level inherit what it left unset, and group servers by listen address.
 * Nothing is bound here: `-t` runs exactly this and stops.
 */
import { lookup } from 'node:dns/promises';
import { dirname, isAbsolute, resolve } from 'node:path';
import { ProxyConfError, type ConfPos } from './errors.js';
import { LocConf, UpstreamSettings, type HttpConf, type LocationConf, type MainConf, type ScriptOp } from './model.js';
import { parseConf } from './parse.js';
import type { ConfFs, LoadEnv, Scope } from './scope.js';
import { DirectiveTable, MAIN } from './table.js';
import { coreSpecs } from './modules/core.js';
import { rewriteSpecs } from './modules/rewrite.js';
import { staticSpecs } from './modules/static.js';
import { logSpecs, combinedFormat } from './modules/log.js';
import { bindPassTargets, checkUpstreamTls, upstreamSpecs } from './modules/upstream.js';
import { bindCacheZones, cacheSpecs } from './modules/cache.js';
import { sslSpecs } from './modules/ssl.js';
import { http2Specs } from './modules/http2.js';
import { staplingSetup } from '../ocsp.js';
import { unsupportedSpecs } from './modules/unsupported.js';
import { gzipSpecs } from './modules/gzip.js';
import { charsetSpecs } from './modules/charset.js';
import { accessSpecs } from './modules/access.js';
import { mapSpecs } from './modules/map.js';
import { limitSpecs } from './modules/limits.js';
import { statusSpecs } from './modules/status.js';
import { geoSpecs } from './modules/geo.js';
import { splitSpecs } from './modules/split.js';
import { checkVariables, compileTemplate, newRegistry } from '../vars.js';
import { buildBindings, type Binding } from '../listen.js';

export const TABLE = new DirectiveTable<Scope>().add(...coreSpecs, ...rewriteSpecs, ...staticSpecs, ...logSpecs, ...upstreamSpecs, ...cacheSpecs, ...sslSpecs, ...http2Specs, ...gzipSpecs, ...charsetSpecs, ...accessSpecs, ...limitSpecs, ...mapSpecs, ...statusSpecs, ...geoSpecs, ...splitSpecs, ...unsupportedSpecs);

export interface LoadOptions {
  confFile: string;
  prefix: string;
  /** The -g argument: directives for the main context. */
  globals?: string;
  fs: ConfFs;
}

export interface LoadedConf {
  main: MainConf;
  http: HttpConf | undefined;
  bindings: Binding[];
  /** The main file and every included file, in reading order (for -T). */
  files: string[];
  warnings: string[];
  confFile: string;
  prefix: string;
  /** Connections are counted for stub_status / $connections_* (stats.ts). */
  connStats: boolean;
}

const DEFAULT_TYPES = new Map([['html', 'text/html'], ['gif', 'image/gif'], ['jpg', 'image/jpeg']]);

/** nginx's built-in values for location-level settings (what an unset directive means). */
function httpDefaults(prefix: string): LocConf {
  const reg = newRegistry();
  const p: ConfPos = { file: '<built-in>', line: 0 };
  const d = new LocConf();
  d.root = { path: compileTemplate(resolve(prefix, 'html'), reg, p), alias: false, aliasOf: '', pos: p };
  d.index = [compileTemplate('index.html', reg, p)];
  d.autoindex = false;
  d.autoindexExactSize = true;
  d.autoindexLocaltime = false;
  d.autoindexFormat = 'html';
  d.types = DEFAULT_TYPES;
  d.defaultType = 'text/plain';
  d.etag = true;
  d.ifModifiedSince = 'exact';
  d.clientMaxBodySize = 1024 * 1024;
  // nginx's default: two memory pages (16k on x86-64).
  d.clientBodyBufferSize = 16 * 1024;
  d.clientBodyTimeoutMs = 60000;
  d.keepaliveTimeoutMs = 75000;
  d.keepaliveHeaderS = 0;
  d.keepaliveRequests = 1000;
  d.keepaliveTimeMs = 3600000;
  d.keepaliveDisable = { msie6: true, safari: false };
  d.sendTimeoutMs = 60000;
  d.serverTokens = true;
  d.errorPages = [];
  d.recursiveErrorPages = false;
  d.addHeaders = [];
  d.absoluteRedirect = true;
  d.serverNameInRedirect = false;
  d.portInRedirect = true;
  d.logNotFound = true;
  d.accessLogs = [{ path: compileTemplate(resolve(prefix, 'logs/access.log'), reg, p), format: combinedFormat(), condition: undefined }];
  d.tcpNodelay = true;
  d.chunkedTransferEncoding = true;
  d.internal = false;
  d.expires = { mode: 'off' };
  d.openFileCacheOn = false;
  d.charset = '';
  d.sourceCharset = '';
  d.overrideCharset = false;
  d.charsetTypes = new Set(['text/html', 'text/xml', 'text/plain', 'text/vnd.wap.wml', 'application/javascript', 'application/rss+xml']);
  d.limitReqStatus = 503;
  d.limitReqLogLevel = 'error';
  d.limitReqDryRun = false;
  d.limitConnStatus = 503;
  d.limitConnLogLevel = 'error';
  d.limitConnDryRun = false;
  d.clientBodyInFileOnly = 'off';
  d.clientBodyTempPath = resolve(prefix, 'client_body_temp');
  d.limitRate = 0;
  d.limitRateAfter = 0;
  d.gzip = false;
  d.gzipTypes = new Set(['text/html']);
  d.gzipMinLength = 20;
  d.gzipCompLevel = 1;
  d.gzipVary = false;
  d.gzipHttpVersion = '1.1';
  d.gzipProxied = 'off';
  d.gzipDisable = [];
  d.openFileCacheValidMs = 60000;
  d.resolverTimeoutMs = 30000;
  for (const u of [d.uwsgi, d.proxy]) {
    u.params = [];
    u.connectTimeoutMs = 60000;
    u.readTimeoutMs = 60000;
    u.sendTimeoutMs = 60000;
    u.nextUpstream = new Set(['error', 'timeout']);
    u.nextUpstreamTries = 0;
    u.nextUpstreamTimeoutMs = 0;
    u.buffering = true;
    u.requestBuffering = true;
    u.maxBufferedBytes = 1024 * 1024 * 1024;
    u.interceptErrors = false;
    u.hideHeaders = new Set();
    u.passHeaders = new Set();
    u.passRequestHeaders = true;
    u.passRequestBody = true;
    u.modifier1 = 0;
    u.modifier2 = 0;
    u.httpVersion = '1.0';
    u.redirect = 'default';
    u.ignoreClientAbort = false;
    u.tsgiKeepalive = true;
    u.tsgiPipelining = true;
    // Response cache: off; when on, GET and HEAD, nginx's defaults (the key's default is made per request).
    u.cache = null;
    u.cacheValid = [];
    u.cacheMethods = new Set(['GET', 'HEAD']);
    u.cacheBypass = [];
    u.noCache = [];
    u.cacheMinUses = 1;
    u.cacheUseStale = new Set();
    u.cacheConvertHead = true;
    u.ignoreHeaders = new Set();
    // TLS to backends: nginx 1.22's defaults (no SNI, no verification, TLS 1.3 not offered).
    u.sslServerName = false;
    u.sslVerify = false;
    u.sslVerifyDepth = 1;
    u.sslProtocols = ['TLSv1', 'TLSv1.1', 'TLSv1.2'];
    u.sslCiphers = 'DEFAULT';
    u.sslSessionReuse = true;
  }
  d.ssl = { certificate: undefined, certificateKey: undefined, certificatePath: undefined, protocols: ['TLSv1.2', 'TLSv1.3'], ciphers: undefined, preferServerCiphers: false, verifyClient: 'off', clientCertificate: undefined, trustedCertificate: undefined, verifyDepth: 1, crl: undefined, verifyClientPos: undefined };
  return d;
}

function inheritFields<T extends object>(child: T, parent: T): void {
  const c = child as Record<string, unknown>;
  const p = parent as Record<string, unknown>;
  for (const k of Object.keys(p)) if (c[k] === undefined) c[k] = p[k];
}

/**
 * Fills what `child` left unset from `parent`. Lists (add_header, uwsgi_param, error_page) are inherited
 * whole and only when the child level has none of its own, as in nginx. The pass target is never inherited.
 */
export function inherit(child: LocConf, parent: LocConf): void {
  const pass = child.pass;
  const u = child.uwsgi;
  const px = child.proxy;
  const ssl = child.ssl;
  inheritFields(child, parent);
  child.pass = pass;
  child.internal = child.internal ?? false;
  inheritFields(u, parent.uwsgi);
  inheritFields(px, parent.proxy);
  inheritFields(ssl, parent.ssl);
  child.uwsgi = u;
  child.proxy = px;
  child.ssl = ssl;
  // limit_except's settings start from those of the location it is written in.
  const le = child.limitExcept;
  if (le !== undefined && le.owner === child) {
    inherit(le.conf, child);
    if (le.conf.pass === undefined) le.conf.pass = child.pass;
  }
}

function inheritScript(script: ScriptOp[], conf: LocConf): void {
  for (const op of script) {
    if (op.op === 'if' && op.conf) {
      inherit(op.conf, conf);
      // An `if` without its own pass directive keeps the enclosing location's.
      if (op.conf.pass === undefined) op.conf.pass = conf.pass;
      inheritScript(op.script, op.conf);
    }
  }
}

function inheritLocations(list: LocationConf[], parent: LocConf): void {
  for (const l of list) {
    inherit(l.conf, parent);
    l.conf.internal = l.kind === 'named' ? true : l.conf.internal;
    inheritScript(l.script, l.conf);
    inheritLocations(l.children, l.conf);
  }
}

function emptyMain(): MainConf {
  return {
    daemon: undefined, masterProcess: undefined, workerProcesses: undefined, workerConnections: undefined, workerShutdownTimeoutMs: undefined,
    pid: undefined, user: undefined, errorLogs: [], env: [], http: undefined, events: false,
  };
}

export async function loadConf(opts: LoadOptions): Promise<LoadedConf> {
  const confFile = isAbsolute(opts.confFile) ? opts.confFile : resolve(opts.prefix, opts.confFile);
  const warnings: string[] = [];
  const env: LoadEnv = {
    prefix: opts.prefix,
    confPrefix: dirname(confFile),
    fs: opts.fs,
    warn: (m, p) => warnings.push(`${m} in ${p.file}:${p.line}`),
    filesRead: [confFile],
    pendingResolve: [],
    includeDepth: 0,
    pendingPass: [],
    tlsPasses: [],
  };
  const text = opts.fs.read(confFile);
  if (text instanceof Error) throw new ProxyConfError('FILE', `open() "${confFile}" failed (${text.message})`);
  const main = emptyMain();
  const reg = newRegistry();
  const scope: Scope = {
    ctx: MAIN, main, http: undefined, srv: undefined, loc: new LocConf(), location: undefined, script: [], ups: undefined, types: undefined,
    reg, env, table: TABLE,
    walk(s, list, ctx) {
      TABLE.walk(s, list, ctx);
    },
  };
  TABLE.walk(scope, parseConf(text, confFile), MAIN);
  if (opts.globals) TABLE.walk(scope, parseConf(opts.globals, 'command line'), MAIN);

  const http = main.http;
  let bindings: Binding[] = [];
  if (http) {
    bindPassTargets({ ...scope, http });
    await resolveHosts(env);
    checkVariables(reg);
    bindLimitZones(http);
    const top = httpDefaults(opts.prefix);
    inherit(http.loc, top);
    for (const srv of http.servers) {
      inherit(srv.loc, http.loc);
      srv.mergeSlashes ??= http.mergeSlashes ?? true;
      srv.clientHeaderTimeoutMs ??= http.clientHeaderTimeoutMs ?? 60000;
      srv.http2On ??= http.http2On ?? false;
      srv.http2MaxConcurrentStreams ??= http.http2MaxConcurrentStreams ?? 128;
      srv.largeHeaderBytes ??= http.largeHeaderBytes ?? 4 * 8192;
      srv.largeHeaderLine ??= http.largeHeaderLine ?? 8192;
      srv.ignoreInvalidHeaders ??= http.ignoreInvalidHeaders ?? true;
      srv.underscoresInHeaders ??= http.underscoresInHeaders ?? false;
      inheritScript(srv.script, srv.loc);
      inheritLocations(srv.locations, srv.loc);
      inheritLocations([...srv.named.values()], srv.loc);
      checkCharsets([srv.loc], [...srv.locations, ...srv.named.values()]);
    }
    bindCacheZones(http, env.warn);
    bindings = buildBindings(http.servers, env.warn);
    for (const srv of http.servers) {
      const ssl = srv.loc.ssl;
      if (ssl.stapling === true && ssl.staplingFile === undefined && ssl.certificate !== undefined && srv.listens.some((l) => l.ssl)) {
        const found = staplingSetup(ssl.certificate, ssl.trustedCertificate, ssl.staplingResponder, ssl.certificatePath ?? '');
        if (found.problem !== undefined) env.warn(found.problem, srv.pos);
        else {
          ssl.staplingIssuer = found.issuer;
          ssl.staplingUrl = found.url;
        }
      }
      for (const l of srv.listens) {
        if (l.ssl && (!srv.loc.ssl.certificate || !srv.loc.ssl.certificateKey)) {
          throw new ProxyConfError('BAD_VALUE', `no "ssl_certificate" is defined for the "listen ... ssl" directive`, l.pos);
        }
        const ssl = srv.loc.ssl;
        if (l.ssl && (ssl.verifyClient === 'on' || ssl.verifyClient === 'optional') && !ssl.clientCertificate) {
          throw new ProxyConfError('BAD_VALUE', 'no ssl_client_certificate for ssl_verify_client', ssl.verifyClientPos ?? l.pos);
        }
      }
    }
    checkUpstreamTls(env);
    for (const ups of [...http.upstreams.values(), ...http.implicitUpstreams.values()]) {
      if (ups.balance.kind === 'ip_hash' && ups.servers.some((s) => s.backup)) {
        throw new ProxyConfError('BAD_VALUE', 'balancing method does not support parameter "backup"', ups.pos);
      }
    }
  } else checkVariables(reg);
  return { main, http, bindings, files: env.filesRead, warnings, confFile, prefix: opts.prefix, connStats: reg.connStats };
}

/** limit_req / limit_conn name zones that may be declared further down: bound once the http block is read. */
function bindLimitZones(http: HttpConf): void {
  const bindAll = (c: LocConf): void => {
    for (const l of c.limitReq ?? []) {
      l.zone = http.limitReqZones.get(l.zoneName);
      if (!l.zone) throw new ProxyConfError('BAD_VALUE', `zero size shared memory zone "${l.zoneName}"`, l.pos);
    }
    for (const l of c.limitConn ?? []) {
      l.zone = http.limitConnZones.get(l.zoneName);
      if (!l.zone) throw new ProxyConfError('BAD_VALUE', `zero size shared memory zone "${l.zoneName}"`, l.pos);
    }
  };
  const walkLocs = (list: LocationConf[]): void => {
    for (const l of list) {
      bindAll(l.conf);
      walkLocs(l.children);
    }
  };
  bindAll(http.loc);
  for (const srv of http.servers) {
    bindAll(srv.loc);
    walkLocs([...srv.locations, ...srv.named.values()]);
  }
}

/** As nginx at start: a charset and a different source_charset need a charset_map between them. */
function checkCharsets(confs: LocConf[], locations: LocationConf[]): void {
  const collect = (list: LocationConf[]): void => {
    for (const l of list) {
      confs.push(l.conf);
      collect(l.children);
    }
  };
  collect(locations);
  for (const c of confs) {
    const dst = c.charset;
    const src = c.sourceCharset;
    if (!dst || !src || dst.toLowerCase() === src.toLowerCase()) continue;
    if (!c.charsetMaps?.has(`${src.toLowerCase()}\0${dst.toLowerCase()}`)) {
      throw new ProxyConfError('BAD_VALUE', `no "charset_map" between the charsets "${src}" and "${dst}"`, c.charsetPos!);
    }
  }
}

async function resolveHosts(env: LoadEnv): Promise<void> {
  await Promise.all(
    env.pendingResolve.map(async (p) => {
      try {
        const addrs = await lookup(p.host, { all: true });
        // Prefer IPv4 first, as getaddrinfo does on most systems; keep every address as a peer.
        for (const a of addrs) p.server.addrs.push({ host: a.address, port: p.port });
      } catch {
        throw new ProxyConfError('HOST_NOT_FOUND', `host not found in upstream "${p.server.name}"`, p.pos);
      }
    }),
  );
}

export { UpstreamSettings };
