/**
 * The configuration model the directive handlers fill in and the server reads. Location-level settings live
 * in LocConf at three levels (http, server, location); after parsing, each level inherits what it left unset
 * from the level above (`inherit`), so the request path reads final values with no lookups up the chain.
 */
import type { BlockList } from 'node:net';
import type { ConfPos } from './errors.js';
import type { Template } from '../vars.js';

export interface ListenConf {
  /** '' for the wildcard address (listen 80), else the literal address; unix sockets use `unix`. */
  host: string;
  port: number;
  unix: string | undefined;
  defaultServer: boolean;
  ssl: boolean;
  /** `listen ... http2`: HTTP/2 on this socket (with ssl: h2 by ALPN beside HTTP/1.x; without: h2c only). */
  http2: boolean;
  backlog: number | undefined;
  pos: ConfPos;
}

export interface UpstreamServerConf {
  /** As written, for logs ("127.0.0.1:8081", "unix:/run/app.sock"). */
  name: string;
  /** Resolved addresses: one per A/AAAA record, or a unix path. */
  addrs: Array<{ host: string; port: number } | { path: string }>;
  weight: number;
  maxFails: number;
  failTimeoutMs: number;
  backup: boolean;
  down: boolean;
  maxConns: number;
  pos: ConfPos;
}

export type Balance = { kind: 'round_robin' } | { kind: 'least_conn' } | { kind: 'ip_hash' } | { kind: 'hash'; key: Template; consistent: boolean };

export interface UpstreamConf {
  name: string;
  servers: UpstreamServerConf[];
  balance: Balance;
  /** Idle connections kept per worker; undefined when `keepalive` was not given. */
  keepalive: number | undefined;
  keepaliveTimeoutMs: number;
  keepaliveRequests: number;
  /** keepalive_time: how long one connection is used for requests (nginx's default 1h). */
  keepaliveTimeMs: number;
  /** Made implicitly by a `uwsgi_pass host:port` rather than by an `upstream {}` block. */
  implicit: boolean;
  pos: ConfPos;
}

export type NextUpstreamCond = 'error' | 'timeout' | 'invalid_header' | 'http_500' | 'http_502' | 'http_503' | 'http_504' | 'http_403' | 'http_404' | 'http_429' | 'non_idempotent';

/** A `uwsgi_pass` / `proxy_pass` target: a named or implicit upstream, or a template resolved per request. */
export interface PassConf {
  protocol: 'uwsgi' | 'http';
  /** Scheme for proxy_pass (http/https); 'uwsgi' for uwsgi_pass. */
  scheme: string;
  upstream: UpstreamConf | undefined;
  dynamic: Template | undefined;
  /** proxy_pass with a URI part ("http://b/path/"): replaces the matched location prefix. */
  uri: Template | undefined;
  pos: ConfPos;
  /** https:// or suwsgi://: TLS to the backend (the *_ssl_* settings). */
  secure: boolean;
}

export interface Param {
  key: string;
  value: Template;
  ifNotEmpty: boolean;
}

/**
 * `expires`: off, epoch, max, a time after the access (`access`), after the response's Last-Modified
 * (`modified`), a time of day (`daily`, ms since midnight); or a template evaluated per request (`var`).
 */
export type Expires =
  | { mode: 'off' } | { mode: 'epoch' } | { mode: 'max' }
  | { mode: 'access'; ms: number } | { mode: 'modified'; ms: number } | { mode: 'daily'; ms: number }
  | { mode: 'var'; modified: boolean; value: Template };

/** limit_req_zone: per key, the excess (milli-requests) and when it was last counted. */
export interface LimitReqZone {
  name: string;
  key: Template;
  /** Milli-requests a second. */
  rate: number;
  /** How many keys the zone's size holds (nginx's states are about 64 bytes); the least recent go first. */
  maxStates: number;
  states: Map<string, { excess: number; last: number }>;
  pos: ConfPos;
}

export interface LimitReqRef {
  zoneName: string;
  zone: LimitReqZone | undefined;
  /** In milli-requests; delay is Infinity for nodelay. */
  burst: number;
  delay: number;
  pos: ConfPos;
}

/** limit_conn_zone: requests in progress per key. */
export interface LimitConnZone {
  name: string;
  key: Template;
  maxStates: number;
  counts: Map<string, number>;
  pos: ConfPos;
}

