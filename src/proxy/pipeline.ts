/**
 * One request through nginx's phases: choose the server, run the server-level rewrite script, find the
 * location, run its script (again after a `rewrite ... last`), then the content: try_files, a pass to an
 * upstream, or static files. Every response tsgi-proxy makes itself goes through `finalize`, which applies
 * error_page, and `sendHead`, which applies add_header and the Server header.
 */
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { AddHeader, Expires, LocationConf, LocConf, ScriptOp, ServerConf, IfTest } from './conf/model.js';
import { parseExpires } from './conf/modules/core.js';
import { stat } from 'node:fs/promises';
import { statSync } from 'node:fs';
import { verifyClient } from './tlsclient.js';
import { h2HeaderList, isH2 } from './http2.js';
import { findServer, type Binding, type ListenGroup } from './listen.js';
import { findLocation } from './location.js';
import { Rq } from './request.js';
import { addHeaderApplies, errorPage, httpDate, statusReason, wireStatus } from './special.js';
import { escapeUri, normalizeHost, normalizePath, splitTarget } from './uri.js';
import { PRODUCT, VERSION } from './vars.js';
import type { ErrorLogs } from './errorlog.js';
import { applyGzip } from './gzip.js';
import { charsetType, recode } from './charset.js';
import { readFile } from 'node:fs/promises';
import { accessAllowed, realAddress } from './conf/modules/access.js';
import { credentials, entries, unsupportedFormat, verify } from './authbasic.js';
import { parseSize } from './conf/table.js';
import { paceResponse } from './ratelimit.js';
import { checkLimitConn, checkLimitReq } from './limits.js';
import { mapPath } from './static.js';
import { authRequest } from './authrequest.js';
import { serverCounts, stubStatusBody } from './stats.js';
import { prepareSubFilter } from './subfilter.js';

/** Services the pipeline calls into, provided by the worker. */
export interface Runtime {
  errorLog: ErrorLogs;
  serveStatic(r: Rq): void;
  pass(r: Rq): void;
  logAccess(r: Rq): void;
}

/**
 * The fields node:http (Node 20 `_http_outgoing`) writes its `Keep-Alive: timeout=T[, max=M]` header from,
 * after `Connection: keep-alive`: T is `_keepAliveTimeout` (ms, copied from server.keepAliveTimeout, which
 * Front leaves at 0 so there is none by default), M `_maxRequestsPerSocket` (left out when 0).
 */
interface NodeKeepAliveHeader {
  _keepAliveTimeout: number;
  _maxRequestsPerSocket: number;
}

const MAX_INTERNAL_REDIRECTS = 10;
const BAD_HEADER_VALUE = /[^\t\x20-\x7e\x80-\xff]/;
const SERVER_FULL = `${PRODUCT}/${VERSION}`;

/** What front.ts keeps on a client connection: its requests so far, and whether the one in progress is its last. */
export type ConnectionState = { _tsgiRequests?: number; _tsgiLast?: boolean; _tsgiStart?: number };

export class Pipeline {
  constructor(readonly rt: Runtime) {}

  /**
   * Entry point from node:http. A bug in a handler answers 500 and is logged; the worker lives on.
   * Returns the request's state (its `conf` is the location that answered, once it has answered).
   */
  handle(binding: Binding, req: IncomingMessage, res: ServerResponse, nth?: number): Rq | undefined {
    let r: Rq | undefined;
    try {
      r = this.handleRequest(binding, req, res, nth);
    } catch (e) {
      this.rt.errorLog.log('alert', `internal error while processing "${req.method} ${req.url}": ${(e as Error).stack ?? e}`);
      if (!res.headersSent) {
        try {
          res.writeHead(500, { 'Content-Type': 'text/html', 'Content-Length': String(errorPage(500, true)!.length), ...(isH2(req) ? {} : { Connection: 'close' }) });
          res.end(errorPage(500, true));
          return;
        } catch {
          // fall through
        }
      }
      res.destroy();
    }
    return r;
  }

