/**
 * uWSGI's caching framework, configuration side (docs/cache.md): `cache2 = name=...,items=...`, the old-style
 * `cache = ITEMS` with its `cache-*` options, `load-file-in-cache(-gzip)` and `add-cache-item`, read into plain
 * objects, checked here so a mistake is one line naming the file, line and option before anything starts.
 */
import { accessSync, constants as fsConstants, statSync } from 'node:fs';
import { resolve as resolveFrom } from 'node:path';
import { ConfigError } from '../config/errors.js';
import { describeOrigin, type Origin } from '../config/origin.js';

export interface CacheSpec {
  name: string;
  /** uWSGI's max_items: slot 0 is never used, so `items - 1` keys fit (as in uWSGI). */
  items: number;
  blocksize: number;
  blocks: number;
  keysize: number;
  hashsize: number;
  /** Values may span several consecutive blocks (up to blocksize × blocks bytes). */
  bitmap: boolean;
  purgeLru: boolean;
  ignoreFull: boolean;
  clearOnFull: boolean;
  /** Items never expire (cache-no-expire, no_expire=1). */
  noExpire: boolean;
  mathInitial: number;
  /** Absolute path of the backing file, or undefined (shared memory, gone when the instance stops). */
  store: string | undefined;
  storeSync: number;
  storeDelete: boolean;
  /** Where it was declared, for the master's error lines. */
  where: string;
}

export interface CacheLoad {
  /** The cache (undefined: the first one). */
  cache: string | undefined;
  /** add-cache-item: the key and its value; load-file-in-cache: the file (also the key, as written). */
  key: string;
  value?: string;
  file?: string;
  gzip?: boolean;
}

export interface CacheSettings {
  caches: CacheSpec[];
  loads: CacheLoad[];
}

interface Values {
  all(name: string): Array<{ value: string; origin: Origin }>;
  get(name: string): string | undefined;
  origin(name: string): Origin | undefined;
  bool(name: string): boolean;
}

/** cache2 keys uWSGI 2.0.21 knows, by alias, mapped to one name each. */
const CACHE2_KEYS: Readonly<Record<string, string>> = {
  name: 'name', items: 'items', max_items: 'items', maxitems: 'items', blocksize: 'blocksize', blocks: 'blocks',
  hash: 'hash', hashsize: 'hashsize', hash_size: 'hashsize', keysize: 'keysize', key_size: 'keysize',
  store: 'store', store_sync: 'store_sync', storesync: 'store_sync', store_delete: 'store_delete', storedelete: 'store_delete',
  node: 'nodes', nodes: 'nodes', sync: 'sync', udp: 'udp', udp_servers: 'udp', udp_server: 'udp', udpservers: 'udp', udpserver: 'udp',
  bitmap: 'bitmap', lastmod: 'lastmod', math_initial: 'math_initial', ignore_full: 'ignore_full', purge_lru: 'purge_lru',
  lru: 'purge_lru', lazy_expire: 'lazy_expire', lazy: 'lazy_expire', sweep_on_full: 'sweep_on_full', clear_on_full: 'clear_on_full',
  no_expire: 'no_expire',
};

/** Keys tsgi refuses, and why. */
const REFUSED: Readonly<Record<string, string>> = {
  nodes: 'sending updates to other nodes over UDP (cache-udp-node) is not implemented by tsgi',
  udp: 'a UDP server for cache updates (cache-udp-server) is not implemented by tsgi',
  sync: 'copying a cache from another instance at start (cache-sync) is not implemented by tsgi',
  lastmod: "Last-Modified headers from the cache's modification time (cache-use-last-modified) are not implemented by tsgi",
};

// uWSGI 2.0.21's UMAX16 (65536): the default blocksize and hash size; keys are shorter than it.
const UMAX16 = 65536;

function positive(text: string, fail: (why: string) => ConfigError, what: string, max = Number.MAX_SAFE_INTEGER): number {
  if (!/^\d+$/.test(text.trim())) throw fail(`${what} '${text}' is not a number`);
  const n = Number(text.trim());
  if (n < 1 || n > max) throw fail(`${what} must be between 1 and ${max} (got ${text})`);
  return n;
}

