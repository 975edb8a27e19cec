/**
 * Static files kept in memory, so a hit costs one stat (to see the file is unchanged: same inode, size and
 * mtime) instead of open + fstat + read + close — each a trip to libuv's thread pool. With nginx's
 * `open_file_cache` on, even the stat is skipped until `open_file_cache_valid` has passed, as in nginx.
 * Bounded by entry size and total bytes; least recently used entries go first.
 *
 * Without open_file_cache every request still sees the file as it is on disk when the request is read:
 * the requests read during one turn of the event loop share one stat per path, issued at the end of that
 * turn (setImmediate), i.e. after every one of them arrived. A stat already in flight is never shared with
 * a request read after it was issued, since that request may have been sent after the file changed.
 *
 * Only a request for the whole body (a GET without Range) reads an uncached file into the cache. A HEAD or a
 * Range request gets the stats alone and the caller opens the file: a HEAD then reads nothing (it still
 * opens it, so a file the worker may not read answers 403 as a GET would, and as in nginx), a Range only
 * its bytes. (Caching on a range would read up to 2 MiB for a client that asked for one byte; files players
 * fetch by ranges are mostly larger than the cache keeps anyway. A later GET fills the cache, and from then
 * on ranges and HEADs are served from memory.)
 */
import { readFile, stat, type Stats } from 'node:fs';

const TOTAL_BYTES = 32 * 1024 * 1024;
/** The largest file kept: 1/16 of the cache, so at least 16 files always fit. */
export const CACHED_FILE_MAX = TOTAL_BYTES / 16;

export interface FileInfo {
  stats: Stats;
  /** The whole file, when it is cached (or was read for this turn's requests). */
  content: Buffer | undefined;
  /** mtime in whole seconds (ms), as HTTP dates carry it, and the headers made from it (made once per entry). */
  mtimeMs: number;
  lastModified: string;
  etag: string;
}

interface Cached extends FileInfo {
  content: Buffer;
  checkedAt: number;
}

type Waiter = (err: NodeJS.ErrnoException | null, f: FileInfo | undefined) => void;

/** The requests of this turn for one path, and whether one of them wants the whole body. */
interface Pending {
  waiters: Waiter[];
  read: boolean;
}

export function fileInfo(stats: Stats, content: Buffer | undefined): FileInfo {
  const mtimeMs = Math.floor(stats.mtimeMs / 1000) * 1000;
  return {
    stats,
    content,
    mtimeMs,
    lastModified: new Date(mtimeMs).toUTCString(),
    etag: `"${Math.floor(stats.mtimeMs / 1000).toString(16)}-${stats.size.toString(16)}"`,
  };
}

export class FileCache {
  private readonly entries = new Map<string, Cached>();
  private bytes = 0;
  /** Paths asked for during this turn, with who asked: stat'ed once each when the turn's input is read. */
  private waiting = new Map<string, Pending>();
  private scheduled = false;

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
   * Calls back with the file's stats, plus its content when it is cached or small enough to keep and
   * `wholeBody` asks for it (a GET without Range) — from memory when open_file_cache (`validMs` > 0) says
   * the entry is still good, else after a stat made this turn. Errors (ENOENT, EACCES...) are passed as
   * fs.stat gives them.
   */
  lookup(path: string, validMs: number, wholeBody: boolean, cb: Waiter): void {
    if (validMs > 0) {
      const hit = this.entries.get(path);
      if (hit && Date.now() - hit.checkedAt < validMs) {
        cb(null, hit);
        return;
      }
    }
    const q = this.waiting.get(path);
    if (q !== undefined) {
      q.waiters.push(cb);
      if (wholeBody) q.read = true;
      return;
    }
    this.waiting.set(path, { waiters: [cb], read: wholeBody });
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.issue);
    }
  }

  private readonly issue = (): void => {
    this.scheduled = false;
    const batch = this.waiting;
    this.waiting = new Map();
    for (const [path, q] of batch) this.check(path, q.waiters, q.read);
  };

  private check(path: string, waiters: Waiter[], read: boolean): void {
    const p = Buffer.from(path, 'latin1');
    stat(p, (e, st) => {
      if (e) {
        this.drop(path);
        answer(waiters, e, undefined);
        return;
      }
      if (!st.isFile() || st.size > CACHED_FILE_MAX) {
        this.drop(path);
        answer(waiters, null, fileInfo(st, undefined));
        return;
      }
      const hit = this.entries.get(path);
      if (hit && hit.stats.ino === st.ino && hit.stats.size === st.size && hit.stats.mtimeMs === st.mtimeMs) {
        hit.checkedAt = Date.now();
        // Refresh its place in the LRU order.
        this.entries.delete(path);
        this.entries.set(path, hit);
        answer(waiters, null, hit);
        return;
      }
      if (!read) {
        // Only HEADs and ranges asked: they need no whole copy. A stale entry goes; nothing is read.
        this.drop(path);
        answer(waiters, null, fileInfo(st, undefined));
        return;
      }
      readFile(p, (e2, content) => {
        if (e2) {
          this.drop(path);
          answer(waiters, e2, undefined);
          return;
        }
        if (content.length !== st.size) {
          // Changed while we read it: the content does not match the stats. Cache nothing; the caller
          // opens the file and serves it from one descriptor.
          this.drop(path);
          answer(waiters, null, fileInfo(st, undefined));
          return;
        }
        const c: Cached = { ...fileInfo(st, content), content, checkedAt: Date.now() };
        this.put(path, c);
        answer(waiters, null, c);
      });
    });
  }
}

function answer(waiters: Waiter[], e: NodeJS.ErrnoException | null, f: FileInfo | undefined): void {
  for (const w of waiters) w(e, f);
}
