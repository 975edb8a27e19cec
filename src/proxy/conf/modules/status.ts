/**
 * `stub_status` (server, location): the location answers with the connection counters (stats.ts).
 * `gzip_static off|on|always` (http, server, location): gzipstatic.ts.
 * `sub_filter`, `sub_filter_once`, `sub_filter_types`, `sub_filter_last_modified` (http, server, location):
 * subfilter.ts.
 */
import type { Scope } from '../scope.js';
import { HSL, LOC, MORE, SRV, pos, type DirectiveSpec } from '../table.js';
import { ProxyConfError } from '../errors.js';
import { flagLoc, locOnce } from './core.js';
import { compileTemplate } from '../../vars.js';

export const statusSpecs: DirectiveSpec<Scope>[] = [
  {
    // nginx still takes (and ignores) the argument of the old "stub_status on" form.
    name: 'stub_status', ctx: SRV | LOC, args: [0, 1],
    set(s) {
      s.loc.stubStatus = true;
      s.reg.connStats = true;
    },
  },
  locOnce('gzip_static', HSL, 1, 'gzipStatic', (d) => {
    const v = d.args[0]!;
    // nginx's wording for a bad value of this directive names only the value.
    if (v !== 'on' && v !== 'off' && v !== 'always') throw new ProxyConfError('BAD_VALUE', `invalid value "${v}"`, pos(d));
    return v;
  }),
  {
    name: 'sub_filter', ctx: HSL, args: 2,
    set(s, d) {
      if (d.args[0] === '') throw new ProxyConfError('BAD_VALUE', 'empty search pattern', pos(d));
      (s.loc.subFilters ??= []).push({ find: compileTemplate(d.args[0]!, s.reg, pos(d)), replacement: compileTemplate(d.args[1]!, s.reg, pos(d)) });
    },
  },
  flagLoc('sub_filter_once', 'subFilterOnce'),
  flagLoc('sub_filter_last_modified', 'subFilterLastModified'),
  {
    name: 'sub_filter_types', ctx: HSL, args: [1, MORE],
    set(s, d) {
      // A second sub_filter_types adds to the first, as in nginx.
      const set = (s.loc.subFilterTypes ??= new Set());
      for (const t of d.args) {
        const low = t.toLowerCase();
        if (set.has(low)) s.env.warn(`duplicate MIME type "${t}"`, pos(d));
        set.add(low);
      }
    },
  },
];
