/**
 * `map $source $variable { ... }` (http context). The variable is computed when a request first reads it and
 * kept for the rest of that request (`volatile`: computed at every read). Lookup order, as nginx's: the exact
 * key (case-insensitive), then with `hostnames` the longest `*.suffix`/`.suffix` then the longest `prefix.*`,
 * then the regexes in the order written, then `default` (empty when there is none). A regex that matches
 * replaces the request's captures, so `$1` or a named group can be used in the value (nginx does the same).
 * Templates read a map through its slot in the variable registry, so a map may be defined after its use.
 */
import { ProxyConfError } from '../errors.js';
import type { ConfNode } from '../parse.js';
import type { Scope } from '../scope.js';
import { HTTP, pos, tuning, type DirectiveSpec } from '../table.js';
import { builtinGetter, compileTemplate, varSlot, type Getter, type Template } from '../../vars.js';
import type { Rq } from '../../request.js';
import { compileRegex } from './regex.js';

type Spec = DirectiveSpec<Scope>;

interface MapDef {
  index: number;
  source: Template;
  volatile: boolean;
  hostnames: boolean;
  exact: Map<string, Template>;
  /** `*.example.com` and `.example.com`, by ".example.com"; `dot` also matches "example.com" itself (kept in exact). */
  head: Map<string, Template>;
  /** `www.example.*`, by "www.example.". */
  tail: Map<string, Template>;
  regexes: Array<{ re: RegExp; value: Template }>;
  dflt: Template | undefined;
}

function lookup(m: MapDef, r: Rq): string {
  let src = m.source.eval(r);
  if (m.hostnames && src.endsWith('.')) src = src.slice(0, -1);
  const low = src.toLowerCase();
  let t = m.exact.get(low);
  if (t === undefined && m.hostnames) {
    // Longest suffix first: the leftmost dot gives the longest ".rest".
    for (let i = low.indexOf('.'); i > 0 && t === undefined; i = low.indexOf('.', i + 1)) t = m.head.get(low.slice(i));
    for (let i = low.lastIndexOf('.'); i > 0 && t === undefined; i = low.lastIndexOf('.', i - 1)) t = m.tail.get(low.slice(0, i + 1));
  }
  if (t === undefined) {
    for (const x of m.regexes) {
      const hit = x.re.exec(src);
      if (hit) {
        r.captures = hit;
        t = x.value;
        break;
      }
    }
  }
  if (t === undefined) t = m.dflt;
  return t === undefined ? '' : t.eval(r);
}

function getter(m: MapDef): Getter {
  if (m.volatile) return (r) => lookup(m, r);
  const i = m.index;
  return (r) => {
    const cache = (r.mapVals ??= []);
    let v = cache[i];
    if (v === undefined) cache[i] = v = lookup(m, r);
    return v;
  };
}

function badParams(e: ConfNode): ProxyConfError {
  return new ProxyConfError('ARG_COUNT', 'invalid number of the map parameters', pos(e));
}

const mapSpec: Spec = {
  name: 'map', ctx: HTTP, args: 2, block: true,
  set(s, d) {
    const [srcArg, varArg] = d.args as [string, string];
    if (!varArg.startsWith('$') || varArg.length < 2) throw new ProxyConfError('BAD_VALUE', `invalid variable name "${varArg}"`, pos(d));
    const name = varArg.slice(1);
    if (builtinGetter(name) !== undefined) throw new ProxyConfError('BAD_VALUE', `the duplicate "${name}" variable`, pos(d));
    const m: MapDef = {
      index: s.reg.mapCount++,
      source: compileTemplate(srcArg, s.reg, pos(d)),
      volatile: false, hostnames: false,
      exact: new Map(), head: new Map(), tail: new Map(), regexes: [], dflt: undefined,
    };
    const seen = new Set<string>();
    const conflict = (key: string, e: ConfNode): void => {
      if (seen.has(key)) throw new ProxyConfError('BAD_VALUE', `conflicting parameter "${key}"`, pos(e));
      seen.add(key);
    };
    const entries = (list: ConfNode[]): void => {
      for (const e of list) {
        if (e.block !== undefined) throw new ProxyConfError('SYNTAX', 'unexpected "{"', pos(e));
        if (e.args.length === 0 && (e.name === 'hostnames' || e.name === 'volatile')) {
          if (e.name === 'hostnames') m.hostnames = true;
          else m.volatile = true;
          continue;
        }
        if (e.args.length !== 1) throw badParams(e);
        if (e.name === 'include') {
          s.table.resolve(e, HTTP).set({ ...s, walk: (_x, nodes) => entries(nodes) }, e);
          continue;
        }
        const value = compileTemplate(e.args[0]!, s.reg, pos(e));
        if (e.name === 'default') {
          if (m.dflt !== undefined) throw new ProxyConfError('BAD_VALUE', 'duplicate default map parameter', pos(e));
          m.dflt = value;
          continue;
        }
        let key = e.name;
        if (key.length > 1 && key.startsWith('~')) {
          const caseless = key.startsWith('~*');
          m.regexes.push({ re: compileRegex(key.slice(caseless ? 2 : 1), caseless, e, s), value });
          continue;
        }
        if (key.startsWith('\\')) key = key.slice(1);
        key = key.toLowerCase();
        if (m.hostnames && (key.startsWith('*.') || key.startsWith('.') || key.endsWith('.*'))) {
          const both = (key.startsWith('*.') || key.startsWith('.')) && key.endsWith('.*');
          const inner = key.startsWith('*.') ? key.slice(2) : key.startsWith('.') ? key.slice(1) : key.slice(0, -2);
          if (both || inner === '' || inner.includes('*')) throw new ProxyConfError('BAD_VALUE', `invalid hostname or wildcard "${e.name}"`, pos(e));
          if (key.endsWith('.*')) {
            conflict(key, e);
            m.tail.set(key.slice(0, -1), value);
          } else {
            const suffix = key.startsWith('*') ? key.slice(1) : key;
            conflict(suffix, e);
            m.head.set(suffix, value);
            // ".example.com" also matches "example.com" itself.
            if (key.startsWith('.')) {
              conflict(key.slice(1), e);
              m.exact.set(key.slice(1), value);
            }
          }
          continue;
        }
        conflict(key, e);
        m.exact.set(key, value);
      }
    };
    entries(d.block!);
    // A later map of the same variable replaces an earlier one, as in nginx.
    varSlot(s.reg, name).map = getter(m);
    s.reg.declared.add(name);
  },
};

export const mapSpecs: Spec[] = [mapSpec, tuning('map_hash_max_size', HTTP, 1), tuning('map_hash_bucket_size', HTTP, 1)];
