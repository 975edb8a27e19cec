/**
 * The uwsgi vars of an HTTP request, as PEP 3333's environ wants them and as nginx's uwsgi_params would send
 * them: built straight into one Buffer (one allocation per request, header names converted once and cached).
 */
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

  const kv: string[] = [
    'REQUEST_METHOD', req.method,
    'REQUEST_URI', url,
    'PATH_INFO', decodePath(rawPath),
    'QUERY_STRING', query,
    'SERVER_PROTOCOL', req.protocol,
    'SERVER_NAME', serverName,
    'SERVER_PORT', listener.port,
    'REMOTE_ADDR', peer.remoteAddr,
    'REMOTE_PORT', peer.remotePort,
    'REQUEST_SCHEME', listener.https ? 'https' : 'http',
  ];
  if (listener.https) kv.push('HTTPS', 'on');
  if (bodyLength > 0 || req.framed) kv.push('CONTENT_LENGTH', String(bodyLength));
  const ct = req.contentType;
  if (ct !== undefined) kv.push('CONTENT_TYPE', ct);

  // Headers, repeated ones joined as HTTP allows (cookies with "; "). Most requests repeat none, so the
  // index of names already seen is only built when a second header maps to an env name.
  const raw = req.rawHeaders;
  const firstHeader = kv.length;
  let firstIndex: Map<string, number> | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = envName(raw[i]!);
    if (name === null) continue;
    if (firstIndex === undefined) {
      // Linear scan while few headers are in: cheaper than a Map for the usual handful.
      let seen = -1;
      for (let j = firstHeader; j < kv.length; j += 2) {
        if (kv[j] === name) {
          seen = j + 1;
          break;
        }
      }
      if (seen === -1) {
        kv.push(name, raw[i + 1]!);
        if (kv.length - firstHeader > 64) {
          firstIndex = new Map();
          for (let j = firstHeader; j < kv.length; j += 2) if (!firstIndex.has(kv[j]!)) firstIndex.set(kv[j]!, j + 1);
        }
      } else kv[seen] += (name === 'HTTP_COOKIE' ? '; ' : ', ') + raw[i + 1]!;
      continue;
    }
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