  private handleRequest(binding: Binding, req: IncomingMessage, res: ServerResponse, nth: number | undefined): Rq {
    let group: ListenGroup = binding.main;
    if (binding.groups.size > 1) {
      let la = req.socket.localAddress ?? '';
      if (la.startsWith('::ffff:')) la = la.slice(7);
      group = binding.groups.get(la) ?? binding.main;
    }
    const url = req.url ?? '/';
    if (req.method!.length + url.length + 12 > group.defaultServer.largeHeaderLine!) return this.uriTooLong(group, req, res);
    const target = splitTarget(url);
    // No Host at all (HTTP/1.0) is no name; an empty one is invalid, as in nginx.
    const rawHost = target?.host ?? (req.headers.host as string | undefined);
    const host = rawHost === undefined ? '' : normalizeHost(rawHost);
    const found = findServer(group, host ?? '');
    const server = found.server;
    const uri = target ? normalizePath(target.path, server.mergeSlashes !== false) : null;
    const r = new Rq(req, res, group, server, uri ?? '/', target?.query ?? '', host || server.primaryName, req.url ?? '/');
    r.captures = found.captures;
    r.nth = nth ?? (req.socket as ConnectionState)._tsgiRequests ?? 1;
    // One listener for both ends of a response: 'finish' (sent) and 'close' (which also follows 'finish').
    const ended = (): void => this.ended(r);
    res.on('finish', ended);
    res.on('close', ended);
    // Each header line must fit in one of large_client_header_buffers (node:http bounds only their sum).
    const lineMax = server.largeHeaderLine! - 4;
    const raw = req.rawHeaders;
    let seen = 0;
    for (let i = 0; i < raw.length; i += 2) {
      const name = raw[i]!;
      if (name.length + raw[i + 1]!.length > lineMax) {
        this.log(r, 'info', `client sent too long header line: "${name}: ${raw[i + 1]!.slice(0, 32)}..." while reading client request headers`);
        res.shouldKeepAlive = false;
        this.finalize(r, 494);
        return r;
      }
      // Headers nginx takes once only: a second one is refused, so that no two parts of a chain read different
      // values (request smuggling, a credential or condition the backend sees and the proxy did not).
      const bit = uniqueHeaderBit(name);
      if (bit !== 0) {
        if ((seen & bit) !== 0) {
          this.log(r, 'info', `client sent duplicate header line: "${name}: ${raw[i + 1]}" while reading client request headers`);
          res.shouldKeepAlive = false;
          this.finalize(r, 400);
          return r;
        }
        seen |= bit;
      }
    }
    const te = req.headers['transfer-encoding'];
    if (te !== undefined) {
      // nginx takes only "chunked", and only from HTTP/1.1 (an HTTP/1.0 hop in between would not know it).
      if (req.httpVersionMajor === 1 && req.httpVersionMinor === 0) {
        this.log(r, 'info', 'client sent HTTP/1.0 request with "Transfer-Encoding" header while reading client request headers');
        res.shouldKeepAlive = false;
        this.finalize(r, 400);
        return r;
      }
      if (te.length !== 7 || te.toLowerCase() !== 'chunked') {
        this.log(r, 'info', `client sent unknown "Transfer-Encoding": "${te}" while reading client request headers`);
        res.shouldKeepAlive = false;
        this.finalize(r, 501);
        return r;
      }
    }
    if (host === null || uri === null || target === null) {
      this.log(r, 'info', host === null ? `client sent invalid host header while reading client request headers` : 'client sent invalid request');
      res.shouldKeepAlive = false;
      this.finalize(r, 400);
      return r;
    }
    if (r.method === 'TRACE') {
      // Never echoed back (it would expose cookies and credentials to scripts); nginx refuses it too.
      this.finalize(r, 405);
      return r;
    }
    // ssl_verify_client: nginx checks the certificate once the server is known, before anything else runs.
    if (server.loc.ssl.verifyClient !== 'off' && group.ssl) {
      const bad = verifyClient(r, server.loc.ssl, (msg) => this.log(r, 'info', msg));
      if (bad !== 0) {
        res.shouldKeepAlive = false;
        this.finalize(r, bad);
        return r;
      }
    }
    // Post-read: realip with the server's settings (as nginx: before any rewrite; a location's own settings
    // apply in preaccess, when this did not change the address).
    if (server.loc.realIpFrom !== undefined) this.realIp(r, server.loc);
    // Server-level rewrite script, then location search.
    const rc = this.runScript(r, server.script);
    if (rc !== 'done') this.findAndRun(r);
    // The location that took the request ends the connection after it (keepalive_requests reached,
    // keepalive_timeout 0): requests the client pipelined behind it are not served, as in nginx (the
    // client sends them again on a new connection). Decided now, before node:http hands over the next one.
    // (An HTTP/2 connection carries concurrent streams: none is held back.)
    if (!res.headersSent && !isH2(req) && this.lastOnConnection(r)) {
      res.shouldKeepAlive = false;
      (req.socket as ConnectionState)._tsgiLast = true;
    } else if (isH2(req) && this.lastStreamOnSession(r)) {
      // HTTP/2, as nginx since 1.19.7: keepalive_requests and keepalive_time end the connection with a GOAWAY
      // once this stream is counted; the streams already open finish, the client opens a new connection.
      const session = (req as unknown as { stream?: { session?: { closed: boolean; close(): void } } }).stream?.session;
      if (session !== undefined && !session.closed) session.close();
    }
    return r;
  }

  /**
   * keepalive_requests or keepalive_time reached by this request: what ends an HTTP/2 connection, and (with
   * keepalive_timeout 0 and keepalive_disable) an HTTP/1.x one.
   */
  private lastStreamOnSession(r: Rq): boolean {
    const conf = r.conf;
    const max = conf.keepaliveRequests;
    if (max !== undefined && max > 0 && r.nth >= max) return true;
    // keepalive_time: counted from the connection's start to this request's.
    return r.start - ((r.req.socket as ConnectionState)._tsgiStart ?? r.start) > conf.keepaliveTimeMs!;
  }

  /** A request line longer than one of large_client_header_buffers: 414 from the default server, as nginx. */
  private uriTooLong(group: ListenGroup, req: IncomingMessage, res: ServerResponse): Rq {
    const server = group.defaultServer;
    const r = new Rq(req, res, group, server, '/', '', server.primaryName, req.url ?? '/');
    const ended = (): void => this.ended(r);
    res.on('finish', ended);
    res.on('close', ended);
    this.log(r, 'info', 'client sent too long URI while reading client request line');
    res.shouldKeepAlive = false;
    this.finalize(r, 414);
    return r;
  }

  /** Whether the answering location closes the connection after this request. */
  private lastOnConnection(r: Rq): boolean {
    const conf = r.conf;
    if (conf.keepaliveTimeoutMs === 0 || this.lastStreamOnSession(r)) return true;
    const kd = conf.keepaliveDisable!;
    if (kd.msie6 && r.method === 'POST' && oldMsie(r.req.headers['user-agent'])) return true;
    return kd.safari && isSafari(r.req.headers['user-agent']);
  }

