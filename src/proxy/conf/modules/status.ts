/**
 * `stub_status` (server, location): the location answers with the connection counters (stats.ts).
 * `gzip_static off|on|always` (http, server, location): gzipstatic.ts.
 */
import type { Scope } from '../scope.js';
import { HSL, LOC, SRV, pos, type DirectiveSpec } from '../table.js';
import { ProxyConfError } from '../errors.js';
import { locOnce } from './core.js';

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
];
