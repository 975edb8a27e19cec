/** charset module: charset, source_charset, override_charset, charset_types, charset_map (8-bit tables). */
import { ProxyConfError } from '../errors.js';
import type { Scope } from '../scope.js';
import { HSL, HTTP, LIF, MORE, badValue, duplicate, pos, type DirectiveSpec } from '../table.js';
import type { ConfNode } from '../parse.js';
import { flagLoc, locOnce } from './core.js';

type Spec = DirectiveSpec<Scope>;

function charsetName(d: ConfNode): string {
  const v = d.args[0]!;
  if (v.includes('$')) throw new ProxyConfError('NOT_SUPPORTED', `variables in "${d.name}" directive are not supported by tsgi-proxy`, pos(d));
  return v === 'off' ? '' : v;
}

function isUtf8(name: string): boolean {
  return name.toLowerCase() === 'utf-8';
}

function hexByte(d: ConfNode, v: string): number {
  if (!/^[0-9a-fA-F]{1,2}$/.test(v)) throw new ProxyConfError('BAD_VALUE', `invalid value "${v}"`, pos(d));
  return parseInt(v, 16);
}

export const charsetSpecs: Spec[] = [
  {
    name: 'charset', ctx: HSL | LIF, args: 1,
    set(s, d) {
      if (s.loc.charset !== undefined) throw duplicate(d);
      s.loc.charset = charsetName(d);
      s.loc.charsetPos ??= pos(d);
    },
  },
  {
    name: 'source_charset', ctx: HSL | LIF, args: 1,
    set(s, d) {
      if (s.loc.sourceCharset !== undefined) throw duplicate(d);
      s.loc.sourceCharset = charsetName(d);
      s.loc.charsetPos ??= pos(d);
    },
  },
  flagLoc('override_charset', 'overrideCharset', HSL | LIF),
  locOnce('charset_types', HSL, [1, MORE], 'charsetTypes', (d) => new Set(d.args.map((a) => a.toLowerCase()))),
  {
    name: 'charset_map', ctx: HTTP, args: 2, block: true,
    set(s, d) {
      const [a, b] = [d.args[0]!, d.args[1]!];
      if (isUtf8(a)) throw new ProxyConfError('BAD_VALUE', `"charset_map" from utf-8 is not allowed`, pos(d));
      // nginx recodes to utf-8 with multi-byte sequences; tsgi-proxy keeps to 8-bit tables (one byte for one).
      if (isUtf8(b)) throw new ProxyConfError('NOT_SUPPORTED', `"charset_map" to utf-8 is not supported by tsgi-proxy (8-bit tables only)`, pos(d));
      const maps = (s.loc.charsetMaps ??= new Map());
      const ka = a.toLowerCase();
      const kb = b.toLowerCase();
      if (maps.has(`${ka}\0${kb}`)) throw new ProxyConfError('DUPLICATE', `duplicate "charset_map" between "${a}" and "${b}"`, pos(d));
      const fwd = new Uint8Array(256);
      const back = new Uint8Array(256);
      // As in nginx: ASCII passes unchanged, an 8-bit byte the map does not name becomes "?".
      for (let i = 0; i < 256; i++) fwd[i] = back[i] = i < 128 ? i : 0x3f;
      for (const e of d.block!) {
        if (e.block !== undefined || e.args.length !== 1) throw new ProxyConfError('ARG_COUNT', 'invalid number of arguments in "charset_map" directive', pos(e));
        const from = hexByte(e, e.name);
        const to = hexByte(e, e.args[0]!);
        fwd[from] = to;
        back[to] = from;
      }
      maps.set(`${ka}\0${kb}`, fwd);
      maps.set(`${kb}\0${ka}`, back);
    },
  },
  {
    name: 'max_ranges', ctx: HSL, args: 1,
    set(s, d) {
      if (s.loc.maxRanges !== undefined) throw duplicate(d);
      const v = d.args[0]!;
      if (!/^\d+$/.test(v)) throw badValue(d, v);
      s.loc.maxRanges = Number(v);
    },
  },
];