export interface LimitConnRef {
  zoneName: string;
  zone: LimitConnZone | undefined;
  max: number;
  pos: ConfPos;
}

/** allow/deny: `all`, `unix:`, or an address or CIDR block. */
export interface AccessRule {
  allow: boolean;
  all: boolean;
  unix: boolean;
  net: BlockList | undefined;
}

export interface AddHeader {
  name: string;
  value: Template;
  always: boolean;
  /** 'etag' or 'last-modified' (lower case): the header replaces the response's own; else undefined. */
  single: string | undefined;
}

export interface ErrorPage {
  codes: number[];
  /** `=` alone keeps the target's status; `=N` forces N; undefined keeps the original code. */
  overwrite: number | 'target' | undefined;
  uri: Template;
}

export type ScriptOp =
  | { op: 'return'; code: number; text: Template | undefined; pos: ConfPos }
  | { op: 'rewrite'; regex: RegExp; replacement: Template; flag: 'last' | 'break' | 'redirect' | 'permanent' | undefined; redirectByScheme: boolean; pos: ConfPos }
  | { op: 'set'; name: string; value: Template }
  | { op: 'break' }
  | { op: 'if'; test: IfTest; script: ScriptOp[]; conf: LocConf | undefined; location: LocationConf | undefined };

export type IfTest =
  | { kind: 'var'; value: Template; negate: boolean }
  | { kind: 'cmp'; value: Template; to: Template; negate: boolean }
  | { kind: 'regex'; value: Template; regex: RegExp; negate: boolean }
  | { kind: 'file'; test: 'f' | 'd' | 'e' | 'x'; value: Template; negate: boolean };

export interface LogFormat {
  name: string;
  template: Template;
  escape: 'default' | 'json' | 'none';
}

export interface AccessLogConf {
  path: Template;
  format: LogFormat;
  /** Only write when this template is non-empty and not "0". */
  condition: Template | undefined;
}

export interface SslConf {
  certificate: Buffer | undefined;
  certificateKey: Buffer | undefined;
  certificatePath: string | undefined;
  protocols: string[] | undefined;
  ciphers: string | undefined;
  preferServerCiphers: boolean | undefined;
  /** ssl_verify_client: ask for a client certificate and what a missing or bad one does. */
  verifyClient: 'off' | 'on' | 'optional' | 'optional_no_ca' | undefined;
  /** ssl_client_certificate (sent to clients as acceptable CAs) and ssl_trusted_certificate, PEM. */
  clientCertificate: Buffer | undefined;
  trustedCertificate: Buffer | undefined;
  verifyDepth: number | undefined;
  crl: Buffer | undefined;
  /** Where ssl_verify_client was written, for the "no ssl_client_certificate" error. */
  verifyClientPos: ConfPos | undefined;
  /** OCSP stapling: ssl_stapling, ssl_stapling_file (DER), ssl_stapling_responder, ssl_stapling_verify. */
  stapling?: boolean;
  staplingFile?: Buffer;
  staplingResponder?: string;
  staplingVerify?: boolean;
  /** Found when the configuration is loaded: the issuer's certificate (DER) and the responder's URL. */
  staplingIssuer?: Buffer;
  staplingUrl?: string;
}

