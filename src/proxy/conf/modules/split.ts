/**
 * `split_clients "STRING" $variable { 0.5% a; 2% b; * c; }` (http context): the value by where nginx's
 * MurmurHash2 of the evaluated string falls. As nginx computes it: percentages have at most two decimals (in
 * hundredths of a percent), each part's upper bound is the running sum of `hundredths * 0xffffffff / 10000`
 * (integer division per part), `*` takes the rest; a hash above every bound gives the empty value. Values are
 * literal text; the value is computed once per request.
 */
import { ProxyConfError } from '../errors.js';
import type { Scope } from '../scope.js';
import { HTTP, pos, type DirectiveSpec } from '../table.js';
import { builtinGetter, compileTemplate, varSlot, type Getter, type Template } from '../../vars.js';

type Spec = DirectiveSpec<Scope>;

/** nginx's MurmurHash2 (seed 0, little-endian 4-byte blocks) of a byte string. */
export function murmurHash2(data: Buffer): number {
  const M = 0x5bd1e995;
  let len = data.length;
  let h = len >>> 0;
  let i = 0;
  while (len >= 4) {
    let k = data[i]! | (data[i + 1]! << 8) | (data[i + 2]! << 16) | (data[i + 3]! << 24);
    k = Math.imul(k, M);
    k ^= k >>> 24;
    k = Math.imul(k, M);
    h = Math.imul(h, M) ^ k;
    i += 4;
    len -= 4;
  }
  if (len === 3) h ^= data[i + 2]! << 16;
  if (len >= 2) h ^= data[i + 1]! << 8;
  if (len >= 1) {
    h ^= data[i]!;
    h = Math.imul(h, M);
  }
  h ^= h >>> 13;
  h = Math.imul(h, M);
  h ^= h >>> 15;
  return h >>> 0;
}

/** "12.34" (at most two decimals) in hundredths; NaN when nginx would refuse it. */
function hundredths(s: string): number {
  const m = /^(\d*)(?:\.(\d{0,2}))?$/.exec(s);
  if (!m || s === '' || s === '.') return Number.NaN;
  return Number(m[1] || '0') * 100 + Number((m[2] ?? '').padEnd(2, '0'));
}

const splitSpec: Spec = {
  name: 'split_clients', ctx: HTTP, args: 2, block: true,
  set(s, d) {
    const [srcArg, varArg] = d.args as [string, string];
    if (!varArg.startsWith('$') || varArg.length < 2) throw new ProxyConfError('BAD_VALUE', `invalid variable name "${varArg}"`, pos(d));
    const name = varArg.slice(1);
    if (builtinGetter(name) !== undefined) throw new ProxyConfError('BAD_VALUE', `the duplicate "${name}" variable`, pos(d));
    const source: Template = compileTemplate(srcArg, s.reg, pos(d));
    const bounds: number[] = [];
    const values: string[] = [];
    let sum = 0;
    let last = 0;
    for (const e of d.block!) {
      if (e.block !== undefined) throw new ProxyConfError('SYNTAX', 'unexpected "{"', pos(e));
      // nginx reads past the end with no value and ignores extra ones; both are refused here.
      if (e.args.length !== 1) throw new ProxyConfError('ARG_COUNT', 'invalid number of the split_clients parameters (one value per percentage)', pos(e));
      let pct = 0;
      if (e.name !== '*') {
        pct = e.name.endsWith('%') ? hundredths(e.name.slice(0, -1)) : Number.NaN;
        if (!(pct > 0)) throw new ProxyConfError('BAD_VALUE', `invalid percent value "${e.name}"`, pos(e));
      }
      sum = pct ? sum + pct : 10000;
      if (sum > 10000) throw new ProxyConfError('BAD_VALUE', 'percent total is greater than 100%', pos(e));
      if (pct) {
        last = (last + Math.floor((pct * 0xffffffff) / 10000)) >>> 0;
        bounds.push(last);
      } else bounds.push(-1);
      values.push(e.args[0]!);
    }
    const i = s.reg.mapCount++;
    const lookup = (text: string): string => {
      const h = murmurHash2(Buffer.from(text, 'latin1'));
      for (let k = 0; k < bounds.length; k++) if (bounds[k]! < 0 || h < bounds[k]!) return values[k]!;
      return '';
    };
    const get: Getter = (r) => {
      const cache = (r.mapVals ??= []);
      let v = cache[i];
      if (v === undefined) cache[i] = v = lookup(source.eval(r));
      return v;
    };
    varSlot(s.reg, name).map = get;
    s.reg.declared.add(name);
  },
};

export const splitSpecs: Spec[] = [splitSpec];
