/** access module (allow, deny) and limit_except, the block whose settings apply to the other methods. */
import { BlockList, isIP } from 'node:net';
import { ProxyConfError } from '../errors.js';
import { LocConf, type AccessRule } from '../model.js';
import type { Scope } from '../scope.js';
import { HSL, LIF, LMT, LOC, MORE, duplicate, pos, type DirectiveSpec } from '../table.js';
import type { ConfNode } from '../parse.js';

type Spec = DirectiveSpec<Scope>;

const METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'MKCOL', 'COPY', 'MOVE', 'OPTIONS', 'PROPFIND', 'PROPPATCH', 'LOCK', 'UNLOCK', 'PATCH']);

function rule(allow: boolean, d: ConfNode): AccessRule {
  const v = d.args[0]!;
  if (v === 'all') return { allow, all: true, unix: false, net: undefined };
  if (v === 'unix:') return { allow, all: false, unix: true, net: undefined };
  const slash = v.indexOf('/');
  const addr = slash < 0 ? v : v.slice(0, slash);
  const family = isIP(addr);
  const bits = slash < 0 ? (family === 6 ? 128 : 32) : Number(v.slice(slash + 1));
  if (family === 0 || !/^\d+$/.test(slash < 0 ? String(bits) : v.slice(slash + 1)) || bits > (family === 6 ? 128 : 32)) {
    throw new ProxyConfError('BAD_VALUE', `invalid parameter "${v}"`, pos(d));
  }
  const net = new BlockList();
  net.addSubnet(addr, bits, family === 6 ? 'ipv6' : 'ipv4');
  return { allow, all: false, unix: false, net };
}

const accessSpec = (allow: boolean): Spec => ({
  name: allow ? 'allow' : 'deny', ctx: HSL | LIF | LMT, args: 1,
  set(s, d) {
    (s.loc.access ??= []).push(rule(allow, d));
  },
});

export const accessSpecs: Spec[] = [
  accessSpec(true),
  accessSpec(false),
  {
    name: 'limit_except', ctx: LOC, args: [1, MORE], block: true,
    set(s, d) {
      if (s.loc.limitExcept !== undefined) throw duplicate(d);
      const methods = new Set<string>();
      for (const m of d.args) {
        if (!METHODS.has(m)) throw new ProxyConfError('BAD_VALUE', `invalid method "${m}"`, pos(d));
        methods.add(m);
        // GET allows HEAD too, as in nginx.
        if (m === 'GET') methods.add('HEAD');
      }
      const conf = new LocConf();
      s.loc.limitExcept = { methods, conf, owner: s.loc };
      s.walk({ ...s, ctx: LMT, loc: conf }, d.block!, LMT);
    },
  },
];

/** Whether the access rules let the client in (the first rule that matches decides; none: allowed). */
export function accessAllowed(rules: AccessRule[], remote: string | undefined): boolean {
  let addr = remote;
  let family: 'ipv4' | 'ipv6' = 'ipv4';
  if (addr !== undefined) {
    if (addr.startsWith('::ffff:') && addr.includes('.')) addr = addr.slice(7);
    else if (addr.includes(':')) family = 'ipv6';
  }
  for (const r of rules) {
    if (r.all) return r.allow;
    if (addr === undefined) {
      if (r.unix) return r.allow;
      continue;
    }
    if (r.net !== undefined && r.net.check(addr, family)) return r.allow;
  }
  return true;
}
