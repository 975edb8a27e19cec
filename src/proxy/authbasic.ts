/**
 * auth_basic: the user file is read at each request that needs it, as nginx reads it (so a changed file takes
 * effect at once), asynchronously. Password formats Node can check: {PLAIN}, {SHA}, {SSHA}, the MD5 crypt of
 * Apache ($apr1$) and glibc ($1$), and glibc's SHA-crypt ($5$, $6$); their public algorithms are written out
 * below. Other formats (DES crypt, bcrypt) would fail every login silently, so a file that has one is refused
 * when the configuration is loaded, and at request time such an entry is a 500 with an error naming the file
 * and line.
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

const SHA256_ORDER = [[0, 10, 20], [21, 1, 11], [12, 22, 2], [3, 13, 23], [24, 4, 14], [15, 25, 5], [6, 16, 26], [27, 7, 17], [18, 28, 8], [9, 19, 29]];
const SHA512_ORDER = [[0, 21, 42], [22, 43, 1], [44, 2, 23], [3, 24, 45], [25, 46, 4], [47, 5, 26], [6, 27, 48], [28, 49, 7], [50, 8, 29], [9, 30, 51],
  [31, 52, 10], [53, 11, 32], [12, 33, 54], [34, 55, 13], [56, 14, 35], [15, 36, 57], [37, 58, 16], [59, 17, 38], [18, 39, 60], [40, 61, 19], [62, 20, 41]];

/** `len` bytes made of `d` repeated (the P and S sequences of SHA-crypt). */
function repeatTo(d: Buffer, len: number): Buffer {
  const out = Buffer.alloc(len);
  for (let i = 0; i < len; i += d.length) d.copy(out, i, 0, Math.min(d.length, len - i));
  return out;
}

/** SHA-crypt (`$5$` SHA-256, `$6$` SHA-512; glibc's public algorithm), with its optional `rounds=N$`. */
export function shaCrypt(pw: Buffer, setting: string): string | null {
  const m = /^\$([56])\$(?:rounds=(\d+)\$)?([^$]{0,16})/.exec(setting);
  if (!m) return null;
  const algo = m[1] === '5' ? 'sha256' : 'sha512';
  const L = m[1] === '5' ? 32 : 64;
  const rounds = m[2] === undefined ? 5000 : Math.min(999999999, Math.max(1000, Number(m[2])));
  const salt = Buffer.from(m[3]!, 'latin1');
  const H = (): ReturnType<typeof createHash> => createHash(algo);
  const B = H().update(pw).update(salt).update(pw).digest();
  const a = H().update(pw).update(salt);
  let i = pw.length;
  for (; i > L; i -= L) a.update(B);
  a.update(B.subarray(0, i));
  for (i = pw.length; i > 0; i >>= 1) a.update(i & 1 ? B : pw);
  const A = a.digest();
  const dp = H();
  for (i = 0; i < pw.length; i++) dp.update(pw);
  const PS = repeatTo(dp.digest(), pw.length);
  const ds = H();
  for (i = 0; i < 16 + A[0]!; i++) ds.update(salt);
  const SS = repeatTo(ds.digest(), salt.length);
  let C = A;
  for (let r = 0; r < rounds; r++) {
    const c = H();
    c.update(r & 1 ? PS : C);
    if (r % 3) c.update(SS);
    if (r % 7) c.update(PS);
    c.update(r & 1 ? C : PS);
    C = c.digest();
  }
  let out = '';
  for (const [x, y, z] of L === 32 ? SHA256_ORDER : SHA512_ORDER) out += to64((C[x!]! << 16) | (C[y!]! << 8) | C[z!]!, 4);
  out += L === 32 ? to64((C[31]! << 8) | C[30]!, 3) : to64(C[63]!, 2);
  return `$${m[1]}$${m[2] === undefined ? '' : `rounds=${m[2]}$`}${m[3]}$${out}`;
}

function same(a: Buffer | string, b: Buffer | string): boolean {
  const x = typeof a === 'string' ? Buffer.from(a, 'latin1') : a;
  const y = typeof b === 'string' ? Buffer.from(b, 'latin1') : b;
  return x.length === y.length && timingSafeEqual(x, y);
}

/** Why a stored password cannot be checked here, or undefined when its format is one tsgi-proxy verifies. */
export function unsupportedFormat(hash: string): string | undefined {
  if (hash.startsWith('{PLAIN}') || hash.startsWith('{SHA}') || hash.startsWith('{SSHA}') || hash.startsWith('$apr1$') || hash.startsWith('$1$') || hash.startsWith('$5$') || hash.startsWith('$6$')) return undefined;
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
  if (hash.startsWith('$5$') || hash.startsWith('$6$')) {
    const h = shaCrypt(pw, hash);
    return h !== null && same(h, hash);
  }
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
