/**
 * auth_basic: the user file is read at each request that needs it, as nginx reads it (so a changed file takes
 * effect at once), asynchronously. Password formats Node can check: {PLAIN}, {SHA}, {SSHA}, and the MD5 crypt
 * of Apache ($apr1$) and glibc ($1$), whose public algorithm is written out below. Other formats (DES crypt,
 * bcrypt, SHA-crypt) would fail every login silently, so a file that has one is refused when the configuration
 * is loaded, and at request time such an entry is a 500 with an error naming the file and line.
 */
import { createHash, timingSafeEqual } from 'node:crypto';

const ITOA64 = './0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';

function to64(v: number, n: number): string {
  let s = '';
  while (n-- > 0) {
    s += ITOA64[v & 0x3f];
    v >>>= 6;
  }
  return s;
}

/** MD5-crypt (`$1$` glibc, `$apr1$` Apache: the same algorithm with another magic string). */
export function md5Crypt(pw: Buffer, magic: string, saltIn: string): string {
  const salt = saltIn.split('$')[0]!.slice(0, 8);
  const md5 = (): ReturnType<typeof createHash> => createHash('md5');
  const alt = md5().update(pw).update(salt).update(pw).digest();
  const ctx = md5().update(pw).update(magic).update(salt);
  for (let i = pw.length; i > 0; i -= 16) ctx.update(alt.subarray(0, Math.min(16, i)));
  for (let i = pw.length; i > 0; i >>= 1) ctx.update(i & 1 ? Buffer.from([0]) : pw.subarray(0, 1));
  let fin = ctx.digest();
  for (let i = 0; i < 1000; i++) {
    const c = md5();
    c.update(i & 1 ? pw : fin);
    if (i % 3) c.update(salt);
    if (i % 7) c.update(pw);
    c.update(i & 1 ? fin : pw);
    fin = c.digest();
  }
  const f = fin;
  const out = to64((f[0]! << 16) | (f[6]! << 8) | f[12]!, 4) + to64((f[1]! << 16) | (f[7]! << 8) | f[13]!, 4)
    + to64((f[2]! << 16) | (f[8]! << 8) | f[14]!, 4) + to64((f[3]! << 16) | (f[9]! << 8) | f[15]!, 4)
    + to64((f[4]! << 16) | (f[10]! << 8) | f[5]!, 4) + to64(f[11]!, 2);
  return `${magic}${salt}$${out}`;
}

function same(a: Buffer | string, b: Buffer | string): boolean {
  const x = typeof a === 'string' ? Buffer.from(a, 'latin1') : a;
  const y = typeof b === 'string' ? Buffer.from(b, 'latin1') : b;
  return x.length === y.length && timingSafeEqual(x, y);
}

/** Why a stored password cannot be checked here, or undefined when its format is one tsgi-proxy verifies. */
export function unsupportedFormat(hash: string): string | undefined {
  if (hash.startsWith('{PLAIN}') || hash.startsWith('{SHA}') || hash.startsWith('{SSHA}') || hash.startsWith('$apr1$') || hash.startsWith('$1$')) return undefined;
  const m = /^\$[^$]*\$/.exec(hash);
  if (m) return `password format "${m[0]}"`;
  if (hash.startsWith('{')) return `password scheme "${hash.slice(0, hash.indexOf('}') + 1)}"`;
  return 'DES crypt password';
}

export function verify(pw: Buffer, hash: string): boolean {
  if (hash.startsWith('{PLAIN}')) return same(pw, hash.slice(7));
  if (hash.startsWith('{SHA}')) return same(createHash('sha1').update(pw).digest(), Buffer.from(hash.slice(5), 'base64'));
  if (hash.startsWith('{SSHA}')) {
    const raw = Buffer.from(hash.slice(6), 'base64');
    if (raw.length <= 20) return false;
    return same(createHash('sha1').update(pw).update(raw.subarray(20)).digest(), raw.subarray(0, 20));
  }
  if (hash.startsWith('$apr1$')) return same(md5Crypt(pw, '$apr1$', hash.slice(6)), hash);
  if (hash.startsWith('$1$')) return same(md5Crypt(pw, '$1$', hash.slice(3)), hash);
  return false;
}

/** The entries of a user file: `user:password[:comment]`, `#` comments and blank lines skipped. */
export function* entries(text: string): Generator<{ user: string; hash: string; line: number }> {
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const l = lines[i]!.replace(/\r$/, '');
    if (l === '' || l.startsWith('#')) continue;
    const c = l.indexOf(':');
    if (c < 0) continue;
    const rest = l.slice(c + 1);
    const c2 = rest.indexOf(':');
    yield { user: l.slice(0, c), hash: c2 < 0 ? rest : rest.slice(0, c2), line: i + 1 };
  }
}

/** The user and password of an `Authorization: Basic` header, or null when there is none usable. */
export function credentials(h: string | undefined): { user: string; pw: Buffer } | null {
  if (h === undefined) return null;
  const m = /^basic +([A-Za-z0-9+/]+={0,2}) *$/i.exec(h);
  if (!m) return null;
  const dec = Buffer.from(m[1]!, 'base64');
  const i = dec.indexOf(0x3a);
  if (i < 0) return null;
  return { user: dec.subarray(0, i).toString('latin1'), pw: dec.subarray(i + 1) };
}