  /** The response was sent, or the connection closed first: the access log, and a pass told to stop. */
  private ended(r: Rq): void {
    if (!r.logged) this.rt.logAccess(r);
    // node:http2's response reads writableFinished from its stream, which a client's RST_STREAM finishes
    // too: there, only an end() of ours says the response was complete (else the backend is read forever).
    if (r.relay !== null && !(isH2(r.req) ? r.res.writableEnded : r.res.writableFinished)) r.relay.clientClosed();
  }

  log(r: Rq, level: 'error' | 'warn' | 'info' | 'notice', msg: string): void {
    if (!this.rt.errorLog.enabled(level)) return;
    const client = r.realAddr ?? r.req.socket.remoteAddress ?? '';
    this.rt.errorLog.log(level, `*${(r.req.socket as { _tsgiId?: number })._tsgiId ?? 0} ${msg}, client: ${client.startsWith('::ffff:') ? client.slice(7) : client}, server: ${r.server.primaryName}, request: "${r.req.method} ${r.requestUri} HTTP/${r.req.httpVersion}", host: "${r.req.headers.host ?? ''}"`);
  }

  /** Location search and the location's script, repeated while `rewrite ... last` changes the URI. */
  findAndRun(r: Rq): void {
    for (;;) {
      if (r.internalRedirects > MAX_INTERNAL_REDIRECTS) {
        this.log(r, 'error', `rewrite or internal redirection cycle while processing "${r.uri}"`);
        this.finalize(r, 500);
        return;
      }
      const f = findLocation(r.server.locations, r.uri);
      r.validLocation = true;
      if (!f.location) {
        r.location = null;
        r.conf = r.server.loc;
      } else {
        r.location = f.location;
        r.conf = f.location.conf;
        if (f.captures) r.captures = f.captures;
      }
      if (f.redirectSlash) {
        this.redirect(r, 301, escapeUri(r.uri + '/') + (r.args ? '?' + r.args : ''));
        return;
      }
      const uriBefore = r.uri;
      // limit_except for a method it does not list: its settings replace the location's, and the location's
      // rewrite directives do not run (they are not part of that block), as in nginx.
      const le = r.conf.limitExcept;
      const limited = le !== undefined && !le.methods.has(r.method);
      if (limited) r.conf = le.conf;
      const rc = this.runScript(r, f.location && !limited ? f.location.script : []);
      if (rc === 'done') return;
      if (rc === 'last' || (rc === 'continue' && r.uri !== uriBefore)) {
        r.internalRedirects++;
        continue;
      }
      this.content(r);
      return;
    }
  }

  /** Continues in a named location (try_files/error_page "@name"). */
  gotoNamed(r: Rq, name: string): void {
    const loc = r.server.named.get(name);
    if (!loc) {
      this.log(r, 'error', `could not find named location "${name}"`);
      this.finalize(r, 500);
      return;
    }
    r.internalRedirects++;
    if (r.internalRedirects > MAX_INTERNAL_REDIRECTS) {
      this.finalize(r, 500);
      return;
    }
    r.location = loc;
    r.conf = loc.conf;
    r.internal = true;
    const uriBefore = r.uri;
    const rc = this.runScript(r, loc.script);
    if (rc === 'done') return;
    if (rc === 'last' || (rc === 'continue' && r.uri !== uriBefore)) {
      r.internalRedirects++;
      this.findAndRun(r);
      return;
    }
    this.content(r);
  }

  /** Sends the request back to location search with a new URI (index, try_files, error_page). */
  internalRedirect(r: Rq, target: string): void {
    const q = target.indexOf('?');
    const path = q < 0 ? target : target.slice(0, q);
    if (q >= 0) r.args = target.slice(q + 1);
    const norm = normalizePath(path, r.server.mergeSlashes !== false);
    if (norm === null) {
      this.finalize(r, 400);
      return;
    }
    r.uri = norm;
    r.internal = true;
    r.internalRedirects++;
    r.captures = null;
    this.findAndRun(r);
  }

