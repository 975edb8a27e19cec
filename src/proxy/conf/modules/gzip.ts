/** The gzip module's directives: compress responses for clients that accept it. */
import { ProxyConfError } from '../errors.js';
import type { Scope } from '../scope.js';
import { HSL, LIF, MORE, badValue, pos, sizeArg, tuning, type DirectiveSpec } from '../table.js';
import { flagLoc, locOnce } from './core.js';

type Spec = DirectiveSpec<Scope>;
const PROXIED = new Set(['off', 'expired', 'no-cache', 'no-store', 'private', 'no_last_modified', 'no_etag', 'auth', 'any']);

export const gzipSpecs: Spec[] = [
  flagLoc('gzip', 'gzip', HSL | LIF),
  flagLoc('gzip_vary', 'gzipVary'),
  {
    name: 'gzip_types', ctx: HSL, args: [1, MORE],
    set(s, d) {
      const set = (s.loc.gzipTypes ??= new Set(['text/html']));
      for (const t of d.args) set.add(t.toLowerCase());
    },
  },
  locOnce('gzip_min_length', HSL, 1, 'gzipMinLength', (d) => sizeArg(d)),
  locOnce('gzip_comp_level', HSL, 1, 'gzipCompLevel', (d) => {
    const n = Number(d.args[0]);
    if (!Number.isInteger(n) || n < 1 || n > 9) throw badValue(d, d.args[0]!);
    return n;
  }),
  locOnce('gzip_http_version', HSL, 1, 'gzipHttpVersion', (d) => {
    if (d.args[0] !== '1.0' && d.args[0] !== '1.1') throw badValue(d, d.args[0]!);
    return d.args[0];
  }),
  locOnce('gzip_proxied', HSL, [1, MORE], 'gzipProxied', (d) => {
    for (const a of d.args) if (!PROXIED.has(a)) throw badValue(d, a);
    if (d.args.length === 1 && d.args[0] === 'off') return 'off';
    if (d.args.includes('any')) return 'any';
    throw new ProxyConfError('NOT_SUPPORTED', `"gzip_proxied ${d.args.join(' ')}" is not supported by tsgi-proxy (only "off" and "any")`, pos(d));
  }),
  {
    name: 'gzip_disable', ctx: HSL, args: [1, MORE],
    set(s, d) {
      const list = (s.loc.gzipDisable ??= []);
      for (const a of d.args) {
        if (a === 'msie6') list.push(/MSIE [4-6]\./);
        else {
          try {
            list.push(new RegExp(a, 'i'));
          } catch {
            throw badValue(d, a);
          }
        }
      }
    },
  },
  tuning('gzip_buffers', HSL, 2),
];