/** Location-level settings (also set at http and server level). `undefined` means "inherit". */
export class LocConf {
  /** `aliasOf`: the prefix the alias replaces (the name of the location it was written in; '' for a regex
   * location, where the alias is the whole path). Inherited by nested locations with it. */
  root: { path: Template; alias: boolean; aliasOf: string; pos: ConfPos } | undefined;
  index: Template[] | undefined;
  tryFiles: { files: Template[]; last: string; lastTemplate: Template; pos: ConfPos } | undefined;
  autoindex: boolean | undefined;
  autoindexExactSize: boolean | undefined;
  autoindexLocaltime: boolean | undefined;
  autoindexFormat: 'html' | 'json' | 'jsonp' | 'xml' | undefined;
  types: Map<string, string> | undefined;
  defaultType: string | undefined;
  etag: boolean | undefined;
  ifModifiedSince: 'off' | 'exact' | 'before' | undefined;
  clientMaxBodySize: number | undefined;
  /** A body larger than this is one nginx buffers in an (unlinked) temporary file: not in $request_body. */
  clientBodyBufferSize: number | undefined;
  clientBodyTimeoutMs: number | undefined;
  keepaliveTimeoutMs: number | undefined;
  /** keepalive_timeout's second value: the Keep-Alive header's timeout in seconds (0: no header). */
  keepaliveHeaderS: number | undefined;
  keepaliveRequests: number | undefined;
  /** keepalive_time: after this long, a client connection closes after the request in progress. */
  keepaliveTimeMs: number | undefined;
  /** keepalive_disable: browsers (by User-Agent) whose connections are closed after each request. */
  keepaliveDisable: { msie6: boolean; safari: boolean } | undefined;
  sendTimeoutMs: number | undefined;
  serverTokens: boolean | undefined;
  errorPages: ErrorPage[] | undefined;
  recursiveErrorPages: boolean | undefined;
  addHeaders: AddHeader[] | undefined;
  /** limit_req / limit_conn and their settings. */
  limitReq: LimitReqRef[] | undefined;
  limitReqStatus: number | undefined;
  limitReqLogLevel: 'info' | 'notice' | 'warn' | 'error' | undefined;
  limitReqDryRun: boolean | undefined;
  limitConn: LimitConnRef[] | undefined;
  limitConnStatus: number | undefined;
  limitConnLogLevel: 'info' | 'notice' | 'warn' | 'error' | undefined;
  limitConnDryRun: boolean | undefined;
  /** allow/deny rules in order (undefined: no rule anywhere above). */
  access: AccessRule[] | undefined;
  /** realip: the trusted addresses (set_real_ip_from; undefined: the module is off), the header (lower
   * case; 'x-real-ip' by default) and real_ip_recursive. */
  realIpFrom: AccessRule[] | undefined;
  /** auth_basic: the realm (null: `off`), the user file, and `satisfy`. */
  authBasic: Template | null | undefined;
  authBasicUserFile: Template | undefined;
  satisfy: 'all' | 'any' | undefined;
  /** auth_request: the URI of the subrequest that decides on access (null: `off`). */
  authRequest: string | null | undefined;
  /** auth_request_set: variables set in the request from the subrequest's, once it answered 2xx. */
  authRequestSet: Array<{ name: string; value: Template }> | undefined;
  realIpHeader: string | undefined;
  realIpRecursive: boolean | undefined;
  /** limit_except: the settings for methods not in `methods` (`owner`: the level that wrote it). */
  limitExcept: { methods: Set<string>; conf: LocConf; owner: LocConf } | undefined;
  /** client_body_in_file_only ('off', 'on': the file is kept, 'clean': removed after the request) and where. */
  clientBodyInFileOnly: 'off' | 'on' | 'clean' | undefined;
  clientBodyTempPath: string | undefined;
  /** limit_rate (bytes a second, 0: none) and limit_rate_after (bytes sent before the limit applies). */
  limitRate: number | undefined;
  limitRateAfter: number | undefined;
  /** add_trailer (no default: undefined unless some level has one). */
  addTrailers: AddHeader[] | undefined;
  absoluteRedirect: boolean | undefined;
  serverNameInRedirect: boolean | undefined;
  portInRedirect: boolean | undefined;
  logNotFound: boolean | undefined;
  accessLogs: AccessLogConf[] | 'off' | undefined;
  tcpNodelay: boolean | undefined;
  chunkedTransferEncoding: boolean | undefined;
  internal: boolean | undefined;
  expires: Expires | undefined;
  /** open_file_cache on: how long a cached file is served without looking at the disk (0 when off). */
  openFileCacheValidMs: number | undefined;
  openFileCacheOn: boolean | undefined;
  /** charset: the charset named in Content-Type ('' for off); source_charset; override_charset; charset_types. */
  charset: string | undefined;
  sourceCharset: string | undefined;
  overrideCharset: boolean | undefined;
  charsetTypes: Set<string> | undefined;
  /** Where charset / source_charset were written, for the check that a map joins them. */
  charsetPos: ConfPos | undefined;
  /** charset_map tables (http level, inherited by every level): "src\0dst" in lower case to a 256-byte table. */
  charsetMaps: Map<string, Uint8Array> | undefined;
  /** max_ranges: more byte ranges than this and the whole file is sent (undefined: no limit). */
  maxRanges: number | undefined;
  gzip: boolean | undefined;
  gzipTypes: Set<string> | undefined;
  gzipMinLength: number | undefined;
  gzipCompLevel: number | undefined;
  gzipVary: boolean | undefined;
  gzipHttpVersion: '1.0' | '1.1' | undefined;
  gzipProxied: 'off' | 'any' | undefined;
  gzipDisable: RegExp[] | undefined;
  // ---- stub_status, gzip_static, sub_filter (ngxmods) ----
  /** stub_status answers here. Never undefined, so never inherited: it is the level's own content handler. */
  stubStatus = false;
  gzipStatic: 'off' | 'on' | 'always' | undefined;
  /** sub_filter pairs (the list is inherited whole), sub_filter_once (default on), sub_filter_types (beyond
   * text/html), sub_filter_last_modified (default off): subfilter.ts. */
  subFilters: Array<{ find: Template; replacement: Template }> | undefined;
  subFilterOnce: boolean | undefined;
  subFilterTypes: Set<string> | undefined;
  subFilterLastModified: boolean | undefined;
  // ---- resolver, resolver_timeout (pupstream): names in proxy_pass/uwsgi_pass with variables ----
  resolver: ResolverConf | undefined;
  resolverTimeoutMs: number | undefined;
  // upstream modules (uwsgi_* and proxy_* share these slots; each pass directive picks its own set)
  pass: PassConf | undefined;
  uwsgi: UpstreamSettings;
  proxy: UpstreamSettings;
  ssl: SslConf;

