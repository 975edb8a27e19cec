/**
 * `geo [$address] $variable { ... }` (http context): a value chosen by the client address (or by an address a
 * template gives). As nginx: CIDR entries, IPv4 and IPv6, the longest prefix wins (`default` is 0.0.0.0/0 and
 * ::/0); or with `ranges`, IPv4 ranges kept per /16 block, a range inside an existing one splitting it and a
 * range across one refused ("overlaps"). `proxy` lists trusted addresses: when the address is one of them, it
 * is replaced from X-Forwarded-For (the last entry; with `proxy_recursive`, the last untrusted one). An address
 * that does not parse, and in `ranges` mode an IPv6 one, is looked up as 255.255.255.255, as nginx does.
 * Values are literal text. The value is computed once per request, like a map's.
 */
import { BlockList, isIP } from 'node:net';
import { ProxyConfError } from '../errors.js';
import type { ConfNode } from '../parse.js';
import type { Scope } from '../scope.js';
import type { AccessRule } from '../model.js';
import { HTTP, pos, type DirectiveSpec } from '../table.js';
import { builtinGetter, compileTemplate, varSlot, type Getter, type Template } from '../../vars.js';
import type { Rq } from '../../request.js';
import { realAddress } from './access.js';

type Spec = DirectiveSpec<Scope>;

const NONE = 0xffffffff;

/** A /16 block's ranges, sorted, not overlapping (start and end are the low 16 bits). */
interface Range {
  start: number;
  end: number;
  value: string;
}

interface GeoDef {
  index: number;
  source: Template | undefined;
  ranges: boolean;
  /** CIDR mode: per prefix length (longest first), the masked network to its value. */
  v4: Map<number, Map<number, string>>;
  v6: Map<number, Map<bigint, string>>;
  v4Lens: number[];
  v6Lens: number[];
  /** ranges mode: by the address's high 16 bits. */
  blocks: Map<number, Range[]>;
  dflt: string;
  proxies: AccessRule[] | undefined;
  recursive: boolean;
}

function ipv4(s: string): number | undefined {
  if (isIP(s) !== 4) return undefined;
  const p = s.split('.');
  return ((Number(p[0]) << 24) >>> 0) + (Number(p[1]) << 16) + (Number(p[2]) << 8) + Number(p[3]);
}

/** An IPv6 address as a 128-bit number (an embedded IPv4 tail included). */
function ipv6(s: string): bigint | undefined {
  if (isIP(s) !== 6) return undefined;
  let text = s;
  const dot = text.lastIndexOf(':');
  if (text.includes('.', dot)) {
    const v4 = ipv4(text.slice(dot + 1))!;
    text = `${text.slice(0, dot + 1)}${(v4 >>> 16).toString(16)}:${(v4 & 0xffff).toString(16)}`;
  }
  const [head, tail] = text.includes('::') ? text.split('::') as [string, string] : [text, undefined];
  const h = head === '' ? [] : head.split(':');
  const t = tail === undefined || tail === '' ? [] : tail.split(':');
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  let n = 0n;
  for (const g of groups) n = (n << 16n) | BigInt(parseInt(g, 16));
  return n;
}

const mask4 = (len: number): number => (len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0);
const mask6 = (len: number): bigint => (len === 0 ? 0n : ((1n << 128n) - 1n) ^ ((1n << BigInt(128 - len)) - 1n));

function lookup(g: GeoDef, r: Rq, remote: Getter): string {
  let text = g.source ? g.source.eval(r) : remote(r);
  if (g.proxies !== undefined && isIP(text)) {
    const xff = r.req.headers['x-forwarded-for'];
    if (xff !== undefined) {
      const found = realAddress(g.proxies, Array.isArray(xff) ? xff.join(', ') : xff, g.recursive, text);
      if (found !== null) text = found.addr;
    }
  }
  if (text.startsWith('::ffff:') && text.includes('.')) text = text.slice(7);
  let a4 = ipv4(text);
  if (a4 === undefined && (g.ranges || isIP(text) !== 6)) a4 = NONE;
  if (a4 !== undefined) {
    if (g.ranges) {
      const list = g.blocks.get(a4 >>> 16);
      const low = a4 & 0xffff;
      if (list) for (const x of list) if (low >= x.start && low <= x.end) return x.value;
      return g.dflt;
    }
    for (const len of g.v4Lens) {
      const v = g.v4.get(len)!.get((a4 & mask4(len)) >>> 0);
      if (v !== undefined) return v;
    }
    return '';
  }
  const a6 = ipv6(text)!;
  for (const len of g.v6Lens) {
    const v = g.v6.get(len)!.get(a6 & mask6(len));
    if (v !== undefined) return v;
  }
  return '';
}

