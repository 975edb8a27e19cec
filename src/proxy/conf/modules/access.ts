/** access module (allow, deny) and limit_except, the block whose settings apply to the other methods. */
import { BlockList, isIP } from 'node:net';
import { isAbsolute, resolve as resolvePath } from 'node:path';
import { entries, unsupportedFormat } from '../../authbasic.js';
import { compileTemplate } from '../../vars.js';
import { ProxyConfError } from '../errors.js';
import { LocConf, type AccessRule } from '../model.js';
import type { Scope } from '../scope.js';
import { HSL, LIF, LMT, LOC, MORE, duplicate, parseFlag, pos, type DirectiveSpec } from '../table.js';
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

/** The realip module: the client address from a header, when the connection comes from a trusted address. */
const realIpSpecs: Spec[] = [
  {
    name: 'set_real_ip_from', ctx: HSL, args: 1,
    set(s, d) {
      if (d.args[0] === 'all') throw new ProxyConfError('BAD_VALUE', `invalid parameter "all"`, pos(d));
      (s.loc.realIpFrom ??= []).push(rule(true, d));
    },
  },
  {
    name: 'real_ip_header', ctx: HSL, args: 1,
    set(s, d) {
      const v = d.args[0]!.toLowerCase();
      if (v === 'proxy_protocol') throw new ProxyConfError('NOT_SUPPORTED', '"real_ip_header proxy_protocol" is not supported by tsgi-proxy (no PROXY protocol listeners)', pos(d));
      if (s.loc.realIpHeader !== undefined) throw duplicate(d);
      s.loc.realIpHeader = v;
    },
  },
  {
    name: 'real_ip_recursive', ctx: HSL, args: 'flag',
    set(s, d) {
      if (s.loc.realIpRecursive !== undefined) throw duplicate(d);
      s.loc.realIpRecursive = parseFlag(d);
    },
  },
];

/** Whether `addr` (a socket's remoteAddress; undefined for a unix socket) is in `rules`. */
export function trusted(rules: AccessRule[], addr: string | undefined): boolean {
  let family: 'ipv4' | 'ipv6' = 'ipv4';
  if (addr !== undefined) {
    if (addr.startsWith('::ffff:') && addr.includes('.')) addr = addr.slice(7);
    else if (addr.includes(':')) family = 'ipv6';
  }
  for (const r of rules) {
    if (addr === undefined ? r.unix : r.net !== undefined && r.net.check(addr, family)) return true;
  }
  return false;
}

/** "1.2.3.4", "1.2.3.4:80", "[::1]:80", "::1" (nginx's address-with-port parsing): address and port ('' if none). */
function parseAddrPort(s: string): { addr: string; port: string } | null {
  if (isIP(s)) return { addr: s, port: '' };
  let m = /^\[([^\]]+)\]:(\d{1,5})$/.exec(s) ?? /^\[([^\]]+)\]()$/.exec(s);
  if (m && isIP(m[1]!) === 6) return { addr: m[1]!, port: m[2]! };
  m = /^([^:]+):(\d{1,5})$/.exec(s);
  if (m && isIP(m[1]!) === 4 && Number(m[2]) <= 65535) return { addr: m[1]!, port: m[2]! };
  return null;
}

/**
 * nginx's forwarded-address walk: while the address in hand is trusted, take the last entry of the header's
 * list (with real_ip_recursive, go on leftwards while the entry taken is trusted too). An entry that is not an
 * address stops the walk. Returns null when the address does not change.
 */
export function realAddress(rules: AccessRule[], header: string, recursive: boolean, conn: string | undefined): { addr: string; port: string } | null {
  if (!trusted(rules, conn)) return null;
  let found: { addr: string; port: string } | null = null;
  let rest = header;
  for (;;) {
    rest = rest.replace(/[ ,]+$/, '');
    const i = Math.max(rest.lastIndexOf(' '), rest.lastIndexOf(','));
    const a = parseAddrPort(rest.slice(i + 1));
    if (a === null) return found;
    found = a;
    rest = i < 0 ? '' : rest.slice(0, i);
    if (!recursive || rest === '' || !trusted(rules, a.addr)) return found;
  }
}

/** auth_basic, auth_basic_user_file, satisfy; auth_request, auth_request_set. */
const authSpecs: Spec[] = [
  {
    name: 'auth_request', ctx: HSL, args: 1,
    set(s, d) {
      if (s.loc.authRequest !== undefined) throw duplicate(d);
      const v = d.args[0]!;
      s.loc.authRequest = v === 'off' ? null : v;
    },
  },
  {
    name: 'auth_request_set', ctx: HSL, args: 2,
    set(s, d) {
      const v = d.args[0]!;
      if (!/^\$[A-Za-z0-9_]+$/.test(v)) throw new ProxyConfError('BAD_VALUE', `invalid variable name "${v}"`, pos(d));
      s.reg.declared.add(v.slice(1));
      (s.loc.authRequestSet ??= []).push({ name: v.slice(1), value: compileTemplate(d.args[1]!, s.reg, pos(d)) });
    },
  },
  {
    name: 'auth_basic', ctx: HSL | LMT, args: 1,
    set(s, d) {
      if (s.loc.authBasic !== undefined) throw duplicate(d);
      s.loc.authBasic = d.args[0] === 'off' ? null : compileTemplate(d.args[0]!, s.reg, pos(d));
    },
  },
  {
    name: 'auth_basic_user_file', ctx: HSL | LMT, args: 1,
    set(s, d) {
      if (s.loc.authBasicUserFile !== undefined) throw duplicate(d);
      const arg = d.args[0]!;
      // Relative to the configuration's directory, as in nginx.
      const path = isAbsolute(arg) || arg.startsWith('$') ? arg : resolvePath(s.env.confPrefix, arg);
      const t = compileTemplate(path, s.reg, pos(d));
      s.loc.authBasicUserFile = t;
      // A file there now with a password format tsgi-proxy cannot check would refuse every login: say so now.
      if (t.constant !== undefined) {
        const text = s.env.fs.read(t.constant);
        if (typeof text === 'string') {
          for (const e of entries(text)) {
            const why = unsupportedFormat(e.hash);
            if (why !== undefined) throw new ProxyConfError('NOT_SUPPORTED', `${why} of user "${e.user}" is not supported by tsgi-proxy (it checks {PLAIN}, {SHA}, {SSHA}, $apr1$, $1$, $5$, $6$)`, { file: t.constant, line: e.line });
          }
        }
      }
    },
  },
  {
    name: 'satisfy', ctx: HSL | LMT, args: 1,
    set(s, d) {
      const v = d.args[0]!;
      if (v !== 'all' && v !== 'any') throw new ProxyConfError('BAD_VALUE', `invalid value "${v}"`, pos(d));
      if (s.loc.satisfy !== undefined) throw duplicate(d);
      s.loc.satisfy = v;
    },
  },
];

export const accessSpecs: Spec[] = [
  ...realIpSpecs,
  ...authSpecs,
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