  constructor() {
    this.uwsgi = new UpstreamSettings();
    this.proxy = new UpstreamSettings();
    this.ssl = { certificate: undefined, certificateKey: undefined, certificatePath: undefined, protocols: undefined, ciphers: undefined, preferServerCiphers: undefined, verifyClient: undefined, clientCertificate: undefined, trustedCertificate: undefined, verifyDepth: undefined, crl: undefined, verifyClientPos: undefined };
  }
}

/** `resolver ADDRESS ... [valid=] [ipv4=] [ipv6=]`: the DNS servers names are asked of at request time. */
export interface ResolverConf {
  /** "127.0.0.1:53", "[::1]:5353": as node:dns Resolver.setServers takes them. */
  servers: string[];
  /** valid=: how long an answer is used (undefined: the answer's smallest TTL, as nginx). */
  validMs: number | undefined;
  ipv4: boolean;
  ipv6: boolean;
}

/** Settings of one upstream module (uwsgi_* or proxy_*). */
export class UpstreamSettings {
  params: Param[] | undefined;
  connectTimeoutMs: number | undefined;
  readTimeoutMs: number | undefined;
  sendTimeoutMs: number | undefined;
  nextUpstream: Set<NextUpstreamCond> | 'off' | undefined;
  nextUpstreamTries: number | undefined;
  nextUpstreamTimeoutMs: number | undefined;
  buffering: boolean | undefined;
  requestBuffering: boolean | undefined;
  /** Bytes of response held in memory for a slow client before the backend is read no further. */
  maxBufferedBytes: number | undefined;
  interceptErrors: boolean | undefined;
  hideHeaders: Set<string> | undefined;
  passHeaders: Set<string> | undefined;
  passRequestHeaders: boolean | undefined;
  passRequestBody: boolean | undefined;
  modifier1: number | undefined;
  modifier2: number | undefined;
  httpVersion: '1.0' | '1.1' | undefined;
  /** proxy_method (unset: the client's method). */
  method: Template | undefined;
  redirect: 'default' | 'off' | Array<[string, Template]> | undefined;
  ignoreClientAbort: boolean | undefined;
  /** tsgi extension: offer the persistent link (docs/protocol-keepalive.md). */
  tsgiKeepalive: boolean | undefined;
  /** tsgi extension: pipeline bodiless idempotent requests on the link when the backend reads them. */
  tsgiPipelining: boolean | undefined;
  // ---- response cache (*_cache and friends; src/proxy/cache.ts) ----
  /** The zone responses are cached in; null for `*_cache off` (the default). */
  cache: CacheZone | null | undefined;
  cacheKey: Template | undefined;
  /** *_cache_valid lines in order: status codes (empty: any) and for how long. */
  cacheValid: Array<{ codes: number[] | 'any'; ms: number }> | undefined;
  cacheMethods: Set<string> | undefined;
  cacheBypass: Template[] | undefined;
  noCache: Template[] | undefined;
  cacheMinUses: number | undefined;
  cacheUseStale: Set<string> | undefined;
  cacheConvertHead: boolean | undefined;
  /** *_ignore_headers, lower case. */
  ignoreHeaders: Set<string> | undefined;
  // ---- TLS to the backend (https://, suwsgi://; pupstream) ----
  sslServerName: boolean | undefined;
  /** *_ssl_name (unset: the host of the pass target). */
  sslName: Template | undefined;
  sslVerify: boolean | undefined;
  sslVerifyDepth: number | undefined;
  sslTrusted: Buffer | undefined;
  sslCertificate: Buffer | undefined;
  sslCertificateKey: Buffer | undefined;
  sslCertificatePath: string | undefined;
  sslProtocols: string[] | undefined;
  sslCiphers: string | undefined;
  sslSessionReuse: boolean | undefined;
}