  private content(r: Rq): void {
    const conf = r.conf;
    // Preaccess: realip (with the location's settings, once per request), then limit_conn and limit_req.
    if (conf.realIpFrom !== undefined && r.realAddr === null) this.realIp(r, conf);
    // Preaccess: limit_conn, then limit_req, once per request (not again after an internal redirect).
    if (conf.limitConn !== undefined && r.limitConnStatus === '') {
      const o = checkLimitConn(r, conf.limitConn, (level, msg) => this.log(r, level, msg));
      if (o.kind === 'reject') {
        this.finalize(r, o.status);
        return;
      }
    }
    if (conf.limitReq !== undefined && r.limitReqStatus === '') {
      const o = checkLimitReq(r, conf.limitReq, (level, msg) => this.log(r, level, msg));
      if (o.kind === 'reject') {
        this.finalize(r, o.status);
        return;
      }
      if (o.kind === 'delay') {
        const t = setTimeout(() => {
          if (!r.res.destroyed) this.content(r);
        }, o.ms);
        r.res.once('close', () => clearTimeout(t));
        return;
      }
    }
    // Access: allow/deny, then auth_basic, then auth_request (satisfy all: each must let the request in; any:
    // one is enough). An auth_request subrequest skips this phase, as nginx's subrequests do.
    if ((conf.access !== undefined || (conf.authBasic != null && conf.authBasicUserFile !== undefined) || conf.authRequest != null) && r.parent === null) {
      const allowed = conf.access === undefined || accessAllowed(conf.access, r.realAddr ?? r.req.socket.remoteAddress);
      const auth = conf.authBasic != null && conf.authBasicUserFile !== undefined;
      const sub = conf.authRequest != null;
      const any = conf.satisfy === 'any';
      if (!allowed) this.log(r, 'error', 'access forbidden by rule');
      if (any && allowed && conf.access !== undefined) {
        this.afterAccess(r, conf);
        return;
      }
      if (!allowed && (!any || (!auth && !sub))) {
        this.finalize(r, 403);
        return;
      }
      // basic: -1 when auth_basic is not configured, 0 when it let the request in, else its status.
      const next = (basic: number): void => {
        if (basic > 0 && !any) {
          this.finalize(r, basic);
          return;
        }
        if ((basic === 0 && any) || !sub) {
          if (basic > 0) this.finalize(r, basic);
          else this.afterAccess(r, conf);
          return;
        }
        authRequest(this, r, conf, (status) => {
          if (status === 0) this.afterAccess(r, conf);
          // satisfy any: a 401 from one check wins over a 403 from another, as in nginx.
          else this.finalize(r, any && status === 403 && basic === 401 ? 401 : status);
        });
      };
      if (auth) {
        void this.basicAuth(r, conf).then((status) => {
          if (r.res.destroyed) return;
          next(status);
        }, (e: Error) => {
          this.log(r, 'error', `auth_basic failed: ${e.message}`);
          this.finalize(r, 500);
        });
        return;
      }
      if (sub) {
        next(-1);
        return;
      }
    }
    this.afterAccess(r, conf);
  }

  /**
   * auth_basic: 0 when the credentials match, else the status (401 with WWW-Authenticate, 403 when the user
   * file is missing, 500 for an entry in a format tsgi-proxy cannot check). The file is read each time.
   */
  private async basicAuth(r: Rq, conf: LocConf): Promise<number> {
    const realm = conf.authBasic!.eval(r);
    const cred = credentials(r.req.headers.authorization);
    const deny = (): number => {
      r.wwwAuthenticate = `Basic realm="${realm}"`;
      return 401;
    };
    if (cred === null) {
      this.log(r, 'info', 'no user/password was provided for basic authentication');
      return deny();
    }
    const file = conf.authBasicUserFile!.eval(r);
    let text: string;
    try {
      text = await readFile(file, 'latin1');
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      this.log(r, 'error', `open() "${file}" failed (${err.code === 'ENOENT' ? '2: No such file or directory' : err.message})`);
      return err.code === 'ENOENT' ? 403 : 500;
    }
    for (const e of entries(text)) {
      if (e.user !== cred.user) continue;
      const why = unsupportedFormat(e.hash);
      if (why !== undefined) {
        this.log(r, 'error', `${why} of user "${e.user}" in ${file}:${e.line} is not supported by tsgi-proxy`);
        return 500;
      }
      if (verify(cred.pw, e.hash)) return 0;
      this.log(r, 'error', `user "${cred.user}": password mismatch`);
      return deny();
    }
    this.log(r, 'error', `user "${cred.user}" was not found in "${file}"`);
    return deny();
  }

  private afterAccess(r: Rq, conf: LocConf): void {
    if (conf.internal && !r.internal) {
      this.finalize(r, 404);
      return;
    }
    if (conf.tryFiles) {
      void this.tryFiles(r, conf);
      return;
    }
    this.contentHandler(r);
  }

  /** set_real_ip_from / real_ip_header / real_ip_recursive: $remote_addr from the header, when trusted. */
  private realIp(r: Rq, conf: LocConf): void {
    const name = conf.realIpHeader ?? 'x-real-ip';
    const v = r.req.headers[name];
    if (v === undefined) return;
    const found = realAddress(conf.realIpFrom!, Array.isArray(v) ? v.join(', ') : v, conf.realIpRecursive === true, r.req.socket.remoteAddress);
    if (found === null) return;
    r.realAddr = found.addr;
    r.realPort = found.port;
  }

  contentHandler(r: Rq): void {
    if (r.conf.stubStatus) this.stubStatus(r);
    else if (r.conf.pass) this.rt.pass(r);
    else this.rt.serveStatic(r);
  }

  /** stub_status: the server's counters as nginx writes them (GET and HEAD only). */
  private stubStatus(r: Rq): void {
    if (r.method !== 'GET' && r.method !== 'HEAD') {
      this.finalize(r, 405);
      return;
    }
    void serverCounts().then((c) => {
      if (r.res.destroyed || r.res.headersSent) return;
      const body = Buffer.from(stubStatusBody(c), 'latin1');
      this.sendHead(r, 200, ['Content-Type', 'text/plain', 'Content-Length', String(body.length)]);
      if (r.method !== 'HEAD') r.bodyBytesSent = body.length;
      r.res.end(body);
    });
  }

  private async tryFiles(r: Rq, conf: LocConf): Promise<void> {
    const tf = conf.tryFiles!;
    for (const t of tf.files) {
      const value = t.eval(r);
      // A directory is tried when the entry is written with a trailing slash ("$uri/").
      const wantDir = t.source.endsWith('/');
      const path = mapPath(r, value);
      try {
        const st = await stat(Buffer.from(path, 'latin1'));
        if (wantDir ? st.isDirectory() : !st.isDirectory()) {
          // A matched directory continues without the slash, so the request gets nginx's 301 or index.
          const v = wantDir && value.length > 1 ? value.slice(0, -1) : value;
          const q = v.indexOf('?');
          r.uri = q < 0 ? v : v.slice(0, q);
          if (q >= 0) r.args = v.slice(q + 1);
          if (!wantDir) r.filename = path;
          this.contentHandler(r);
          return;
        }
      } catch {
        // next candidate
      }
    }
    const last = tf.last;
    if (last.startsWith('=')) this.finalize(r, Number(last.slice(1)));
    else if (last.startsWith('@')) this.gotoNamed(r, last);
    else {
      this.internalRedirect(r, tf.lastTemplate.eval(r));
    }
  }

