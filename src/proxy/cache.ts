/**
 * proxy_cache / uwsgi_cache: backend responses stored on disk, one file per key, so the cache is shared by
 * the worker processes and survives a reload. A file is named as nginx names it (the md5 of the key in hex,
 * under `levels` directories cut from the end of the hash); its content is tsgi-proxy's own format:
 *
 *   "TSGC1\n" | u32 big-endian length of the metadata | metadata (JSON, UTF-8) | body bytes
 *
 * The metadata holds the key (so a hash collision is a miss), the backend's status, reason and headers as
 * received, when the entry stops being fresh, the request header values a Vary named, and the body's length
 * (a file whose body is not that long, or whose metadata is not of that shape, is a miss). A file is written
 * to a temporary name beside its final one and renamed into place, so a reader sees a whole entry or none.
 *
 * Per worker process (documented): min_uses counts, the "updating" state for *_cache_use_stale updating,
 * and the sweep that applies `inactive` and `max_size` (every worker sweeps; removing a missing file is fine).
 */
import { createHash } from 'node:crypto';
import { mkdir, open, readdir, rename, stat, unlink, utimes, writeFile, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { CacheZone, UpstreamSettings } from './conf/model.js';
import type { Rq } from './request.js';

const MAGIC = Buffer.from('TSGC1\n', 'latin1');
const HEAD_LEN = MAGIC.length + 4;
/** Bodies are gathered in memory before they are written: a larger response is passed on, not stored. */
export const MAX_ENTRY = 64 * 1024 * 1024;

export interface CachedResponse {
  key: string;
  status: number;
  reason: string;
  /** The backend's headers as received (name, value, ...). */
  headers: string[];
  /** Epoch ms after which the entry is stale (the last ms of the second nginx's valid_sec names). */
  validUntil: number;
  /** Request header (lower-case name) values the response varied on. */
  vary: Array<[string, string]> | undefined;
  body: Buffer;
}

export function entryFile(zone: CacheZone, hash: string): string {
  let p = zone.path;
  let end = hash.length;
  for (const n of zone.levels) {
    p += '/' + hash.slice(end - n, end);
    end -= n;
  }
  return p + '/' + hash;
}

/**
 * Entries this worker read lately, kept in memory (up to 1 MiB each, 32 MiB in all, least recently used
 * dropped first) and trusted while a stat shows the same inode and size: a HIT then costs one stat instead
 * of open, fstat, read and close. A replaced entry is a new inode (rename), a removed one fails the stat.
 */
const MEM_ENTRY = 1024 * 1024;
const MEM_TOTAL = 32 * 1024 * 1024;
const mem = new Map<string, { e: CachedResponse; ino: number; size: number }>();
let memBytes = 0;

function forget(file: string): void {
  const m = mem.get(file);
  if (m === undefined) return;
  mem.delete(file);
  memBytes -= m.size;
}

export async function readEntry(file: string): Promise<CachedResponse | null> {
  const m = mem.get(file);
  if (m !== undefined) {
    try {
      const st = await stat(file);
      if (st.ino === m.ino && st.size === m.size) {
        mem.delete(file);
        mem.set(file, m);
        return m.e;
      }
    } catch {
      // removed: read below fails too
    }
    forget(file);
  }
  let buf: Buffer;
  let ino: number;
  let fh: FileHandle | undefined;
  try {
    fh = await open(file, 'r');
    const st = await fh.stat();
    ino = st.ino;
    buf = await fh.readFile();
  } catch {
    return null;
  } finally {
    await fh?.close().catch(() => undefined);
  }
  let e: CachedResponse;
  try {
    if (buf.length < HEAD_LEN || !buf.subarray(0, MAGIC.length).equals(MAGIC)) return null;
    const n = buf.readUInt32BE(MAGIC.length);
    const meta = JSON.parse(buf.toString('utf8', HEAD_LEN, HEAD_LEN + n)) as Omit<CachedResponse, 'body'> & { size?: unknown };
    // A file cut short or damaged (a full disk, a crash, a hand edit) is a MISS: the body must be as long as
    // written, and the metadata of the shape served from, or a HIT would send a part or throw.
    if (meta.size !== buf.length - HEAD_LEN - n || !wellFormed(meta)) return null;
    e = { key: meta.key, status: meta.status, reason: meta.reason, headers: meta.headers, validUntil: meta.validUntil, vary: meta.vary, body: buf.subarray(HEAD_LEN + n) };
  } catch {
    return null;
  }
  if (buf.length <= MEM_ENTRY) {
    forget(file);
    mem.set(file, { e, ino, size: buf.length });
    memBytes += buf.length;
    for (const [k] of mem) {
      if (memBytes <= MEM_TOTAL) break;
      forget(k);
    }
  }
  return e;
}

function wellFormed(m: Omit<CachedResponse, 'body'>): boolean {
  const strings = (a: unknown): boolean => Array.isArray(a) && a.every((x) => typeof x === 'string');
  return typeof m.key === 'string' && Number.isInteger(m.status) && m.status >= 100 && m.status <= 999 && typeof m.reason === 'string' &&
    strings(m.headers) && m.headers.length % 2 === 0 && typeof m.validUntil === 'number' &&
    (m.vary === undefined || (Array.isArray(m.vary) && m.vary.every((v) => strings(v) && v.length === 2)));
}

let tmpSeq = 0;

async function writeEntry(file: string, e: CachedResponse): Promise<void> {
  const meta = Buffer.from(JSON.stringify({ key: e.key, status: e.status, reason: e.reason, headers: e.headers, validUntil: e.validUntil, vary: e.vary, size: e.body.length }), 'utf8');
  const head = Buffer.allocUnsafe(HEAD_LEN);
  MAGIC.copy(head);
  head.writeUInt32BE(meta.length, MAGIC.length);
  const tmp = `${file}.${process.pid}.${++tmpSeq}.tmp`;
  try {
    await mkdir(dirname(file), { recursive: true, mode: 0o700 });
    await writeFile(tmp, Buffer.concat([head, meta, e.body]), { mode: 0o600 });
    await rename(tmp, file);
  } catch {
    await unlink(tmp).catch(() => undefined);
  }
}

/** The request's side of one cached key: what was found, and the response being stored. */
export class CacheCtx {
  readonly file: string;
  /** An expired entry, kept to answer with when the backend fails (*_cache_use_stale). */
  stale: CachedResponse | null = null;
  /** A HEAD sent upstream as GET (*_cache_convert_head), so the stored body is whole. */
  readonly converted: boolean;
  /** The response being relayed is stored, fresh for this long (0: not stored). */
  storeMs = 0;
  /** A MISS with a Range: the client is answered from the stored copy once it is complete. */
  hold = false;
  chunks: Buffer[] = [];
  size = 0;
  private vary: Array<[string, string]> | undefined;
  private status = 0;
  private reason = '';
  private headers: string[] = [];
  /** A HEAD passed as HEAD (convert_head off): its response has no body to store. */
  private readonly noBody: boolean;

  constructor(
    readonly zone: CacheZone,
    readonly key: string,
    readonly st: UpstreamSettings,
    r: Rq,
  ) {
    this.file = entryFile(zone, createHash('md5').update(key, 'latin1').digest('hex'));
    this.converted = r.method === 'HEAD' && st.cacheConvertHead === true;
    this.noBody = r.method === 'HEAD' && !this.converted;
  }

  /** A new try on another peer: nothing of the previous one is kept. */
  reset(): void {
    this.storeMs = 0;
    this.hold = false;
    this.chunks = [];
    this.size = 0;
  }

  /** Decides, from the final response's head, whether it is stored (nginx's rules; see `validFor`). */
  decide(r: Rq, status: number, reason: string, headers: string[]): void {
    const st = this.st;
    let ms = this.noBody ? 0 : validFor(st, status, headers);
    if (ms > 0 && st.noCache!.length && st.noCache!.some((t) => truthy(t.eval(r)))) ms = 0;
    if (ms > 0 && !usedEnough(this.file, st.cacheMinUses!)) ms = 0;
    this.storeMs = ms;
    if (ms <= 0) return;
    this.status = status;
    this.reason = reason;
    this.headers = headers;
    let vary: string | undefined;
    for (let i = 0; i < headers.length; i += 2) if (headers[i]!.toLowerCase() === 'vary' && !st.ignoreHeaders!.has('vary')) vary = vary === undefined ? headers[i + 1]! : `${vary},${headers[i + 1]}`;
    if (vary !== undefined) this.vary = varyValues(r, vary);
    // Ranges on a stored response: one range (nginx's single_range for a cacheable response being received).
    if (r.req.headers.range !== undefined && status === 200 && hasHeader(headers, 'accept-ranges')) this.hold = true;
  }

  /**
   * Keeps a body chunk for the stored copy. false once the body passed MAX_ENTRY (or the zone's max_size,
   * which it could not stay in): the response is then not
   * stored (the chunks kept so far are handed back with `release`, for a held response to go out whole).
   */
  capture(chunk: Buffer): boolean {
    this.chunks.push(chunk);
    this.size += chunk.length;
    if (this.size <= (this.zone.maxSize > 0 && this.zone.maxSize < MAX_ENTRY ? this.zone.maxSize : MAX_ENTRY)) return true;
    this.storeMs = 0;
    return false;
  }

  release(): Buffer[] {
    const c = this.chunks;
    this.chunks = [];
    this.size = 0;
    this.hold = false;
    return c;
  }

  /**
   * Stores the response just received; resolves once the file is in place, so the client's response ends
   * after it (as nginx renames its temp file before finishing): a next request, in any worker, finds it.
   */
  async store(): Promise<CachedResponse> {
    const body = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.size);
    // Whole seconds, as nginx keeps valid_sec: fresh through the second the validity ends in.
    const e: CachedResponse = { key: this.key, status: this.status, reason: this.reason, headers: this.headers, validUntil: (Math.floor(Date.now() / 1000) + Math.floor(this.storeMs / 1000)) * 1000 + 999, vary: this.vary, body };
    this.chunks = [];
    await writeEntry(this.file, e);
    return e;
  }
}

