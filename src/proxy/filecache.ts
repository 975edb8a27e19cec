/**
 * Small static files kept in memory, so a hit costs one stat (to see the file is unchanged: same inode, size
 * and mtime) instead of open + fstat + read + close — each a trip to libuv's thread pool. With nginx's
 * `open_file_cache` on, even the stat is skipped until `open_file_cache_valid` has passed, as in nginx.
 * Bounded by entry size and total bytes; least recently used entries go first.
 */
import { readFile, stat, type Stats } from 'node:fs';

export const SMALL_FILE = 64 * 1024;
const TOTAL_BYTES = 32 * 1024 * 1024;

export interface Cached {
  stats: Stats;
  content: Buffer;
  checkedAt: number;
}

function statP(path: Buffer): Promise<Stats> {
  return new Promise((res, rej) => stat(path, (e, s) => (e ? rej(e) : res(s))));
}

function readP(path: Buffer): Promise<Buffer> {
  return new Promise((res, rej) => readFile(path, (e, b) => (e ? rej(e) : res(b))));
}

export class FileCache {
  private readonly entries = new Map<string, Cached>();
  private bytes = 0;

  private put(key: string, c: Cached): void {
    const old = this.entries.get(key);
    if (old) {
      this.bytes -= old.content.length;
      this.entries.delete(key);
    }
    this.entries.set(key, c);
    this.bytes += c.content.length;
    while (this.bytes > TOTAL_BYTES) {
      const first = this.entries.keys().next();
      if (first.done) break;
      this.drop(first.value);
    }
  }

  private drop(key: string): void {
    const c = this.entries.get(key);
    if (!c) return;
    this.bytes -= c.content.length;
    this.entries.delete(key);
  }

  /**
   * Stats the file (unless a cached entry is still valid for `validMs`) and returns its stats, plus its
   * content when it is small. Errors (ENOENT, EACCES...) are thrown as from fs.stat.
   */
  async get(path: string, validMs: number): Promise<{ stats: Stats; content: Buffer | undefined }> {
    const now = Date.now();
    const hit = this.entries.get(path);
    if (hit && validMs > 0 && now - hit.checkedAt < validMs) return hit;
    const p = Buffer.from(path, 'latin1');
    let st: Stats;
    try {
      st = await statP(p);
    } catch (e) {
      this.drop(path);
      throw e;
    }
    if (!st.isFile() || st.size > SMALL_FILE) {
      this.drop(path);
      return { stats: st, content: undefined };
    }
    if (hit && hit.stats.ino === st.ino && hit.stats.size === st.size && hit.stats.mtimeMs === st.mtimeMs) {
      hit.checkedAt = now;
      // Refresh its place in the LRU order.
      this.entries.delete(path);
      this.entries.set(path, hit);
      return hit;
    }
    const content = await readP(p);
    if (content.length !== st.size) {
      // Changed while we read it: serve what was read, cache nothing.
      this.drop(path);
      return { stats: st, content };
    }
    const c: Cached = { stats: st, content, checkedAt: now };
    this.put(path, c);
    return c;
  }
}
