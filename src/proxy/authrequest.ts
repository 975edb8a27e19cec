/**
 * auth_request (nginx's ngx_http_auth_request_module): before the content phase, a subrequest to a URI of the
 * server (usually an internal location with a proxy_pass or uwsgi_pass to an auth service) decides on
 * access. It carries the client's headers, no body, and the GET method; it runs through location search and
 * the location's script and content like any request, without the access phase (as nginx's subrequests)
 * and without an access log line. Its answer: 2xx lets the request on, 401 and 403 go to the client (a 401
 * with the subrequest's WWW-Authenticate), anything else is a 500. auth_request_set copies values computed
 * on the subrequest ($upstream_http_x_user...) into the request's variables, whatever the status.
 */
import type { ServerResponse } from 'node:http';
import { Writable } from 'node:stream';
import type { LocConf } from './conf/model.js';
import type { Pipeline } from './pipeline.js';
import { Rq } from './request.js';

/**
 * What the subrequest answers into, in place of a client connection: the status and header list are kept,
 * the body is dropped. It offers the parts of ServerResponse the pipeline, static files and the upstream
 * relay use; a Writable, so a file piped into it ends it as a response would ('finish', then 'close').
 */
class SubResponse extends Writable {
  headersSent = false;
  statusCode = 200;
  shouldKeepAlive = true;
  useChunkedEncodingByDefault = true;
  headers: string[] = [];

  constructor() {
    super({
      write(_chunk, _enc, cb): void {
        cb();
      },
    });
  }

  writeHead(code: number, _reason?: unknown, list?: unknown): this {
    this.statusCode = code;
    this.headersSent = true;
    if (Array.isArray(list)) this.headers = list as string[];
    return this;
  }

  getHeader(name: string): string | undefined {
    const want = name.toLowerCase();
    const h = this.headers;
    for (let i = 0; i < h.length; i += 2) if (h[i]!.toLowerCase() === want) return h[i + 1];
    return undefined;
  }

  flushHeaders(): void {}

  addTrailers(): void {}
}

/**
 * Runs the auth subrequest of `r` (whose location has `auth_request URI`); `done(0)` lets the request on,
 * `done(status)` refuses it with that status (401 with r.wwwAuthenticate set from the subrequest, 403, 500).
 * Nothing is called when the client went away meanwhile.
 */
export function authRequest(p: Pipeline, r: Rq, conf: LocConf, done: (status: number) => void): void {
  const res = new SubResponse();
  const sub = new Rq(r.req, res as unknown as ServerResponse, r.group, r.server, conf.authRequest!, '', r.host, r.requestUri);
  sub.parent = r;
  sub.method = 'GET';
  sub.internal = true;
  sub.nth = r.nth;
  sub.realAddr = r.realAddr;
  sub.realPort = r.realPort;
  // Limits are applied once per client request (nginx checks the main request's state).
  sub.limitConnStatus = r.limitConnStatus;
  sub.limitReqStatus = r.limitReqStatus;
  // A subrequest shares the request's variables (nginx's sr->variables = r->variables).
  sub.vars = r.vars ??= new Map();
  const gone = (): void => sub.relay?.clientClosed();
  r.res.once('close', gone);
  res.once('close', () => {
    r.res.off('close', gone);
    if (r.res.destroyed || r.res.headersSent) return;
    const status = res.headersSent ? sub.status : 500;
    const sets = conf.authRequestSet;
    if (sets !== undefined) for (const s of sets) r.vars!.set(s.name, s.value.eval(sub));
    if (status >= 200 && status < 300) {
      done(0);
      return;
    }
    if (status === 401) {
      // Added to a challenge auth_basic already set (satisfy any: both are offered, as nginx does).
      const challenge = res.getHeader('www-authenticate');
      if (challenge !== undefined) r.wwwAuthenticate = r.wwwAuthenticate === null ? challenge : [r.wwwAuthenticate, challenge].flat();
      done(401);
      return;
    }
    if (status === 403) {
      done(403);
      return;
    }
    p.log(r, 'error', `auth request unexpected status: ${status}`);
    done(500);
  });
  p.findAndRun(sub);
}