function truthy(v: string): boolean {
  return v !== '' && v !== '0';
}

/** *_cache_bypass: any value that is not empty and not "0". */
export function bypassed(r: Rq, st: UpstreamSettings): boolean {
  const list = st.cacheBypass!;
  for (let i = 0; i < list.length; i++) if (truthy(list[i]!.eval(r))) return true;
  return false;
}

export function hasHeader(headers: string[], lower: string): boolean {
  for (let i = 0; i < headers.length; i += 2) if (headers[i]!.toLowerCase() === lower) return true;
  return false;
}

function varyValues(r: Rq, vary: string): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (const n of vary.split(',')) {
    const name = n.trim().toLowerCase();
    if (name === '') continue;
    const v = r.req.headers[name];
    out.push([name, v === undefined ? '' : Array.isArray(v) ? v.join(', ') : v]);
  }
  return out;
}

/** Whether a stored entry answers this request: the same key, and the same values of the headers it varied on. */
export function matches(r: Rq, e: CachedResponse, key: string): boolean {
  if (e.key !== key) return false;
  if (e.vary === undefined) return true;
  for (const [name, v] of e.vary) {
    const h = r.req.headers[name];
    if ((h === undefined ? '' : Array.isArray(h) ? h.join(', ') : h) !== v) return false;
  }
  return true;
}

