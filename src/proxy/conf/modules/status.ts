/** `stub_status` (server, location): the location answers with the connection counters (stats.ts). */
import type { Scope } from '../scope.js';
import { LOC, SRV, type DirectiveSpec } from '../table.js';

export const statusSpecs: DirectiveSpec<Scope>[] = [
  {
    // nginx still takes (and ignores) the argument of the old "stub_status on" form.
    name: 'stub_status', ctx: SRV | LOC, args: [0, 1],
    set(s) {
      s.loc.stubStatus = true;
      s.reg.connStats = true;
    },
  },
];
