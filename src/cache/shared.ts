/**
 * The caches' shared files (docs/cache.md): created and sized by the master before any worker starts, then
 * mapped by every Python process of the instance (python/tsgi_worker/cache.py), which does all the reads and
 * writes under an fcntl lock. The master only lays out a new file, checks a store file's geometry, reads the
 * counters for the stats, and flushes store files (fsync writes a MAP_SHARED file's dirty pages too).
 */
import { closeSync, existsSync, fstatSync, fsync, fsyncSync, ftruncateSync, openSync, readSync, unlinkSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cacheLayout, type CacheSpec } from './config.js';

const MAGIC = 0x43475354; // "TSGC"
const VERSION = 1;
const FLAG_BITMAP = 1;

export interface OpenCache {
  spec: CacheSpec;
  fd: number;
  size: number;
}

export class CacheError extends Error {
  override name = 'CacheError';
}

function header(spec: CacheSpec): Buffer {
  const h = Buffer.alloc(56);
  h.writeUInt32LE(MAGIC, 0);
  h.writeUInt32LE(VERSION, 4);
  h.writeBigUInt64LE(BigInt(spec.items), 8);
  h.writeBigUInt64LE(BigInt(spec.blocksize), 16);
  h.writeBigUInt64LE(BigInt(spec.blocks), 24);
  h.writeBigUInt64LE(BigInt(spec.keysize), 32);
  h.writeBigUInt64LE(BigInt(spec.hashsize), 40);
  h.writeUInt32LE(spec.bitmap ? FLAG_BITMAP : 0, 48);
  return h;
}

/** Writes an empty cache into a zero-filled file: the header, the stack of free slots, the bitmap's tail. */
function layOut(fd: number, spec: CacheSpec): void {
  const L = cacheLayout(spec);
  writeSync(fd, header(spec), 0, 56, 0);
  // Free slots 1..items-1 (slot 0 means "none", as in uWSGI): the top of the stack is taken first.
  const stack = Buffer.alloc(4 * spec.items);
  for (let i = 1; i < spec.items; i++) stack.writeUInt32LE(i, 4 * i);
  writeSync(fd, stack, 0, stack.length, L.stack);
  const top = Buffer.alloc(8);
  top.writeBigUInt64LE(BigInt(spec.items - 1), 0);
  writeSync(fd, top, 0, 8, 88);
  const tail = spec.blocks % 8;
  if (spec.bitmap && tail) writeSync(fd, Buffer.from([0xff >> tail]), 0, 1, L.bitmap + L.bitmapSize - 1);
}

/** Creates (or, for a store, opens or creates) one cache's file; returns its descriptor. */
export function openCache(spec: CacheSpec, log: (line: string) => void): OpenCache {
  const size = cacheLayout(spec).size;
  if (!spec.store) {
    const dir = existsSync('/dev/shm') ? '/dev/shm' : tmpdir();
    const path = join(dir, `tsgi-cache-${process.pid}-${Date.now()}-${spec.name.replace(/[^\w.-]/g, '_')}`);
    const fd = openSync(path, 'w+', 0o600);
    unlinkSync(path); // only the descriptors keep it: nothing to remove, however the instance ends
    ftruncateSync(fd, size);
    layOut(fd, spec);
    return { spec, fd, size };
  }
  const store = spec.store;
  if (existsSync(store)) {
    const fd = openSync(store, 'r+');
    const same = (() => {
      const want = header(spec);
      const got = Buffer.alloc(56);
      if (fstatSync(fd).size !== size || readSync(fd, got, 0, 56, 0) !== 56) return false;
      return got.subarray(0, 52).equals(want.subarray(0, 52)); // the geometry (not `loaded`)
    })();
    if (same) {
      writeSync(fd, header(spec), 0, 56, 0); // clears `loaded`: load-file-in-cache runs again at each start
      log(`cache "${spec.name}": recovered from its store file ${store}`);
      return { spec, fd, size };
    }
    closeSync(fd);
    if (!spec.storeDelete) {
      throw new CacheError(`${spec.where}: store file ${store} does not match cache "${spec.name}" (another geometry, or not a tsgi cache); remove it, fix items/blocksize/blocks/keysize/hashsize/bitmap, or add store_delete=1`);
    }
    log(`cache "${spec.name}": removing the store file ${store}, which does not match the cache (store_delete)`);
    unlinkSync(store);
  }
  let fd: number;
  try {
    fd = openSync(store, 'w+', 0o600);
  } catch (err) {
    throw new CacheError(`${spec.where}: cannot create the store file ${store} (${(err as NodeJS.ErrnoException).code})`);
  }
  ftruncateSync(fd, size);
  layOut(fd, spec);
  fsyncSync(fd);
  log(`cache "${spec.name}": new store file ${store}`);
  return { spec, fd, size };
}

/** Counters for the stats server (read without the lock: a snapshot may be a request old). */
export function cacheStats(c: OpenCache): Record<string, string | number> {
  const b = Buffer.alloc(32);
  readSync(c.fd, b, 0, 32, 56);
  return {
    name: c.spec.name,
    hash: 'djb33x',
    hashsize: c.spec.hashsize,
    keysize: c.spec.keysize,
    max_items: c.spec.items,
    blocks: c.spec.blocks,
    blocksize: c.spec.blocksize,
    items: Number(b.readBigUInt64LE(0)),
    hits: Number(b.readBigUInt64LE(8)),
    miss: Number(b.readBigUInt64LE(16)),
    full: Number(b.readBigUInt64LE(24)),
    last_modified_at: 0,
  };
}

/** Flushes store files every store_sync seconds (asynchronously: the master's loop never waits on a disk). */
export function startStoreSync(caches: OpenCache[]): () => void {
  const timers: NodeJS.Timeout[] = [];
  for (const c of caches) {
    if (!c.spec.store || !c.spec.storeSync) continue;
    const t = setInterval(() => fsync(c.fd, () => {}), c.spec.storeSync * 1000);
    t.unref();
    timers.push(t);
  }
  return () => {
    for (const t of timers) clearInterval(t);
    for (const c of caches) {
      if (c.spec.store) {
        try {
          fsyncSync(c.fd);
        } catch {
          /* the disk is gone: nothing better to do at exit */
        }
      }
    }
  };
}