/**
 * How long a response stays fresh, 0 when it is not stored, by nginx's rules: Set-Cookie or `Vary: *` keep
 * it out; X-Accel-Expires (seconds, or `@` an epoch time; 0 = not cached) comes first; then Cache-Control
 * (no-cache, no-store, private: not cached; s-maxage, else max-age); then Expires (a past or bad date: not
 * cached); then the first *_cache_valid line for the status. *_ignore_headers takes a header out of this.
 */
export function validFor(st: UpstreamSettings, status: number, headers: string[]): number {
  const ign = st.ignoreHeaders!;
  const now = Date.now();
  let xae: number | undefined;
  let cc: number | undefined;
  let ccNo = false;
  let exp: number | undefined;
  for (let i = 0; i < headers.length; i += 2) {
    const name = headers[i]!.toLowerCase();
    const value = headers[i + 1]!;
    if (name === 'set-cookie') {
      if (!ign.has(name)) return 0;
    } else if (name === 'vary') {
      if (!ign.has(name) && value.trim() === '*') return 0;
    } else if (name === 'x-accel-expires') {
      if (ign.has(name)) continue;
      const m = /^\s*(@?)(\d+)\s*$/.exec(value);
      if (!m) continue;
      const n = Number(m[2]);
      xae = m[1] ? n * 1000 - now : n * 1000;
    } else if (name === 'cache-control') {
      if (ign.has(name)) continue;
      const v = value.toLowerCase();
      if (/(^|[\s,])(no-cache|no-store|private)\b/.test(v)) ccNo = true;
      const m = /(?:^|[\s,])s-maxage=([^\s,]*)/.exec(v) ?? /(?:^|[\s,])max-age=([^\s,]*)/.exec(v);
      if (m) {
        if (!/^\d+$/.test(m[1]!) || Number(m[1]) === 0) ccNo = true;
        else cc ??= Number(m[1]) * 1000;
      }
    } else if (name === 'expires') {
      if (ign.has(name)) continue;
      const t = Date.parse(value);
      exp = Number.isNaN(t) || t <= now ? 0 : t - now;
    }
  }
  if (xae !== undefined) return xae > 0 ? xae : 0;
  if (ccNo) return 0;
  if (cc !== undefined) return cc;
  if (exp !== undefined) return exp;
  for (const v of st.cacheValid!) if (v.codes === 'any' || v.codes.includes(status)) return v.ms;
  return 0;
}