/** A cache2 value: KEY=VALUE pairs separated by commas. */
function parseCache2(text: string, origin: Origin, base: string, defaultSync: number): CacheSpec {
  const fail = (why: string, code: 'BAD_VALUE' | 'NOT_IMPLEMENTED' = 'BAD_VALUE'): ConfigError => new ConfigError(code, why, origin, 'cache2');
  const kv: Record<string, string> = {};
  for (const part of text.split(',')) {
    if (!part.trim()) continue;
    const eq = part.indexOf('=');
    if (eq <= 0) throw fail(`'${part}' is not KEY=VALUE (expected name=NAME,items=N[,blocksize=...])`);
    const key = part.slice(0, eq).trim();
    const canonical = CACHE2_KEYS[key];
    if (!canonical) throw fail(`unknown key '${key}' (uWSGI 2.0.21 knows ${Object.keys(CACHE2_KEYS).join(', ')})`);
    const refused = REFUSED[canonical];
    if (refused) throw fail(`key '${key}': ${refused}`, 'NOT_IMPLEMENTED');
    kv[canonical] = part.slice(eq + 1);
  }
  if (!kv.name) throw fail('a cache needs a name (name=NAME)');
  if (kv.items === undefined) throw fail(`cache "${kv.name}" needs the number of items (items=N)`);
  const items = positive(kv.items, fail, 'items', 0xffffffff);
  const blocksize = kv.blocksize === undefined ? UMAX16 : positive(kv.blocksize, fail, 'blocksize');
  const blocks = kv.blocks === undefined ? items : positive(kv.blocks, fail, 'blocks', 0xffffffff);
  if (blocks < items) throw fail(`blocks (${blocks}) must be at least items (${items})`);
  const keysize = kv.keysize === undefined ? 2048 : positive(kv.keysize, fail, 'keysize', UMAX16 - 1);
  const hashsize = kv.hashsize === undefined ? UMAX16 : positive(kv.hashsize, fail, 'hashsize', 0xffffffff);
  if (kv.hash !== undefined && kv.hash !== 'djb33x') throw fail(`hash '${kv.hash}': tsgi implements djb33x (the default) only`, 'NOT_IMPLEMENTED');
  const flag = (k: string): boolean => kv[k] !== undefined && kv[k] !== '' && kv[k] !== '0' && kv[k] !== 'false';
  let mathInitial = 0;
  if (kv.math_initial !== undefined) {
    if (!/^-?\d+$/.test(kv.math_initial.trim())) throw fail(`math_initial '${kv.math_initial}' is not an integer`);
    mathInitial = Number(kv.math_initial.trim());
  }
  if (kv.sweep_on_full !== undefined) positive(kv.sweep_on_full, fail, 'sweep_on_full');
  const storeSync = kv.store_sync === undefined ? defaultSync : positive(kv.store_sync, fail, 'store_sync');
  const spec: CacheSpec = {
    name: kv.name,
    items, blocksize, blocks, keysize, hashsize,
    bitmap: flag('bitmap'),
    purgeLru: flag('purge_lru'),
    ignoreFull: flag('ignore_full'),
    clearOnFull: flag('clear_on_full'),
    noExpire: flag('no_expire'),
    mathInitial,
    store: kv.store ? resolveFrom(base, kv.store) : undefined,
    storeSync,
    storeDelete: flag('store_delete'),
    where: `${describeOrigin(origin)} cache2`,
  };
  checkSize(spec, fail);
  return spec;
}

function checkSize(spec: CacheSpec, fail: (why: string) => ConfigError): void {
  const size = cacheFileSize(spec);
  // One shared mapping per cache in every worker: refuse what cannot be mapped rather than fail in each worker.
  if (size > 2 ** 40) throw fail(`cache "${spec.name}" would take ${size} bytes`);
}

/** Where the parts of a cache's file start (docs/cache.md, "The shared file"). */
export const HEADER_SIZE = 128;
export const ITEM_HEADER = 64;

export function cacheLayout(spec: Pick<CacheSpec, 'items' | 'blocksize' | 'blocks' | 'keysize' | 'hashsize' | 'bitmap'>) {
  const hashtable = HEADER_SIZE;
  const stack = hashtable + 4 * spec.hashsize;
  const itemSize = Math.ceil((ITEM_HEADER + spec.keysize) / 8) * 8;
  const itemsAt = stack + 4 * spec.items;
  const bitmap = itemsAt + itemSize * spec.items;
  const bitmapSize = spec.bitmap ? Math.ceil(spec.blocks / 8) : 0;
  const data = Math.ceil((bitmap + bitmapSize) / 8) * 8;
  return { hashtable, stack, itemSize, items: itemsAt, bitmap, bitmapSize, data, size: data + spec.blocksize * spec.blocks };
}

export function cacheFileSize(spec: Parameters<typeof cacheLayout>[0]): number {
  return cacheLayout(spec).size;
}