  // ---- rewrite scripts ----

  /** 'done': a response was sent; 'last': search locations again; 'break': stop the script; 'continue'. */
  runScript(r: Rq, script: ScriptOp[]): 'done' | 'last' | 'break' | 'continue' {
    for (const op of script) {
      switch (op.op) {
        case 'set':
          (r.vars ??= new Map()).set(op.name, op.value.eval(r));
          break;
        case 'break':
          return 'break';
        case 'return':
          this.doReturn(r, op.code, op.text ? op.text.eval(r) : undefined);
          return 'done';
        case 'rewrite': {
          const m = op.regex.exec(r.uri);
          if (!m) break;
          // The URI no longer matches the location's prefix: proxy_pass sends it whole (nginx's valid_location).
          r.validLocation = false;
          r.captures = m;
          let result = op.replacement.eval(r);
          const isRedirect = op.flag === 'redirect' || op.flag === 'permanent' || op.redirectByScheme;
          // A replacement ending in "?" drops the old arguments; otherwise they are appended.
          let dropArgs = false;
          if (result.endsWith('?')) {
            result = result.slice(0, -1);
            dropArgs = true;
          }
          if (isRedirect) {
            let loc = result;
            if (!dropArgs && r.args) loc += (loc.includes('?') ? '&' : '?') + r.args;
            this.redirect(r, op.flag === 'permanent' ? 301 : 302, loc);
            return 'done';
          }
          const q = result.indexOf('?');
          if (q >= 0) {
            const newArgs = result.slice(q + 1);
            r.args = dropArgs || !r.args ? newArgs : newArgs + '&' + r.args;
            result = result.slice(0, q);
          } else if (dropArgs) r.args = '';
          r.uri = result;
          if (op.flag === 'last') return 'last';
          if (op.flag === 'break') return 'break';
          break;
        }
        case 'if': {
          if (!this.test(r, op.test)) break;
          if (op.conf && op.location) {
            r.conf = op.conf;
          }
          const rc = this.runScript(r, op.script);
          if (rc !== 'continue') return rc;
          break;
        }
      }
    }
    return 'continue';
  }

  /** limit_rate, or a rate `set $limit_rate` chose for this request. */
  private pace(r: Rq): void {
    const v = r.vars?.get('limit_rate');
    let rate = r.conf.limitRate!;
    if (v !== undefined) {
      const n = parseSize(v);
      rate = Number.isNaN(n) ? 0 : n;
    }
    if (rate > 0 && r.method !== 'HEAD') paceResponse(r.res, rate, r.conf.limitRateAfter!);
  }

  private trailers(r: Rq, code: number, list: string[], tr: AddHeader[]): void {
    trailersFor(r, code, list, tr);
  }

  private test(r: Rq, t: IfTest): boolean {
    let v: boolean;
    switch (t.kind) {
      case 'var': {
        const s = t.value.eval(r);
        v = s !== '' && s !== '0';
        break;
      }
      case 'cmp':
        v = t.value.eval(r) === t.to.eval(r);
        break;
      case 'regex': {
        const m = t.regex.exec(t.value.eval(r));
        if (m) r.captures = m;
        v = m !== null;
        break;
      }
      case 'file':
        // File tests need a synchronous answer inside the script; they are rare in configs and cheap here.
        v = fileTest(t.test, t.value.eval(r));
        break;
    }
    return t.negate ? !v : v;
  }

  private doReturn(r: Rq, code: number, text: string | undefined): void {
    if (code === 444) {
      r.status = 444;
      r.req.socket.destroy();
      this.rt.logAccess(r);
      return;
    }
    if (code === 301 || code === 302 || code === 303 || code === 307 || code === 308) {
      this.redirect(r, code, text ?? '');
      return;
    }
    // Without text, an error code gets its page; any other code an empty body, as `return CODE ""`.
    if (text === undefined && code >= 400) {
      this.finalize(r, code);
      return;
    }
    if (code === 204) {
      // No content: no type, length or body, whatever the text (a 204 that answers an error_page with the
      // error's status says its empty length, as nginx).
      this.sendHead(r, code, r.forceStatus ? ['Content-Length', '0'] : []);
      r.res.end();
      return;
    }
    let body: Buffer = Buffer.from(text ?? '', 'latin1');
    let type = r.conf.defaultType!;
    if (r.conf.charset) {
      type = charsetType(this, r, type);
      if (r.recode) body = recode(body, r.recode);
    }
    this.sendHead(r, code, ['Content-Type', type, 'Content-Length', String(body.length)]);
    r.bodyBytesSent = body.length;
    r.res.end(body);
  }

  /** Makes a Location absolute (absolute_redirect on) from a path. */
  absoluteLocation(r: Rq, loc: string): string {
    if (!loc.startsWith('/') || !r.conf.absoluteRedirect) return loc;
    const scheme = r.group.ssl ? 'https' : 'http';
    const name = r.conf.serverNameInRedirect ? r.server.primaryName : r.host || r.server.primaryName;
    const port = r.req.socket.localPort;
    const defPort = r.group.ssl ? 443 : 80;
    const portPart = r.conf.portInRedirect && port !== undefined && port !== defPort && !r.group.unix ? `:${port}` : '';
    return `${scheme}://${name}${portPart}${loc}`;
  }