function getter(g: GeoDef): Getter {
  const remote = builtinGetter('remote_addr')!;
  const i = g.index;
  return (r) => {
    const cache = (r.mapVals ??= []);
    let v = cache[i];
    if (v === undefined) cache[i] = v = lookup(g, r, remote);
    return v;
  };
}

/** "a.b.c.d/len", "a.b.c.d", IPv6 alike: the masked network, or undefined. Warns about low bits set. */
function network(text: string, e: ConfNode, s: Scope): { v6: boolean; net: number | bigint; len: number } | undefined {
  const slash = text.indexOf('/');
  const addr = slash < 0 ? text : text.slice(0, slash);
  const lenText = slash < 0 ? undefined : text.slice(slash + 1);
  const fam = isIP(addr);
  if (fam === 0 || (lenText !== undefined && !/^\d+$/.test(lenText))) return undefined;
  const max = fam === 4 ? 32 : 128;
  const len = lenText === undefined ? max : Number(lenText);
  if (len > max) return undefined;
  if (fam === 4) {
    const a = ipv4(addr)!;
    // With a mask nginx parses the address with a function whose error value is 255.255.255.255 (refused).
    if (a === NONE && lenText !== undefined) return undefined;
    const net = (a & mask4(len)) >>> 0;
    if (net !== a) s.env.warn(`low address bits of ${text} are meaningless`, pos(e));
    return { v6: false, net, len };
  }
  const a = ipv6(addr)!;
  const net = a & mask6(len);
  if (net !== a) s.env.warn(`low address bits of ${text} are meaningless`, pos(e));
  return { v6: true, net, len };
}

function setCidr(g: GeoDef, n: { v6: boolean; net: number | bigint; len: number }, value: string | undefined, text: string, e: ConfNode, s: Scope): void {
  const tables = (n.v6 ? g.v6 : g.v4) as Map<number, Map<number | bigint, string>>;
  let t = tables.get(n.len);
  const old = t?.get(n.net);
  if (value === undefined) {
    if (old === undefined) s.env.warn(`no network "${text}" to delete`, pos(e));
    else t!.delete(n.net);
    return;
  }
  if (old !== undefined) s.env.warn(`duplicate network "${text}", value: "${value}", old value: "${old}"`, pos(e));
  if (!t) tables.set(n.len, (t = new Map()));
  t.set(n.net, value);
}

const quad = (h: number, low: number): string => `${h >> 8}.${h & 0xff}.${low >> 8}.${low & 0xff}`;

/** nginx's range insertion, per /16 block: a new range may fall inside an existing one (which it splits). */
function addRange(g: GeoDef, start: number, end: number, value: string, text: string, e: ConfNode, s: Scope): void {
  for (let n = start; n <= end; n = (n + 0x10000 - (n & 0xffff)) >>> 0) {
    const h = n >>> 16;
    const lo = n === start ? n & 0xffff : 0;
    const hi = (n | 0xffff) >>> 0 > end ? end & 0xffff : 0xffff;
    let list = g.blocks.get(h);
    if (!list) g.blocks.set(h, (list = []));
    let i = list.length;
    let placed = false;
    while (i > 0 && !placed) {
      i--;
      const x = list[i]!;
      if (hi < x.start) continue;
      if (lo > x.end) list.splice(i + 1, 0, { start: lo, end: hi, value });
      else if (lo === x.start && hi === x.end) {
        s.env.warn(`duplicate range "${text}", value: "${value}", old value: "${x.value}"`, pos(e));
        x.value = value;
      } else if (lo > x.start && hi < x.end) {
        list.splice(i + 1, 0, { start: lo, end: hi, value }, { start: hi + 1, end: x.end, value: x.value });
        x.end = lo - 1;
      } else if (lo === x.start && hi < x.end) {
        list.splice(i, 0, { start: lo, end: hi, value });
        x.start = hi + 1;
      } else if (lo > x.start && hi === x.end) {
        list.splice(i + 1, 0, { start: lo, end: hi, value });
        x.end = lo - 1;
      } else {
        throw new ProxyConfError('BAD_VALUE', `range "${text}" overlaps "${quad(h, x.start)}-${quad(h, x.end)}"`, pos(e));
      }
      placed = true;
    }
    if (!placed) list.unshift({ start: lo, end: hi, value });
    if (n >= 0xffff0000) break;
  }
}