/** *_cache_min_uses: requests seen per key in this worker (bounded; the oldest keys are forgotten first). */
const uses = new Map<string, number>();
function usedEnough(file: string, min: number): boolean {
  if (min <= 1) return true;
  const n = (uses.get(file) ?? 0) + 1;
  uses.delete(file);
  if (n >= min) return true;
  uses.set(file, n);
  if (uses.size > 10000) uses.delete(uses.keys().next().value as string);
  return false;
}

/** Keys this worker is fetching from the backend (for *_cache_use_stale updating). */
export const updating = new Set<string>();

/** Last time a HIT refreshed a file's mtime (the sweep's "last use"), per file, in this worker. */
const touched = new Map<string, number>();

/** A HIT: the file's mtime says it was used (at most every quarter of `inactive`, to spare the syscall). */
export function touch(zone: CacheZone, file: string): void {
  sweeper(zone);
  const now = Date.now();
  const last = touched.get(file);
  if (last !== undefined && now - last < Math.min(60000, zone.inactiveMs / 4)) return;
  touched.set(file, now);
  if (touched.size > 10000) touched.delete(touched.keys().next().value as string);
  const t = now / 1000;
  void utimes(file, t, t).catch(() => undefined);
}

const sweeping = new Set<string>();

/** Starts the zone's periodic sweep in this worker (inactive entries and max_size). */
export function sweeper(zone: CacheZone): void {
  if (sweeping.has(zone.path)) return;
  sweeping.add(zone.path);
  const every = Math.max(500, Math.min(10000, zone.inactiveMs / 2));
  setInterval(() => void sweep(zone), every).unref();
}

async function sweep(zone: CacheZone): Promise<void> {
  const files: Array<{ path: string; mtime: number; size: number }> = [];
  const walk = async (dir: string, depth: number): Promise<void> => {
    let names: string[];
    try {
      names = await readdir(dir);
    } catch {
      return;
    }
    for (const n of names) {
      const p = `${dir}/${n}`;
      if (depth < zone.levels.length) {
        await walk(p, depth + 1);
        continue;
      }
      try {
        const s = await stat(p);
        if (s.isFile()) files.push({ path: p, mtime: s.mtimeMs, size: s.size });
      } catch {
        // removed meanwhile
      }
    }
  };
  await walk(zone.path, 0);
  const now = Date.now();
  let total = 0;
  const kept: typeof files = [];
  for (const f of files) {
    const limit = f.path.endsWith('.tmp') ? Math.max(60000, zone.inactiveMs) : zone.inactiveMs;
    if (now - f.mtime > limit) await unlink(f.path).catch(() => undefined);
    else {
      kept.push(f);
      total += f.size;
    }
  }
  if (zone.maxSize > 0 && total > zone.maxSize) {
    kept.sort((a, b) => a.mtime - b.mtime);
    for (const f of kept) {
      if (total <= zone.maxSize) break;
      if (f.path.endsWith('.tmp')) continue;
      await unlink(f.path).catch(() => undefined);
      total -= f.size;
    }
  }
}