  redirect(r: Rq, code: number, loc: string): void {
    this.finalize(r, code, this.absoluteLocation(r, loc));
  }

  /**
   * Ends the request with a status tsgi-proxy chose (errors, redirects): error_page if one applies, else
   * the built-in page. `extra`: more headers for the built-in page (416's Content-Range).
   * 408 and 499 close the connection without an answer, as in nginx (the access log has the status).
   */
  finalize(r: Rq, status: number, location?: string, extra?: string[]): void {
    const res = r.res;
    if (res.headersSent) {
      res.destroy();
      return;
    }
    if (status === 408 || status === 499) {
      r.status = status;
      r.req.socket.destroy();
      this.rt.logAccess(r);
      return;
    }
    // The target of an error_page that ends with a status of its own (an error, a redirect) answers with it,
    // not with the status the error_page was for, as in nginx.
    if (r.forceStatus !== 0) r.forceStatus = 0;
    const pages = r.conf.errorPages;
    if (status >= 300 && pages && pages.length && (!r.errorPageDone || r.conf.recursiveErrorPages)) {
      for (const p of pages) {
        if (!p.codes.includes(status)) continue;
        r.errorPageDone = true;
        // A redirect's Location stays on the response the error page makes (nginx keeps it).
        if (location !== undefined) r.keptLocation = location;
        const target = p.uri.eval(r);
        const forced = p.overwrite === 'target' ? 0 : p.overwrite ?? status;
        if (target.startsWith('@')) {
          r.forceStatus = forced;
          if (r.method !== 'HEAD') r.method = 'GET';
          this.gotoNamed(r, target);
          return;
        }
        if (!target.startsWith('/')) {
          const code = forced === 301 || forced === 303 || forced === 307 || forced === 308 ? forced : 302;
          r.forceStatus = 0;
          this.sendSpecial(r, code, target);
          return;
        }
        r.forceStatus = forced;
        if (r.method !== 'HEAD') r.method = 'GET';
        // The body read stays the request's: nginx's error page sees it in $request_body.
        this.internalRedirect(r, target);
        return;
      }
    }
    this.sendSpecial(r, status, location, extra);
  }

  private sendSpecial(r: Rq, status: number, location?: string, extra?: string[]): void {
    let page = errorPage(status, r.conf.serverTokens !== false);
    let pageType = 'text/html';
    if (page && r.conf.charset) {
      pageType = charsetType(this, r, pageType);
      if (r.recode) page = recode(page, r.recode);
    }
    // Ordinary client errors keep the connection; these close it, as in nginx.
    if (status === 400 || status === 413 || status === 414 || status === 495 || status === 496 || status === 497 || status === 500 || status === 501) r.res.shouldKeepAlive = false;
    const headers: string[] = page ? ['Content-Type', pageType, 'Content-Length', String(page.length)] : status === 204 || status === 304 ? [] : ['Content-Length', '0'];
    if (location !== undefined) headers.push('Location', location);
    if (extra) headers.push(...extra);
    this.sendHead(r, status, headers);
    if (page && r.method !== 'HEAD') {
      r.bodyBytesSent = page.length;
      r.res.end(page);
    } else r.res.end();
  }

