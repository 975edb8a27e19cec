/**
 * What the transports attach to node's request objects, and the CGI view of a request that the WSGI and
 * Fetch adapters need. The model every contract is adapted from is node's own IncomingMessage and
 * ServerResponse: node:http makes them for HTTP sockets, uwsgi.ts makes them for uwsgi connections.
 *
 * A uwsgi request keeps the vars the front server sent (REMOTE_ADDR, SERVER_NAME, HTTPS...), as the Python
 * worker's environ does; an HTTP request's CGI vars are derived from the request as nginx's uwsgi_params would.
 */
import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import { decodePath, envName } from '../../router/vars.js';

/** The uwsgi vars of a request that came over a uwsgi socket, in wire order. */
export const UWSGI_VARS = Symbol('tsgi.uwsgiVars');
/** On an https connection with a client certificate: its vars (HTTPS_DN, ...), set once per connection. */
export const CERT_VARS = Symbol('tsgi.certVars');
/** Set on each listening server: what SERVER_PORT and the scheme are for requests that arrive on it. */
export const LISTENER_INFO = Symbol('tsgi.listenerInfo');

export interface ListenerInfo {
  port: string;
  https: boolean;
}

type TaggedRequest = IncomingMessage & { [UWSGI_VARS]?: Array<[string, string]> };
type TaggedSocket = Socket & { server?: { [LISTENER_INFO]?: ListenerInfo } };

export function uwsgiVars(req: IncomingMessage): Array<[string, string]> | undefined {
  return (req as TaggedRequest)[UWSGI_VARS];
}

export function listenerInfo(req: IncomingMessage): ListenerInfo {
  return (req.socket as TaggedSocket | null)?.server?.[LISTENER_INFO] ?? { port: '', https: false };
}

function stripMapped(addr: string | undefined): string {
  if (!addr) return '';
  return addr.startsWith('::ffff:') ? addr.slice(7) : addr;
}

/** The CGI vars of a request (PEP 3333's environ without the wsgi.* keys). */
export function cgiVars(req: IncomingMessage): Record<string, string> {
  const out: Record<string, string> = {};
  const vars = uwsgiVars(req);
  if (vars) {
    for (let i = 0; i < vars.length; i++) out[vars[i]![0]] = vars[i]![1];
    if (out.SCRIPT_NAME === undefined) out.SCRIPT_NAME = '';
    if (out.PATH_INFO === undefined) out.PATH_INFO = '';
    if (out.QUERY_STRING === undefined) out.QUERY_STRING = '';
    return out;
  }
  const url = req.url ?? '/';
  const q = url.indexOf('?');
  const info = listenerInfo(req);
  const host = req.headers.host ?? '';
  let serverName = host.startsWith('[') ? host.slice(0, host.indexOf(']') + 1) : host.split(':', 1)[0]!;
  if (!serverName) serverName = stripMapped(req.socket?.localAddress) || 'localhost';
  out.REQUEST_METHOD = req.method ?? 'GET';
  out.REQUEST_URI = url;
  out.SCRIPT_NAME = '';
  out.PATH_INFO = decodePath(q === -1 ? url : url.slice(0, q));
  out.QUERY_STRING = q === -1 ? '' : url.slice(q + 1);
  out.SERVER_PROTOCOL = `HTTP/${req.httpVersion}`;
  out.SERVER_NAME = serverName;
  out.SERVER_PORT = info.port;
  out.REMOTE_ADDR = stripMapped(req.socket?.remoteAddress);
  out.REMOTE_PORT = req.socket?.remotePort === undefined ? '' : String(req.socket.remotePort);
  out.REQUEST_SCHEME = info.https ? 'https' : 'http';
  if (info.https) {
    out.HTTPS = 'on';
    const cv = (req.socket as Socket & { [CERT_VARS]?: { keys: string[]; values: string[] } } | null)?.[CERT_VARS];
    if (cv !== undefined) for (let i = 0; i < cv.keys.length; i++) out[cv.keys[i]!] = cv.values[i]!;
  }
  const cl = req.headers['content-length'];
  if (cl !== undefined) out.CONTENT_LENGTH = cl;
  const ct = req.headers['content-type'];
  if (ct !== undefined) out.CONTENT_TYPE = ct;
  const raw = req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) {
    const name = envName(raw[i]!);
    if (name === null) continue;
    const seen = out[name];
    out[name] = seen === undefined ? raw[i + 1]! : seen + (name === 'HTTP_COOKIE' ? '; ' : ', ') + raw[i + 1]!;
  }
  return out;
}

/** PATH_INFO: the front server's (uwsgi), or the decoded path of the request line (HTTP). */
export function pathInfo(req: IncomingMessage): string {
  const vars = uwsgiVars(req);
  if (vars) {
    for (let i = 0; i < vars.length; i++) if (vars[i]![0] === 'PATH_INFO') return vars[i]![1];
    return '';
  }
  const url = req.url ?? '/';
  const q = url.indexOf('?');
  return decodePath(q === -1 ? url : url.slice(0, q));
}

/** http or https, as the front server told (uwsgi: UWSGI_SCHEME, HTTPS, REQUEST_SCHEME) or the listener is. */
export function urlScheme(req: IncomingMessage): 'http' | 'https' {
  const vars = uwsgiVars(req);
  if (!vars) return listenerInfo(req).https ? 'https' : 'http';
  let scheme: 'http' | 'https' = 'http';
  for (const [k, v] of vars) {
    if (k === 'UWSGI_SCHEME' || k === 'REQUEST_SCHEME') {
      if (v === 'https' || v === 'http') scheme = v;
    } else if (k === 'HTTPS' && (v === 'on' || v === '1')) scheme = 'https';
  }
  return scheme;
}

/** The request's absolute URL (for the Fetch contract's Request). */
export function requestUrl(req: IncomingMessage): string {
  let host = req.headers.host;
  if (!host) {
    const vars = uwsgiVars(req);
    const get = (k: string): string | undefined => vars?.find((v) => v[0] === k)?.[1];
    const name = get('SERVER_NAME') ?? (stripMapped(req.socket?.localAddress) || 'localhost');
    const port = get('SERVER_PORT') ?? listenerInfo(req).port;
    host = port ? `${name}:${port}` : name;
  }
  const path = req.url && req.url.startsWith('/') ? req.url : `/${req.url ?? ''}`;
  return `${urlScheme(req)}://${host}${path}`;
}

/** The client's address, for request lines. */
export function remoteAddr(req: IncomingMessage): string {
  const vars = uwsgiVars(req);
  if (vars) {
    for (const [k, v] of vars) if (k === 'REMOTE_ADDR') return v;
    return '';
  }
  return stripMapped(req.socket?.remoteAddress);
}
