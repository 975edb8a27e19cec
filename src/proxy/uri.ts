/**
 * Request path normalisation, as nginx does before matching locations: percent-decoding, "." and ".."
 * segments, and (with merge_slashes) runs of "/" made one. Pure functions; null means "400 Bad Request".
 * The result is a byte string (latin1), like every string node:http hands out.
 */

function hexVal(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 65 && c <= 70) return c - 55;
  if (c >= 97 && c <= 102) return c - 87;
  return -1;
}

/** Decodes %XX (bytes, not UTF-8); null on a malformed escape or an encoded NUL. */
export function percentDecode(s: string): string | null {
  if (s.indexOf('%') < 0) return s;
  let out = '';
  let last = 0;
  for (let i = 0; i < s.length; i++) {
    if (s.charCodeAt(i) !== 37) continue;
    const h = hexVal(s.charCodeAt(i + 1));
    const l = hexVal(s.charCodeAt(i + 2));
    if (h < 0 || l < 0) return null;
    const b = h * 16 + l;
    if (b === 0) return null;
    out += s.slice(last, i) + String.fromCharCode(b);
    i += 2;
    last = i + 1;
  }
  return out + s.slice(last);
}

/** Normalises a path that starts with "/". Returns null when it is invalid or climbs above the root. */
export function normalizePath(raw: string, mergeSlashes: boolean): string | null {
  if (raw.charCodeAt(0) !== 47) return null;
  const decoded = percentDecode(raw);
  if (decoded === null) return null;
  // Fast path: nothing to resolve.
  if (decoded.indexOf('/.') < 0 && (!mergeSlashes || decoded.indexOf('//') < 0)) return decoded;
  const segs = decoded.split('/');
  const out: string[] = [];
  for (let i = 1; i < segs.length; i++) {
    const seg = segs[i]!;
    const lastSeg = i === segs.length - 1;
    if (seg === '.') {
      if (lastSeg) out.push('');
      continue;
    }
    if (seg === '..') {
      if (out.length === 0) return null;
      out.pop();
      if (lastSeg) out.push('');
      continue;
    }
    if (seg === '' && mergeSlashes && !lastSeg) continue;
    out.push(seg);
  }
  return '/' + out.join('/');
}

/** Splits a request target into path and query (without "?"); absolute-form targets give their host too. */
export function splitTarget(target: string): { path: string; query: string; host: string | undefined } | null {
  let host: string | undefined;
  const hashAt = target.indexOf('#');
  let rest = hashAt < 0 ? target : target.slice(0, hashAt);
  if (rest.charCodeAt(0) !== 47) {
    const m = /^https?:\/\/([^/?#]*)/i.exec(rest);
    if (!m) return null;
    host = m[1]!;
    rest = rest.slice(m[0].length);
    if (rest === '' || rest.charCodeAt(0) === 63) rest = '/' + rest;
  }
  const q = rest.indexOf('?');
  const path = q < 0 ? rest : rest.slice(0, q);
  return { path, query: q < 0 ? '' : rest.slice(q + 1), host };
}

/** Escapes a path for a Location header or an HTML link: bytes outside the safe set become %XX. */
export function escapeUri(s: string): string {
  let out = '';
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c <= 0x20 || c >= 0x7f || c === 0x22 || c === 0x23 || c === 0x25 || c === 0x3f || c === 0x3c || c === 0x3e || c === 0x5c || c === 0x5e || c === 0x60 || c === 0x7b || c === 0x7c || c === 0x7d) {
      out += '%' + (c < 16 ? '0' : '') + c.toString(16).toUpperCase();
    } else out += s[i];
  }
  return out;
}

/**
 * Validates and lowercases a Host value, dropping the port; null when it is not a valid host. As nginx: an
 * empty name (after a final dot is dropped), "..", "/", NUL and control characters are refused, in an IPv6
 * literal too.
 */
export function normalizeHost(h: string): string | null {
  let host = h;
  if (host.startsWith('[')) {
    const end = host.indexOf(']');
    if (end < 0) return null;
    const rest = host.slice(end + 1);
    if (rest !== '' && !/^:\d*$/.test(rest)) return null;
    const literal = host.slice(0, end + 1);
    if (literal.includes('/') || literal.includes('..') || /[\x00-\x20\x7f]/.test(literal)) return null;
    return literal.toLowerCase();
  }
  const colon = host.indexOf(':');
  if (colon >= 0) {
    if (!/^\d*$/.test(host.slice(colon + 1))) return null;
    host = host.slice(0, colon);
  }
  if (host.includes('..')) return null;
  if (host.endsWith('.')) host = host.slice(0, -1);
  if (host === '' || host.includes('/') || host.includes('\\') || host.startsWith('.') || /[\x00-\x20\x7f]/.test(host)) return null;
  return host.toLowerCase();
}