/** A *_cache_path zone: where its files live and its limits. */
export interface CacheZone {
  name: string;
  path: string;
  /** Directory name lengths (levels=1:2 → [1, 2]). */
  levels: number[];
  inactiveMs: number;
  /** Bytes on disk (0: no limit). */
  maxSize: number;
  /** false (use_temp_path=off): temp files go in the zone's directory; otherwise in PATH/temp too (tsgi-proxy has no *_temp_path files). */
  useTempPath: boolean;
  protocol: 'uwsgi' | 'proxy';
  pos: ConfPos;
}

export interface LocationConf {
  /** As written: the match string, '@name', or the regex source. */
  name: string;
  kind: 'exact' | 'prefix' | 'noregex' | 'regex' | 'named';
  regex: RegExp | undefined;
  conf: LocConf;
  script: ScriptOp[];
  children: LocationConf[];
  parent: LocationConf | undefined;
  /** For prefix locations ending in "/" served by a pass directive: "/dir" answers 301 to "/dir/". */
  autoRedirect: boolean;
  pos: ConfPos;
}

export interface ServerNames {
  exact: Set<string>;
  /** "*.example.com" and ".example.com" (the latter also matches example.com). */
  wildStart: string[];
  /** "www.example.*" */
  wildEnd: string[];
  regex: RegExp[];
}

export interface ServerConf {
  listens: ListenConf[];
  names: ServerNames;
  /** The first name, for $server_name. */
  primaryName: string;
  loc: LocConf;
  script: ScriptOp[];
  locations: LocationConf[];
  named: Map<string, LocationConf>;
  mergeSlashes: boolean | undefined;
  clientHeaderTimeoutMs: number | undefined;
  largeHeaderBytes: number | undefined;
  /** large_client_header_buffers' size: the longest request line or header line, CRLF included. */
  largeHeaderLine: number | undefined;
  ignoreInvalidHeaders: boolean | undefined;
  underscoresInHeaders: boolean | undefined;
  /** `http2 on` (nginx 1.25's form of `listen ... http2`) and http2_max_concurrent_streams. */
  http2On?: boolean;
  http2MaxConcurrentStreams?: number;
  pos: ConfPos;
}

export interface HttpConf {
  loc: LocConf;
  servers: ServerConf[];
  upstreams: Map<string, UpstreamConf>;
  /** Made by uwsgi_pass/proxy_pass host:port, keyed by address. */
  implicitUpstreams: Map<string, UpstreamConf>;
  logFormats: Map<string, LogFormat>;
  limitReqZones: Map<string, LimitReqZone>;
  limitConnZones: Map<string, LimitConnZone>;
  mergeSlashes: boolean | undefined;
  clientHeaderTimeoutMs: number | undefined;
  largeHeaderBytes: number | undefined;
  /** large_client_header_buffers' size: the longest request line or header line, CRLF included. */
  largeHeaderLine: number | undefined;
  ignoreInvalidHeaders: boolean | undefined;
  underscoresInHeaders: boolean | undefined;
  /** `http2 on` (nginx 1.25's form of `listen ... http2`) and http2_max_concurrent_streams. */
  http2On?: boolean;
  http2MaxConcurrentStreams?: number;
  pos: ConfPos;
}

export interface MainConf {
  daemon: boolean | undefined;
  masterProcess: boolean | undefined;
  workerProcesses: number | undefined;
  workerConnections: number | undefined;
  /** worker_priority: the workers' nice value, set while they are still root. */
  workerPriority?: number;
  workerShutdownTimeoutMs: number | undefined;
  pid: string | undefined;
  user: { user: string; group: string | undefined } | undefined;
  errorLogs: Array<{ path: string; level: string }>;
  env: string[];
  http: HttpConf | undefined;
  events: boolean;
}