  /**
   * Writes the status line and headers: forced status from error_page, Server and Date, `headers`, then
   * expires and add_header — the order nginx writes them in (node:http adds Connection and
   * Transfer-Encoding last). `upstream`: what the backend's response head set — its reason phrase, kept
   * as nginx keeps it, and whether it brought its own Server or Date (uwsgi_pass passes them).
   */
  sendHead(r: Rq, status: number, headers: OutgoingHttpHeaders | string[], upstream?: UpstreamHead): void {
    const res = r.res;
    const code = wireStatus(r.forceStatus || status);
    r.status = code;
    // Keep-alive as the answering location says: off with keepalive_timeout 0; with a second value, node's
    // own Keep-Alive header (written right after `Connection: keep-alive`, and only then) announces it.
    const conf = r.conf;
    if (this.lastOnConnection(r)) res.shouldKeepAlive = false;
    else if (conf.keepaliveHeaderS) {
      const nodeRes = res as ServerResponse & NodeKeepAliveHeader;
      nodeRes._keepAliveTimeout = conf.keepaliveHeaderS * 1000;
      nodeRes._maxRequestsPerSocket = 0;
    }
    const given: string[] = Array.isArray(headers) ? headers : flatten(headers);
    const list: string[] = [];
    if (r.forceStatus !== 0 && r.keptLocation !== '' && !given.includes('Location')) given.push('Location', r.keptLocation);
    if (upstream === undefined || !upstream.serverSet) list.push('Server', conf.serverTokens !== false ? SERVER_FULL : PRODUCT);
    if (upstream === undefined || !upstream.dateSet) list.push('Date', httpDate());
    for (let i = 0; i < given.length; i++) list.push(given[i]!);
    const challenge = r.wwwAuthenticate;
    if (challenge !== null && code === 401) {
      if (typeof challenge === 'string') list.push('WWW-Authenticate', challenge);
      else for (const c of challenge) list.push('WWW-Authenticate', c);
    }
    // $sent_http_* in add_header values sees the headers set before it, as in nginx.
    r.sentHeaders = list;
    const exp = conf.expires!;
    if (exp.mode !== 'off' && (code === 200 || code === 201 || code === 204 || code === 206 || code === 301 || code === 302 || code === 303 || code === 304 || code === 307 || code === 308)) {
      addExpires(r, list, exp);
    }
    const add = conf.addHeaders;
    /** Where in `list` values are that node:http would refuse. */
    let raw: number[] | undefined;
    if (add && add.length) {
      const applies = addHeaderApplies(code);
      for (const h of add) {
        if (!applies && !h.always) continue;
        const v = h.value.eval(r);
        // ETag and Last-Modified are single-valued in nginx: add_header replaces the response's own (an
        // empty value removes it) instead of adding a second one.
        if (h.single) {
          for (let i = 0; i < list.length; i += 2) {
            if (list[i]!.toLowerCase() === h.single) {
              list.splice(i, 2);
              i -= 2;
            }
          }
        }
        if (v === '') continue;
        if (BAD_HEADER_VALUE.test(v)) {
          // A line break or NUL would end the header early (a response split): left out. Other control
          // characters (a decoded "%02" in $uri) nginx sends as they are; node:http refuses them in a value,
          // so a stand-in goes through writeHead and is swapped for the value in the head it built.
          if (/[\r\n\0]/.test(v)) {
            this.log(r, 'warn', `header "${h.name}" left out: its value has a line break or NUL`);
            continue;
          }
          (raw ??= []).push(list.length + 1);
        }
        list.push(h.name, v);
      }
    }
    if (conf.addTrailers !== undefined) this.trailers(r, code, list, conf.addTrailers);
    if (conf.limitRate || r.vars !== null) this.pace(r);
    const sub = conf.subFilters !== undefined ? prepareSubFilter(r, list) : undefined;
    if (conf.gzip) applyGzip(r, code, list);
    // After gzip's wrap, so the body is replaced first and compressed after, as nginx's filters run.
    if (sub !== undefined) sub(res);
    const reason = upstream !== undefined && !r.forceStatus && !BAD_HEADER_VALUE.test(upstream.reason) ? upstream.reason : statusReason(code);
    // HTTP/2 has no reason phrase and no connection-specific fields (a backend's Connection, for one); its head
    // is not text, so a value with control characters cannot go out raw there and is left out.
    if (isH2(r.req)) {
      if (raw !== undefined) for (let i = raw.length - 1; i >= 0; i--) list.splice(raw[i]! - 1, 2);
      res.writeHead(code, h2HeaderList(list) as unknown as OutgoingHttpHeaders);
      return;
    }
    if (raw === undefined) {
      res.writeHead(code, reason, list as unknown as OutgoingHttpHeaders);
      return;
    }
    // Node 20 keeps the head it built in `_header` until the first write sends it: stand-ins go through
    // writeHead and are swapped there; the list gets the values back ($sent_http_* reads it).
    const values = raw.map((at) => list[at]!);
    for (let i = 0; i < raw.length; i++) list[raw[i]!] = `tsgi-ctl-${i}-${r.start}`;
    res.writeHead(code, reason, list as unknown as OutgoingHttpHeaders);
    const built = res as ServerResponse & { _header?: string };
    for (let i = 0; i < raw.length; i++) {
      const value = values[i]!;
      if (typeof built._header === 'string') built._header = built._header.replace(`: ${list[raw[i]!]}\r\n`, () => `: ${value}\r\n`);
      list[raw[i]!] = value;
    }
  }
}

/**
 * add_trailer: on a chunked HTTP/1.1 response with a body, the trailers are evaluated when the body ends
 * (so they can name what was sent) and written after the last chunk. The Content-Length goes, as nginx
 * drops it to send the response chunked. Only responses of a location with add_trailer pay for this.
 */
function trailersFor(r: Rq, code: number, list: string[], tr: AddHeader[]): void {
  if (r.method === 'HEAD' || r.req.httpVersionMinor < 1 || r.req.httpVersionMajor !== 1 || r.conf.chunkedTransferEncoding === false) return;
  if (code === 204 || code === 304 || code < 200) return;
  const applies = addHeaderApplies(code);
  if (!applies && !tr.some((t) => t.always)) return;
  for (let i = 0; i < list.length; i += 2) {
    if (list[i]!.toLowerCase() === 'content-length') {
      list.splice(i, 2);
      i -= 2;
    }
  }
  const res = r.res;
  res.useChunkedEncodingByDefault = true;
  const end = res.end;
  res.end = function (this: ServerResponse, ...args: unknown[]) {
    res.end = end;
    // The last data goes out first, so the trailers see all of it (a body passed to end() included).
    if (typeof args[0] !== 'function' && args[0] !== undefined) {
      res.write(args[0] as Buffer);
      args[0] = undefined;
    }
    const out: Array<[string, string]> = [];
    const sent = (r.trailers = new Map());
    for (const t of tr) {
      if (!applies && !t.always) continue;
      const v = t.value.eval(r);
      if (v === '' || BAD_HEADER_VALUE.test(v)) continue;
      out.push([t.name, v]);
      const k = t.name.toLowerCase();
      sent.set(k, sent.has(k) ? `${sent.get(k)}, ${v}` : v);
    }
    if (out.length) res.addTrailers(out);
    return (end as (...a: unknown[]) => ServerResponse).apply(res, args.filter((a) => a !== undefined));
  } as typeof res.end;
}

/** What a backend's response head set, for `sendHead`. */
export interface UpstreamHead {
  reason: string;
  serverSet: boolean;
  dateSet: boolean;
}

