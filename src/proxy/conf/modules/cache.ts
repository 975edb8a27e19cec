/**
 * Response caching directives of the two pass modules: `proxy_cache_path` / `uwsgi_cache_path` declare zones
 * (a directory on disk), `proxy_cache` / `uwsgi_cache` and friends say which responses a level stores. The
 * cache itself is src/proxy/cache.ts. A zone may be named before the `*_cache_path` line that declares it,
 * as in nginx; names are checked once the whole configuration is read (`bindCacheZones`).
 */
import { mkdirSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { errnoText } from '../fs.js';
import { ProxyConfError, type ConfPos } from '../errors.js';
import type { CacheZone, HttpConf, UpstreamSettings } from '../model.js';
import type { Scope } from '../scope.js';
import type { ConfNode } from '../parse.js';
import { HSL, HTTP, MORE, badValue, duplicate, parseFlag, parseSize, parseTimeMs, pos, tuning, type DirectiveSpec } from '../table.js';
import { compileTemplate } from '../../vars.js';

type Spec = DirectiveSpec<Scope>;
type Prefix = 'uwsgi' | 'proxy';

interface ZoneEntry {
  zone: CacheZone;
  /** Where *_cache_path declared it (undefined: only referenced so far). */
  declared: ConfPos | undefined;
  /** The first *_cache line naming it. */
  firstUse: { pos: ConfPos; directive: string } | undefined;
}

/** Zones by name, per http block (one name space for both modules, as nginx's shared memory zones). */
const zonesOf = new WeakMap<HttpConf, Map<string, ZoneEntry>>();
/** The `uwsgi_cache` levels, checked for a key once settings are inherited (nginx warns when there is none). */
const uwsgiUses = new WeakMap<HttpConf, Array<{ st: UpstreamSettings; pos: ConfPos }>>();

function entry(http: HttpConf, name: string, protocol: Prefix): ZoneEntry {
  let m = zonesOf.get(http);
  if (m === undefined) zonesOf.set(http, (m = new Map()));
  let e = m.get(name);
  if (e === undefined) {
    e = { zone: { name, path: '', levels: [], inactiveMs: 600000, maxSize: 0, useTempPath: true, protocol, pos: { file: '', line: 0 } }, declared: undefined, firstUse: undefined };
    m.set(name, e);
  }
  return e;
}

function differentUse(d: ConfNode, name: string): ProxyConfError {
  return new ProxyConfError('BAD_VALUE', `the shared memory zone "${name}" is already declared for a different use`, pos(d));
}

function cachePath(prefix: Prefix): Spec {
  return {
    name: `${prefix}_cache_path`, ctx: HTTP, args: [2, MORE],
    set(s, d) {
      let levels: number[] = [];
      let zoneName = '';
      let inactiveMs = 600000;
      let maxSize = 0;
      let useTempPath = true;
      for (const a of d.args.slice(1)) {
        const eq = a.indexOf('=');
        const k = eq < 0 ? a : a.slice(0, eq);
        const v = eq < 0 ? '' : a.slice(eq + 1);
        if (k === 'levels') {
          levels = v.split(':').map(Number);
          if (levels.length > 3 || levels.some((n) => n !== 1 && n !== 2)) throw new ProxyConfError('BAD_VALUE', `invalid "levels" "${a}"`, pos(d));
        } else if (k === 'keys_zone') {
          const m = /^([^:]+):(.+)$/.exec(v);
          const size = m ? parseSize(m[2]!) : Number.NaN;
          if (!m || Number.isNaN(size)) throw new ProxyConfError('BAD_VALUE', `invalid keys zone size "${a}"`, pos(d));
          if (size < 8 * 4096) throw new ProxyConfError('BAD_VALUE', `zone "${m[1]}" is too small`, pos(d));
          zoneName = m[1]!;
        } else if (k === 'inactive') {
          inactiveMs = parseTimeMs(v);
          if (Number.isNaN(inactiveMs)) throw new ProxyConfError('BAD_VALUE', `invalid inactive value "${a}"`, pos(d));
        } else if (k === 'max_size') {
          maxSize = parseSize(v);
          if (Number.isNaN(maxSize)) throw new ProxyConfError('BAD_VALUE', `invalid max_size value "${a}"`, pos(d));
        } else if (k === 'use_temp_path') {
          if (v !== 'on' && v !== 'off') throw new ProxyConfError('BAD_VALUE', `invalid use_temp_path value "${v}", it must be "on" or "off"`, pos(d));
          useTempPath = v === 'on';
        } else if (/^(manager|loader)_(files|sleep|threshold)$/.test(k)) {
          // nginx's cache manager and loader pacing; tsgi-proxy has neither process (its sweep is in the workers).
        } else if (k === 'min_free') {
          throw new ProxyConfError('NOT_SUPPORTED', `"min_free" in "${d.name}" directive is not supported by tsgi-proxy`, pos(d));
        } else throw new ProxyConfError('BAD_VALUE', `invalid parameter "${a}"`, pos(d));
      }
      if (zoneName === '') throw new ProxyConfError('BAD_VALUE', `"${d.name}" must have "keys_zone" parameter`, pos(d));
      const e = entry(s.http!, zoneName, prefix);
      if (e.declared !== undefined) throw new ProxyConfError('DUPLICATE', `duplicate zone "${zoneName}"`, pos(d));
      if (e.zone.protocol !== prefix) throw differentUse(d, zoneName);
      e.declared = pos(d);
      Object.assign(e.zone, { path: resolve(s.env.prefix, d.args[0]!), levels, inactiveMs, maxSize, useTempPath, pos: pos(d) });
    },
  };
}

const VALID_CODE = /^[1-5]\d\d$/;
const STALE = new Set(['error', 'timeout', 'invalid_header', 'updating', 'http_500', 'http_502', 'http_503', 'http_504', 'http_403', 'http_404', 'http_429', 'off']);
const IGNORABLE = new Set(['x-accel-redirect', 'x-accel-expires', 'x-accel-limit-rate', 'x-accel-buffering', 'x-accel-charset', 'expires', 'cache-control', 'set-cookie', 'vary']);

function moduleSpecs(prefix: Prefix): Spec[] {
  const get = (s: Scope): UpstreamSettings => s.loc[prefix];
  function once<K extends keyof UpstreamSettings>(suffix: string, args: Spec['args'], key: K, parse: (d: ConfNode, s: Scope) => UpstreamSettings[K]): Spec {
    return {
      name: `${prefix}_${suffix}`, ctx: HSL, args,
      set(s, d) {
        const st = get(s);
        if (st[key] !== undefined) throw duplicate(d);
        st[key] = parse(d, s);
      },
    };
  }
  /** An "on" nginx has and tsgi-proxy does not implement: refused; "off" is the default anyway. */
  const offOnly = (suffix: string, why: string): Spec => ({
    name: `${prefix}_${suffix}`, ctx: HSL, args: 'flag',
    set(_s, d) {
      if (parseFlag(d)) throw new ProxyConfError('NOT_SUPPORTED', `"${d.name} on" is not supported by tsgi-proxy (${why})`, pos(d));
    },
  });
  const templates = (suffix: string, key: 'cacheBypass' | 'noCache'): Spec => ({
    name: `${prefix}_${suffix}`, ctx: HSL, args: [1, MORE],
    set(s, d) {
      const list = (get(s)[key] ??= []);
      for (const a of d.args) list.push(compileTemplate(a, s.reg, pos(d)));
    },
  });
  return [
    cachePath(prefix),
    once('cache', 1, 'cache', (d, s) => {
      const name = d.args[0]!;
      if (name === 'off') return null;
      if (name.includes('$')) throw new ProxyConfError('NOT_SUPPORTED', `variables in "${d.name}" directive are not supported by tsgi-proxy`, pos(d));
      const e = entry(s.http!, name, prefix);
      if (e.zone.protocol !== prefix) throw differentUse(d, name);
      e.firstUse ??= { pos: pos(d), directive: d.name };
      if (prefix === 'uwsgi') {
        let list = uwsgiUses.get(s.http!);
        if (list === undefined) uwsgiUses.set(s.http!, (list = []));
        list.push({ st: get(s), pos: pos(d) });
      }
      return e.zone;
    }),
    once('cache_key', 1, 'cacheKey', (d, s) => compileTemplate(d.args[0]!, s.reg, pos(d))),
    {
      name: `${prefix}_cache_valid`, ctx: HSL, args: [1, MORE],
      set(s, d) {
        const args = d.args;
        const ms = parseTimeMs(args[args.length - 1]!);
        if (Number.isNaN(ms)) throw new ProxyConfError('BAD_VALUE', `invalid time value "${args[args.length - 1]}"`, pos(d));
        let codes: number[] | 'any' = [200, 301, 302];
        if (args.length > 1) {
          codes = [];
          for (const c of args.slice(0, -1)) {
            if (c === 'any') {
              codes = 'any';
              break;
            }
            if (!VALID_CODE.test(c)) throw new ProxyConfError('BAD_VALUE', `invalid status "${c}"`, pos(d));
            codes.push(Number(c));
          }
        }
        (get(s).cacheValid ??= []).push({ codes, ms });
      },
    },
    once('cache_methods', [1, MORE], 'cacheMethods', (d) => {
      // GET and HEAD are always cached, as in nginx; POST may be added.
      const set = new Set(['GET', 'HEAD']);
      for (const m of d.args) {
        const u = m.toUpperCase();
        if (u !== 'GET' && u !== 'HEAD' && u !== 'POST') throw new ProxyConfError('BAD_VALUE', `invalid value "${m}"`, pos(d));
        set.add(u);
      }
      return set;
    }),
    templates('cache_bypass', 'cacheBypass'),
    templates('no_cache', 'noCache'),
    once('cache_min_uses', 1, 'cacheMinUses', (d) => {
      if (!/^\d+$/.test(d.args[0]!) || Number(d.args[0]) === 0) throw badValue(d, d.args[0]!);
      return Number(d.args[0]);
    }),
    once('cache_use_stale', [1, MORE], 'cacheUseStale', (d) => {
      const set = new Set<string>();
      for (const a of d.args) {
        if (!STALE.has(a)) throw new ProxyConfError('BAD_VALUE', `invalid value "${a}"`, pos(d));
        if (a === 'off') {
          if (d.args.length > 1) throw new ProxyConfError('BAD_VALUE', 'invalid value "off"', pos(d));
          return set;
        }
        set.add(a);
      }
      return set;
    }),
    once('cache_convert_head', 'flag', 'cacheConvertHead', (d) => parseFlag(d)),
    once('ignore_headers', [1, MORE], 'ignoreHeaders', (d) => {
      const set = new Set<string>();
      for (const a of d.args) {
        const l = a.toLowerCase();
        if (!IGNORABLE.has(l)) throw new ProxyConfError('BAD_VALUE', `invalid value "${a}"`, pos(d));
        set.add(l);
      }
      return set;
    }),
    offOnly('cache_lock', 'concurrent misses of one key each go to the backend'),
    tuning(`${prefix}_cache_lock_timeout`, HSL, 1),
    tuning(`${prefix}_cache_lock_age`, HSL, 1),
    offOnly('cache_revalidate', 'an expired entry is fetched again whole'),
    offOnly('cache_background_update', 'an expired entry is fetched by the request that found it'),
    {
      name: `${prefix}_cache_max_range_offset`, ctx: HSL, args: 1,
      set(_s, d) {
        throw new ProxyConfError('NOT_SUPPORTED', `"${d.name}" directive is not supported by tsgi-proxy`, pos(d));
      },
    },
  ];
}

export const cacheSpecs: Spec[] = [...moduleSpecs('uwsgi'), ...moduleSpecs('proxy')];

/**
 * After the walk and the inheritance of settings: every zone a *_cache line named must be declared; a
 * uwsgi_cache level without uwsgi_cache_key gets nginx's warning (its responses then share one empty key).
 */
/**
 * `mkdir -p`, one level at a time: Node's own recursive mkdir never returns on a path in /proc (each level's
 * ENOENT sends it back to make the parent, which exists).
 */
function mkdirs(path: string): void {
  let at = '';
  for (const part of path.split('/')) {
    at = at === '' && part === '' ? '/' : at === '/' ? `/${part}` : `${at}/${part}`;
    if (part === '') continue;
    try {
      mkdirSync(at, { mode: 0o700 });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
  }
  if (!statSync(path).isDirectory()) throw Object.assign(new Error('20: Not a directory'), { code: 'ENOTDIR' });
}

export function bindCacheZones(http: HttpConf, warn: (message: string, p: ConfPos) => void): void {
  for (const [name, e] of zonesOf.get(http) ?? []) {
    if (e.declared === undefined && e.firstUse !== undefined) throw new ProxyConfError('BAD_VALUE', `"${e.firstUse.directive}" zone "${name}" is unknown`, e.firstUse.pos);
  }
  for (const u of uwsgiUses.get(http) ?? []) if (u.st.cacheKey === undefined) warn('no "uwsgi_cache_key" for "uwsgi_cache"', u.pos);
  // The directories are made now, as nginx makes them at start (and with -t): a path that cannot be one (under
  // a file, in /proc) is refused with nginx's line instead of a cache that silently stores nothing, or a
  // worker whose every store retries a mkdir that cannot succeed (Node's recursive mkdir spins on /proc).
  for (const e of zonesOf.get(http)?.values() ?? []) {
    if (e.declared === undefined) continue;
    try {
      mkdirs(e.zone.path);
    } catch (err) {
      throw new ProxyConfError('FILE', `mkdir() "${e.zone.path}" failed (${errnoText(err as NodeJS.ErrnoException)})`, e.declared);
    }
  }
}
