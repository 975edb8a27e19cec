/**
 * The state of one request as it moves through the phases (server rewrite, find location, rewrite,
 * try_files, content, log). One object per request; variables read from it.
 */
import type { PeerGroup } from './upstream/peers.js';
import type { BodyStream } from './upstream/pass.js';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { LocationConf, ServerConf, LocConf } from './conf/model.js';
import type { ListenGroup } from './listen.js';

/** A request that asked for a protocol upgrade: the bytes the client sent after its head and its body, which
 * node:http does not read for such a request (front.ts). */
export type UpgradeRequest = IncomingMessage & { tsgiUpgrade?: Buffer; tsgiBody?: Buffer };

export class Rq {
  /** Set while a regex (location, rewrite, server_name) matched: $1..$9 and named captures. */
  captures: RegExpExecArray | null = null;
  /** realip: the client address and port taken from a header (null: the connection's own are used). */
  realAddr: string | null = null;
  realPort = '';
  /** An auth_request subrequest: the request it decides on (null for a client's request). */
  parent: Rq | null = null;
  /** auth_basic or auth_request refused the request: the challenge(s) its 401 carries. */
  wwwAuthenticate: string | string[] | null = null;
  /** Variables from `set`. */
  vars: Map<string, string> | null = null;
  /** Values of `map` variables already evaluated for this request, by map index (not for volatile maps). */
  mapVals: Array<string | undefined> | null = null;
  /** The location in effect, and its merged settings. */
  location: LocationConf | null = null;
  conf: LocConf;
  /** Decoded, normalised path ($uri) and the query string without "?" ($args). */
  uri: string;
  args: string;
  /** Times a `rewrite ... last`, index or error_page sent the request back to location search. */
  internalRedirects = 0;
  internal = false;
  errorPageDone = false;
  /** Which request of its connection this is (1 for the first): keepalive_requests compares it. */
  nth = 0;
  /** Filled while serving static content ($request_filename). */
  filename = '';
  status = 0;
  /** The access log line was written (a request ends by 'finish' or by 'close', never both logged). */
  logged = false;
  /** Status an error_page forces on whatever the target location answers (0: none). */
  forceStatus = 0;
  /** The Location of a redirect an error_page took over ('' for none). */
  keptLocation = '';
  /** False once a rewrite changed the URI in the location found (proxy_pass then ignores its URI part). */
  validLocation = true;
  bodyBytesSent = 0;
  /** What the upstream tries recorded ($upstream_addr, $upstream_status, $upstream_response_time). */
  upstreamAddrs: string[] | null = null;
  upstreamStatuses: string[] | null = null;
  upstreamTimeMs = -1;
  /** The pass to an upstream in progress, told when the client leaves early. */
  relay: { clientClosed(): void } | null = null;
  /** The response head as written ($sent_http_*), and the backend's head ($upstream_http_*, $upstream_cookie_*). */
  sentHeaders: string[] | null = null;
  upstreamHeaders: string[] | null = null;
  /** $limit_req_status / $limit_conn_status; also: the limits were applied ('' until then). */
  limitReqStatus = '';
  limitConnStatus = '';
  /** add_trailer values sent so far ($sent_trailer_*), by lower-case name. */
  trailers: Map<string, string> | null = null;
  /** Body bytes the backend sent ($upstream_response_length). */
  upstreamBytes = 0;
  /** client_body_in_file_only: where the body was written ($request_body_file). */
  bodyFile = '';
  /** The charset_map table the body is recoded with (charset.ts); null when it is sent as it is. */
  recode: Uint8Array | null = null;
  /** gzip_static on found FILE.gz: the answer carries Vary: Accept-Encoding when gzip_vary is on. */
  gzipVary = false;
  /** Request body, fully read before it is passed upstream (so it can be retried). */
  body: Buffer | null = null;
  /** Response headers added by add_header once the status is known. */
  readonly start: number;
  host: string;
  method: string;
  /** The URI before any rewrite, to know whether proxy_pass may send the client's request line as is. */
  readonly originalUri: string;
  /** $proxy_host: the upstream name proxy_pass is using. */
  proxyHost = '';
  /** A pass target with variables: the URI part of its value ('' when it has none), sent as is (nginx). */
  dynUri = '';
  /** The group a resolver answer made for this request, used once by the pass it was resolved for. */
  passGroup: PeerGroup | null = null;
  /** *_request_buffering off: the body being passed as it arrives (null: read whole, or none). */
  bodyStream: BodyStream | null = null;
  /** $upstream_cache_status (MISS, HIT, ...); empty when the location does not cache. */
  cacheStatus = '';

  constructor(
    readonly req: IncomingMessage,
    readonly res: ServerResponse,
    readonly group: ListenGroup,
    public server: ServerConf,
    uri: string,
    args: string,
    host: string,
    readonly requestUri: string,
  ) {
    this.conf = server.loc;
    this.uri = uri;
    this.originalUri = uri;
    this.args = args;
    this.host = host;
    this.method = req.method ?? 'GET';
    this.start = Date.now();
  }

  get upstreamAddr(): string {
    return this.upstreamAddrs ? this.upstreamAddrs.join(', ') : '';
  }

  get upstreamStatus(): string {
    return this.upstreamStatuses ? this.upstreamStatuses.join(', ') : '';
  }

  get upstreamResponseTime(): string {
    return this.upstreamTimeMs < 0 ? '' : (this.upstreamTimeMs / 1000).toFixed(3);
  }

  /** $document_root: the root (or alias) of the location in effect, evaluated for this request. */
  documentRoot(): string {
    const root = this.conf.root;
    return root ? root.path.eval(this) : '';
  }
}
