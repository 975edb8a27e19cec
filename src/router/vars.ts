/**
 * The uwsgi vars of an HTTP request, as PEP 3333's environ wants them and as nginx's uwsgi_params would send
 * them (header names converted once and cached), encoded by the protocol module's encodeVarLists.
 */
import { UwsgiEncodeError, encodeVarLists } from '../protocol/uwsgi.js';

/** Hop-by-hop headers: about this connection, never passed to the app as plain headers (nor back from it). */
export const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade']);

const envNameCache = new Map<string, string | null>();

/**
 * HTTP_* name of a header, or null when it must not reach the app: hop-by-hop headers, Content-Type and
 * Content-Length (passed without the prefix), and names with an underscore, which would be indistinguishable
 * from a dash once converted (the spoofing nginx also guards against).
 */
export function envName(raw: string): string | null {
  let name = envNameCache.get(raw);
  if (name !== undefined) return name;
  const lower = raw.toLowerCase();
  if (HOP_BY_HOP.has(lower) || lower === 'content-type' || lower === 'content-length' || lower.includes('_') || !/^[a-z0-9-]+$/.test(lower)) {
    name = null;
  } else {
    name = `HTTP_${lower.toUpperCase().replace(/-/g, '_')}`;
  }
  if (envNameCache.size < 4096) envNameCache.set(raw, name);
  return name;
}

/** Percent-decodes a path into a byte string (each char code is one byte), as nginx's $document_uri. */
export function decodePath(path: string): string {
  if (path.indexOf('%') === -1) return path;
  let out = '';
  for (let i = 0; i < path.length; i++) {
    const c = path.charCodeAt(i);
    if (c === 0x25 && i + 2 < path.length) {
      const h = hexValue(path.charCodeAt(i + 1));
      const l = hexValue(path.charCodeAt(i + 2));
      if (h >= 0 && l >= 0) {
        out += String.fromCharCode((h << 4) | l);
        i += 2;
        continue;
      }
    }
    out += path[i];
  }
  return out;
}

function hexValue(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 65 && c <= 70) return c - 55;
  if (c >= 97 && c <= 102) return c - 87;
  return -1;
}

export interface ListenerInfo {
  /** SERVER_PORT: the port the request came in on ('' for a Unix socket). */
  port: string;
  https: boolean;
  /** http-to-https: requests are redirected, never built into vars. */
  redirectHttps?: boolean;
}

/** What the vars need of a parsed request head (src/router/client.ts's requests carry it). */
export interface RequestHead {
  readonly method: string;
  readonly url: string;
  /** SERVER_PROTOCOL, e.g. HTTP/1.1. */
  readonly protocol: string;
  /** [name, value, name, value, ...] as received. */
  readonly rawHeaders: string[];
  readonly host: string | undefined;
  readonly contentType: string | undefined;
  /** The request said how its body is framed (Content-Length or Transfer-Encoding). */
  readonly framed: boolean;
}

/** The client connection's addresses, read once per connection. */
export interface PeerInfo {
  readonly remoteAddr: string;
  readonly remotePort: string;
  readonly localAddr: string;
  /** https with a client certificate: the vars that describe it (HTTPS_DN, ...). */
  readonly certVars?: { readonly keys: readonly string[]; readonly values: readonly string[] };
}

export function stripMapped(addr: string | undefined): string {
  if (!addr) return '';
  return addr.startsWith('::ffff:') ? addr.slice(7) : addr;
}

/**
 * Builds the uwsgi packet (4-byte header + vars) for `req`, whose body is `bodyLength` bytes.
 * Returns undefined when a string holds a character that is not a byte (cannot be sent as latin-1).
 */
export function buildVars(req: RequestHead, peer: PeerInfo, listener: ListenerInfo, bodyLength: number): Buffer | undefined {
  const url = req.url;
  const q = url.indexOf('?');
  const rawPath = q === -1 ? url : url.slice(0, q);
  const query = q === -1 ? '' : url.slice(q + 1);
  const host = req.host ?? '';
  let serverName = host;
  if (host.startsWith('[')) serverName = host.slice(0, host.indexOf(']') + 1);
  else {
    const colon = host.indexOf(':');
    if (colon !== -1) serverName = host.slice(0, colon);
  }
  if (!serverName) serverName = peer.localAddr || 'localhost';

  const keys: string[] = ['REQUEST_METHOD', 'REQUEST_URI', 'PATH_INFO', 'QUERY_STRING', 'SERVER_PROTOCOL', 'SERVER_NAME', 'SERVER_PORT', 'REMOTE_ADDR', 'REMOTE_PORT', 'REQUEST_SCHEME'];
  const values: string[] = [req.method, url, decodePath(rawPath), query, req.protocol, serverName, listener.port, peer.remoteAddr, peer.remotePort, listener.https ? 'https' : 'http'];
  if (listener.https) {
    keys.push('HTTPS');
    values.push('on');
    const cv = peer.certVars;
    if (cv !== undefined) {
      keys.push(...cv.keys);
      values.push(...cv.values);
    }
  }
  if (bodyLength > 0 || req.framed) {
    keys.push('CONTENT_LENGTH');
    values.push(String(bodyLength));
  }
  const ct = req.contentType;
  if (ct !== undefined) {
    keys.push('CONTENT_TYPE');
    values.push(ct);
  }

  // Headers, repeated ones joined as HTTP allows (cookies with "; "). Most requests repeat none, so the
  // index of names already seen is only built when many headers map to env names (a linear scan is cheaper
  // for the usual handful, and the index keeps a flood of headers from costing quadratic time).
  const raw = req.rawHeaders;
  const firstHeader = keys.length;
  let firstIndex: Map<string, number> | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = envName(raw[i]!);
    if (name === null) continue;
    let seen = -1;
    if (firstIndex === undefined) {
      for (let j = firstHeader; j < keys.length; j++) {
        if (keys[j] === name) {
          seen = j;
          break;
        }
      }
    } else seen = firstIndex.get(name) ?? -1;
    if (seen !== -1) {
      values[seen] += (name === 'HTTP_COOKIE' ? '; ' : ', ') + raw[i + 1]!;
      continue;
    }
    firstIndex?.set(name, keys.length);
    keys.push(name);
    values.push(raw[i + 1]!);
    if (firstIndex === undefined && keys.length - firstHeader > 32) {
      firstIndex = new Map();
      for (let j = firstHeader; j < keys.length; j++) firstIndex.set(keys[j]!, j);
    }
  }

  try {
    return encodeVarLists(keys, values, keys.length);
  } catch (err) {
    if (err instanceof UwsgiEncodeError) return undefined;
    throw err;
  }
}