function flatten(h: OutgoingHttpHeaders): string[] {
  const out: string[] = [];
  for (const k in h) {
    const v = h[k];
    if (v === undefined) continue;
    if (Array.isArray(v)) for (const x of v) out.push(k, x);
    else out.push(k, String(v));
  }
  return out;
}

/**
 * Sets Expires and Cache-Control as nginx's headers filter does: a backend's own Expires is replaced where
 * it stood, its Cache-Control headers give way to one. `modified` counts from the Last-Modified in `list`
 * (from now when there is none); a negative time or a past date says no-cache.
 */
function addExpires(r: Rq, list: string[], given: Expires): void {
  let exp = given;
  if (given.mode === 'var') {
    const v = given.value.eval(r);
    const e = v === '' ? 'invalid' : parseExpires(v, given.modified);
    if (typeof e === 'string' || e.mode === 'off' || e.mode === 'var') return;
    exp = e;
  }
  if (exp.mode === 'var' || exp.mode === 'off') return;
  let expires: string;
  let cc: string;
  if (exp.mode === 'epoch') {
    expires = 'Thu, 01 Jan 1970 00:00:01 GMT';
    cc = 'no-cache';
  } else if (exp.mode === 'max') {
    expires = 'Thu, 31 Dec 2037 23:55:55 GMT';
    cc = 'max-age=315360000';
  } else {
    const now = Math.floor(Date.now() / 1000) * 1000;
    let at: number;
    if (exp.mode === 'daily') {
      // The next time the clock (local time, as nginx's mktime) shows that time of day.
      const d = new Date(now);
      d.setHours(0, 0, 0, 0);
      at = d.getTime() + exp.ms;
      if (at <= now) {
        d.setDate(d.getDate() + 1);
        at = d.getTime() + exp.ms;
      }
    } else {
      let base = now;
      if (exp.mode === 'modified') {
        for (let i = 0; i < list.length; i += 2) {
          if (list[i]!.toLowerCase() !== 'last-modified') continue;
          const t = Date.parse(list[i + 1]!);
          if (!Number.isNaN(t)) base = t;
          break;
        }
      }
      at = base + exp.ms;
    }
    const maxAge = Math.floor((at - now) / 1000);
    expires = new Date(at).toUTCString();
    cc = exp.ms < 0 || maxAge < 0 ? 'no-cache' : `max-age=${maxAge}`;
  }
  let setE = false;
  let setC = false;
  for (let i = 0; i < list.length; i += 2) {
    const n = list[i]!.toLowerCase();
    if (n === 'expires' && !setE) {
      list[i + 1] = expires;
      setE = true;
    } else if (n === 'cache-control') {
      if (!setC) {
        list[i + 1] = cc;
        setC = true;
      } else {
        list.splice(i, 2);
        i -= 2;
      }
    }
  }
  if (!setE) list.push('Expires', expires);
  if (!setC) list.push('Cache-Control', cc);
}

/**
 * A bit per request header nginx 1.22 refuses to see twice (its "unique" header lines, and Host), 0 for
 * the others. The length is compared first, so most names cost one switch, and nothing is allocated.
 */
function uniqueHeaderBit(name: string): number {
  switch (name.length) {
    case 4:
      return sameName(name, 'host') ? 1 : 0;
    case 6:
      return sameName(name, 'expect') ? 2 : 0;
    case 8:
      return sameName(name, 'if-match') ? 4 : sameName(name, 'if-range') ? 8 : 0;
    case 13:
      return sameName(name, 'authorization') ? 16 : sameName(name, 'content-range') ? 32 : sameName(name, 'if-none-match') ? 64 : 0;
    case 14:
      return sameName(name, 'content-length') ? 128 : 0;
    case 17:
      return sameName(name, 'if-modified-since') ? 256 : sameName(name, 'transfer-encoding') ? 512 : 0;
    case 19:
      return sameName(name, 'if-unmodified-since') ? 1024 : 0;
    default:
      return 0;
  }
}

/**
 * `name` (as long as `lower`) is `lower` in any case. Setting bit 0x20 lowercases a letter and leaves "-"
 * as it is; no other token character becomes a letter or "-" that way.
 */
function sameName(name: string, lower: string): boolean {
  for (let i = 0; i < lower.length; i++) if ((name.charCodeAt(i) | 0x20) !== lower.charCodeAt(i)) return false;
  return true;
}

/** nginx's test for keepalive_disable msie6: MSIE 4, 5, or 6 without "SV1". */
function oldMsie(ua: string | undefined): boolean {
  if (ua === undefined) return false;
  const i = ua.indexOf('MSIE ');
  if (i < 0 || i + 7 >= ua.length || ua[i + 6] !== '.') return false;
  const v = ua[i + 5];
  return v === '4' || v === '5' || (v === '6' && !ua.includes('SV1', i + 8));
}

/** nginx's test for keepalive_disable safari: Safari on Mac OS X, not Chrome. */
function isSafari(ua: string | undefined): boolean {
  return ua !== undefined && ua.includes('Safari/') && ua.includes('Mac OS X') && !ua.includes('Chrome/');
}

function fileTest(kind: 'f' | 'd' | 'e' | 'x', path: string): boolean {
  try {
    const st = statSync(Buffer.from(path, 'latin1'));
    if (kind === 'f') return st.isFile();
    if (kind === 'd') return st.isDirectory();
    // nginx (ngx_is_exec) looks at the owner's execute bit only.
    if (kind === 'x') return (st.mode & 0o100) !== 0;
    return true;
  } catch {
    return false;
  }
}

export type { ServerConf, LocationConf };