function deleteRange(g: GeoDef, start: number, end: number, text: string, e: ConfNode, s: Scope): void {
  let missed = false;
  for (let n = start; n <= end; n = (n + 0x10000 - (n & 0xffff)) >>> 0) {
    const h = n >>> 16;
    const lo = n === start ? n & 0xffff : 0;
    const hi = (n | 0xffff) >>> 0 > end ? end & 0xffff : 0xffff;
    const list = g.blocks.get(h);
    const i = list ? list.findIndex((x) => x.start === lo && x.end === hi) : -1;
    if (i < 0) missed = true;
    else list!.splice(i, 1);
    if (n >= 0xffff0000) break;
  }
  if (missed) s.env.warn(`no address range "${text}" to delete`, pos(e));
}

function parseRange(text: string, e: ConfNode): [number, number] {
  const dash = text.indexOf('-');
  const a = dash < 0 ? undefined : ipv4(text.slice(0, dash));
  const b = dash < 0 ? undefined : ipv4(text.slice(dash + 1));
  // nginx parses both ends with a function whose error value is 255.255.255.255, so that address is refused.
  if (a === undefined || b === undefined || a > b || a === NONE || b === NONE) throw new ProxyConfError('BAD_VALUE', `invalid range "${text}"`, pos(e));
  return [a, b];
}

function varName(arg: string, d: ConfNode): string {
  if (!arg.startsWith('$') || arg.length < 2) throw new ProxyConfError('BAD_VALUE', `invalid variable name "${arg}"`, pos(d));
  return arg.slice(1);
}

const geoSpec: Spec = {
  name: 'geo', ctx: HTTP, args: [1, 2], block: true,
  set(s, d) {
    const name = varName(d.args[d.args.length - 1]!, d);
    if (builtinGetter(name) !== undefined) throw new ProxyConfError('BAD_VALUE', `the duplicate "${name}" variable`, pos(d));
    let source: Template | undefined;
    if (d.args.length === 2) {
      varName(d.args[0]!, d);
      source = compileTemplate(d.args[0]!, s.reg, pos(d));
    }
    const g: GeoDef = {
      index: s.reg.mapCount++, source, ranges: false,
      v4: new Map(), v6: new Map(), v4Lens: [], v6Lens: [], blocks: new Map(), dflt: '', proxies: undefined, recursive: false,
    };
    let dfltSet: string | undefined;
    const entries = (list: ConfNode[]): void => {
      for (const e of list) {
        if (e.block !== undefined) throw new ProxyConfError('SYNTAX', 'unexpected "{"', pos(e));
        if (e.args.length === 0 && (e.name === 'ranges' || e.name === 'proxy_recursive')) {
          if (e.name === 'ranges') g.ranges = true;
          else g.recursive = true;
          continue;
        }
        if (e.args.length !== 1) throw new ProxyConfError('ARG_COUNT', 'invalid number of the geo parameters', pos(e));
        const arg = e.args[0]!;
        if (e.name === 'include') {
          s.table.resolve(e, HTTP).set({ ...s, walk: (_x, nodes) => entries(nodes) }, e);
          continue;
        }
        if (e.name === 'proxy') {
          const n = network(arg, e, s);
          if (n === undefined) throw new ProxyConfError('BAD_VALUE', `invalid network "${arg}"`, pos(e));
          const net = new BlockList();
          const addr = arg.split('/')[0]!;
          net.addSubnet(addr, n.len, n.v6 ? 'ipv6' : 'ipv4');
          (g.proxies ??= []).push({ allow: true, all: false, unix: false, net });
          continue;
        }
        if (e.name === 'default') {
          if (g.ranges) {
            if (dfltSet !== undefined) s.env.warn(`duplicate default geo range value: "${arg}", old value: "${dfltSet}"`, pos(e));
            g.dflt = dfltSet = arg;
          } else {
            setCidr(g, { v6: false, net: 0, len: 0 }, arg, 'default', e, s);
            setCidr(g, { v6: true, net: 0n, len: 0 }, arg, 'default', e, s);
          }
          continue;
        }
        const del = e.name === 'delete';
        const key = del ? arg : e.name;
        const value = del ? undefined : arg;
        if (g.ranges) {
          const [a, b] = parseRange(key, e);
          if (value === undefined) deleteRange(g, a, b, key, e, s);
          else addRange(g, a, b, value, key, e, s);
          continue;
        }
        const n = network(key, e, s);
        if (n === undefined) throw new ProxyConfError('BAD_VALUE', `invalid network "${key}"`, pos(e));
        setCidr(g, n, value, key, e, s);
      }
    };
    entries(d.block!);
    g.v4Lens = [...g.v4.keys()].sort((a, b) => b - a);
    g.v6Lens = [...g.v6.keys()].sort((a, b) => b - a);
    varSlot(s.reg, name).map = getter(g);
    s.reg.declared.add(name);
  },
};

export const geoSpecs: Spec[] = [geoSpec];