/** Reads every cache option; undefined when no cache is configured (nothing is created, nothing runs). */
export function readCacheSettings(values: Values, base: string): CacheSettings | undefined {
  const caches: CacheSpec[] = [];
  const storeSync = values.get('cache-store-sync');
  const syncOrigin = values.origin('cache-store-sync');
  const defaultSync = storeSync === undefined ? 0
    : positive(storeSync, (why) => new ConfigError('BAD_VALUE', why, syncOrigin, 'cache-store-sync'), 'cache-store-sync');
  const old = values.get('cache');
  if (old !== undefined) {
    const origin = values.origin('cache');
    const fail = (why: string): ConfigError => new ConfigError('BAD_VALUE', why, origin, 'cache');
    const items = positive(old, fail, 'the number of items', 0xffffffff);
    const bs = values.get('cache-blocksize');
    const bsOrigin = values.origin('cache-blocksize');
    const blocksize = bs === undefined ? UMAX16 : positive(bs, (why) => new ConfigError('BAD_VALUE', why, bsOrigin, 'cache-blocksize'), 'cache-blocksize');
    const store = values.get('cache-store');
    const spec: CacheSpec = {
      name: 'default', items, blocksize, blocks: items, keysize: 2048, hashsize: UMAX16, bitmap: false, purgeLru: false,
      ignoreFull: false, clearOnFull: false, noExpire: false, mathInitial: 0,
      store: store ? resolveFrom(base, store) : undefined, storeSync: defaultSync, storeDelete: false, where: origin ? `${describeOrigin(origin)} cache` : 'cache',
    };
    checkSize(spec, fail);
    caches.push(spec);
  } else {
    for (const opt of ['cache-blocksize', 'cache-store']) {
      if (values.get(opt) !== undefined) {
        throw new ConfigError('BAD_VALUE', `${opt} applies to the cache created by 'cache = ITEMS', and there is none (cache2 takes blocksize= and store= itself)`, values.origin(opt), opt);
      }
    }
  }
  for (const { value, origin } of values.all('cache2')) {
    const spec = parseCache2(value, origin, base, defaultSync);
    if (caches.some((c) => c.name === spec.name)) throw new ConfigError('BAD_VALUE', `a cache named "${spec.name}" is already defined`, origin, 'cache2');
    if (spec.store && caches.some((c) => c.store === spec.store)) throw new ConfigError('BAD_VALUE', `store ${spec.store} is used by another cache`, origin, 'cache2');
    caches.push(spec);
  }
  const noExpire = values.bool('cache-no-expire');
  if (noExpire) for (const c of caches) c.noExpire = true;
  const loads: CacheLoad[] = [];
  const cacheOf = (text: string, origin: Origin, option: string): { cache: string | undefined; rest: string } => {
    const space = text.indexOf(' ');
    const named = space > 0 ? text.slice(0, space) : undefined;
    const rest = space > 0 ? text.slice(space + 1) : text;
    if (!caches.length) throw new ConfigError('BAD_VALUE', 'there is no cache to put it in (set cache2 = name=NAME,items=N)', origin, option);
    if (named === undefined) return { cache: undefined, rest: text };
    // uWSGI reads the part before a space as the cache's name, and silently skips the item when no cache has it.
    if (!caches.some((c) => c.name === named)) {
      throw new ConfigError('BAD_VALUE', `'${named}' (before the space) is not a cache (caches: ${caches.map((c) => c.name).join(', ')}); write '[CACHE ]${option === 'add-cache-item' ? 'KEY=VALUE' : 'FILE'}' (uWSGI would skip this item)`, origin, option);
    }
    return { cache: named, rest };
  };
  for (const option of ['load-file-in-cache', 'load-file-in-cache-gzip']) {
    for (const { value, origin } of values.all(option)) {
      const { cache, rest } = cacheOf(value, origin, option);
      try {
        if (!statSync(resolveFrom(base, rest)).isFile()) throw new Error('not a file');
        accessSync(resolveFrom(base, rest), fsConstants.R_OK);
      } catch (err) {
        throw new ConfigError('BAD_VALUE', `cannot read ${rest} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, origin, option);
      }
      loads.push({ cache, key: rest, file: resolveFrom(base, rest), gzip: option.endsWith('gzip') });
    }
  }
  for (const { value, origin } of values.all('add-cache-item')) {
    const { cache, rest } = cacheOf(value, origin, 'add-cache-item');
    const eq = rest.indexOf('=');
    if (eq <= 0) throw new ConfigError('BAD_VALUE', `'${value}' is not [CACHE ]KEY=VALUE`, origin, 'add-cache-item');
    loads.push({ cache, key: rest.slice(0, eq), value: rest.slice(eq + 1) });
  }
  if (!caches.length) {
    for (const opt of ['cache-store-sync', 'cache-no-expire', 'cache-expire-freq']) {
      if (values.all(opt).length) throw new ConfigError('BAD_VALUE', 'there is no cache (set cache2 = name=NAME,items=N)', values.origin(opt), opt);
    }
    return undefined;
  }
  return { caches, loads };
}

/** Route actions that use a cache (router_cache): a cache must exist, and a fixed name= must name one. */
export function checkCacheRoutes(routes: ReadonlyArray<{ action?: string; arg?: string; where: string }> | undefined, settings: CacheSettings | undefined): void {
  for (const r of routes ?? []) {
    if (!r.action || !/^cache/.test(r.action)) continue;
    if (!settings) throw new ConfigError('BAD_VALUE', `${r.where}: action '${r.action}' needs a cache, and there is none (set cache2 = name=NAME,items=N)`);
    const name = /(?:^|,)name=([^,]*)/.exec(r.arg ?? '')?.[1];
    if (name && !name.includes('$') && !settings.caches.some((c) => c.name === name)) {
      throw new ConfigError('BAD_VALUE', `${r.where}: there is no cache named "${name}" (caches: ${settings.caches.map((c) => c.name).join(', ')})`);
    }
  }
}
