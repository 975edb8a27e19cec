/**
 * The uwsgi vars of an HTTP request, as PEP 3333's environ wants them and as nginx's uwsgi_params would send
 * them: built straight into one Buffer (one allocation per request, header names converted once and cached).
 */
import type { IncomingMessage } from 'node:http';

/** Hop-by-hop headers: about this connection, never passed to the app as plain headers. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade']);

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
}

function stripMapped(addr: string | undefined): string {
  if (!addr) return '';
  return addr.startsWith('::ffff:') ? addr.slice(7) : addr;
}

/**
 * Builds the uwsgi packet (4-byte header + vars) for `req`, whose body is `bodyLength` bytes.
 * Returns undefined when a string holds a character that is not a byte (cannot be sent as latin-1).
 */
export function buildVars(req: IncomingMessage, listener: ListenerInfo, bodyLength: number): Buffer | undefined {
  const url = req.url ?? '/';
  const q = url.indexOf('?');
  const rawPath = q === -1 ? url : url.slice(0, q);
  const query = q === -1 ? '' : url.slice(q + 1);
  const sock = req.socket;
  const host = req.headers.host ?? '';
  let serverName = host;
  if (host.startsWith('[')) serverName = host.slice(0, host.indexOf(']') + 1);
  else {
    const colon = host.indexOf(':');
    if (colon !== -1) serverName = host.slice(0, colon);
  }
  if (!serverName) serverName = stripMapped(sock.localAddress) || 'localhost';

  const kv: string[] = [
    'REQUEST_METHOD', req.method ?? 'GET',
    'REQUEST_URI', url,
    'PATH_INFO', decodePath(rawPath),
    'QUERY_STRING', query,
    'SERVER_PROTOCOL', `HTTP/${req.httpVersion}`,
    'SERVER_NAME', serverName,
    'SERVER_PORT', listener.port,
    'REMOTE_ADDR', stripMapped(sock.remoteAddress),
    'REMOTE_PORT', sock.remotePort === undefined ? '' : String(sock.remotePort),
    'REQUEST_SCHEME', listener.https ? 'https' : 'http',
  ];
  if (listener.https) kv.push('HTTPS', 'on');
  if (bodyLength > 0 || req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined) {
    kv.push('CONTENT_LENGTH', String(bodyLength));
  }
  const ct = req.headers['content-type'];
  if (ct !== undefined) kv.push('CONTENT_TYPE', ct);

  // Headers, repeated ones joined as HTTP allows (cookies with "; ").
  const raw = req.rawHeaders;
  const firstIndex = new Map<string, number>();
  for (let i = 0; i < raw.length; i += 2) {
    const name = envName(raw[i]!);
    if (name === null) continue;
    const seen = firstIndex.get(name);
    if (seen === undefined) {
      firstIndex.set(name, kv.length + 1);
      kv.push(name, raw[i + 1]!);
    } else {
      kv[seen] += (name === 'HTTP_COOKIE' ? '; ' : ', ') + raw[i + 1]!;
    }
  }

  let size = 0;
  for (let i = 0; i < kv.length; i++) size += 2 + kv[i]!.length;
  if (size > 0xffff) return undefined;
  const buf = Buffer.allocUnsafe(4 + size);
  buf[0] = 0;
  buf[1] = size & 0xff;
  buf[2] = size >> 8;
  buf[3] = 0;
  let off = 4;
  for (let i = 0; i < kv.length; i++) {
    const s = kv[i]!;
    const n = s.length;
    buf[off] = n & 0xff;
    buf[off + 1] = n >> 8;
    off += 2;
    if (buf.write(s, off, 'latin1') !== n) return undefined;
    off += n;
  }
  return buf;
}
