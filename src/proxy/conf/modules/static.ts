/** Static content directives: root, alias, index, try_files, autoindex, types, default_type. */
import { ProxyConfError } from '../errors.js';
import type { Scope } from '../scope.js';
import { HSL, LIF, LOC, MORE, SRV, TYPES, badValue, duplicate, pos, type DirectiveSpec } from '../table.js';
import { compileTemplate } from '../../vars.js';
import { flagLoc, locOnce } from './core.js';

type Spec = DirectiveSpec<Scope>;

function rootOrAlias(alias: boolean): Spec {
  return {
    name: alias ? 'alias' : 'root',
    ctx: alias ? LOC : HSL | LIF,
    args: 1,
    set(s, d) {
      if (s.loc.root !== undefined) {
        if (s.loc.root.alias === alias) throw duplicate(d);
        throw new ProxyConfError('DUPLICATE', `"${d.name}" directive is duplicate, "${alias ? 'root' : 'alias'}" directive was specified earlier`, pos(d));
      }
      if (alias && s.location?.kind === 'named') throw new ProxyConfError('NOT_ALLOWED_HERE', `"alias" directive cannot be used inside the named location`, pos(d));
      let p = d.args[0]!;
      // A trailing slash on root is dropped (root /srv/ + /a = /srv/a); alias keeps it.
      if (!alias && p.length > 1 && p.endsWith('/')) p = p.slice(0, -1);
      s.loc.root = { path: compileTemplate(p, s.reg, pos(d)), alias, aliasOf: alias && s.location && s.location.kind !== 'regex' ? s.location.name : '', pos: pos(d) };
    },
  };
}

/** Inside `types { }` every line is "media/type ext ext ...". */
export function typesEntry(s: Scope, name: string, exts: string[]): void {
  for (const e of exts) s.types!.set(e.toLowerCase(), name);
}

export const staticSpecs: Spec[] = [
  rootOrAlias(false),
  rootOrAlias(true),
  {
    name: 'index', ctx: HSL, args: [1, MORE],
    set(s, d) {
      const list = (s.loc.index ??= []);
      for (const a of d.args) {
        if (a === '') throw new ProxyConfError('BAD_VALUE', 'index "" in "index" directive is invalid', pos(d));
        list.push(compileTemplate(a, s.reg, pos(d)));
      }
    },
  },
  {
    name: 'try_files', ctx: SRV | LOC, args: [2, MORE],
    set(s, d) {
      if (s.loc.tryFiles !== undefined) throw duplicate(d);
      const last = d.args[d.args.length - 1]!;
      if (last.startsWith('=')) {
        const n = Number(last.slice(1));
        if (!Number.isInteger(n) || n < 100 || n > 999) throw new ProxyConfError('BAD_VALUE', `invalid code "${last}"`, pos(d));
      }
      s.loc.tryFiles = { files: d.args.slice(0, -1).map((a) => compileTemplate(a, s.reg, pos(d))), last, lastTemplate: compileTemplate(last, s.reg, pos(d)), pos: pos(d) };
    },
  },
  flagLoc('autoindex', 'autoindex'),
  flagLoc('autoindex_exact_size', 'autoindexExactSize'),
  flagLoc('autoindex_localtime', 'autoindexLocaltime'),
  locOnce('autoindex_format', HSL, 1, 'autoindexFormat', (d) => {
    const v = d.args[0]!;
    if (v !== 'html' && v !== 'json' && v !== 'jsonp' && v !== 'xml') throw badValue(d, v);
    return v;
  }),
  locOnce('default_type', HSL | LIF, 1, 'defaultType', (d) => d.args[0]!),
  {
    name: 'types', ctx: HSL, args: 0, block: true,
    set(s, d) {
      if (s.loc.types !== undefined) throw duplicate(d);
      const types = new Map<string, string>();
      s.loc.types = types;
      // Entries are arbitrary names, so they bypass the directive table (only `include` is a directive here).
      for (const e of d.block!) {
        if (e.block !== undefined) throw new ProxyConfError('SYNTAX', `unexpected "{"`, pos(e));
        if (e.name === 'include') {
          s.table.resolve(e, TYPES).set({ ...s, ctx: TYPES, types }, e);
          continue;
        }
        if (e.args.length === 0) throw new ProxyConfError('ARG_COUNT', `invalid number of arguments in "${e.name}" directive`, pos(e));
        typesEntry({ ...s, types }, e.name, e.args);
      }
    },
  },
];

