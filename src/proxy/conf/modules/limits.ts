/**
 * limit_req_zone / limit_req and limit_conn_zone / limit_conn: nginx's request-rate and concurrency limits.
 * A zone's state lives in each worker process (nginx keeps it in shared memory): see docs/proxy.md.
 */
import { ProxyConfError } from '../errors.js';
import type { LimitConnZone, LimitReqZone } from '../model.js';
import type { Scope } from '../scope.js';
import { HSL, HTTP, badValue, parseSize, pos, type DirectiveSpec } from '../table.js';
import type { ConfNode } from '../parse.js';
import { compileTemplate } from '../../vars.js';
import { locOnce } from './core.js';

type Spec = DirectiveSpec<Scope>;

/** "zone=name:size" of a *_zone directive: the name and the size in bytes. */
function zoneArg(d: ConfNode, a: string): { name: string; size: number } {
  const m = /^zone=([^:]+):(.+)$/.exec(a);
  if (!m) throw new ProxyConfError('BAD_VALUE', `invalid zone size "${a}"`, pos(d));
  const size = parseSize(m[2]!);
  if (Number.isNaN(size)) throw new ProxyConfError('BAD_VALUE', `invalid zone size "${a}"`, pos(d));
  if (size < 8 * 4096) throw new ProxyConfError('BAD_VALUE', `zone "${m[1]}" is too small`, pos(d));
  return { name: m[1]!, size };
}

function zoneRef(d: ConfNode, a: string): string {
  if (!a.startsWith('zone=') || a.length === 5) throw new ProxyConfError('BAD_VALUE', `invalid parameter "${a}"`, pos(d));
  return a.slice(5);
}

const LEVELS = ['info', 'notice', 'warn', 'error'];

function statusSpec(name: string, key: 'limitReqStatus' | 'limitConnStatus'): Spec {
  return locOnce(name, HSL, 1, key, (d) => {
    const n = Number(d.args[0]);
    if (!/^\d+$/.test(d.args[0]!) || n < 400 || n > 599) throw new ProxyConfError('BAD_VALUE', `value must be between 400 and 599`, pos(d));
    return n;
  });
}

function levelSpec(name: string, key: 'limitReqLogLevel' | 'limitConnLogLevel'): Spec {
  return locOnce(name, HSL, 1, key, (d) => {
    const v = d.args[0]!;
    if (!LEVELS.includes(v)) throw badValue(d, v);
    return v as 'info' | 'notice' | 'warn' | 'error';
  });
}

export const limitSpecs: Spec[] = [
  {
    name: 'limit_req_zone', ctx: HTTP, args: [3, 4],
    set(s, d) {
      let zone: { name: string; size: number } | undefined;
      let rate = 0;
      for (const a of d.args.slice(1)) {
        if (a.startsWith('zone=')) zone = zoneArg(d, a);
        else if (a.startsWith('rate=')) {
          const m = /^rate=(\d+)r\/([sm])$/.exec(a);
          if (!m || Number(m[1]) === 0) throw new ProxyConfError('BAD_VALUE', `invalid rate "${a}"`, pos(d));
          // Milli-requests a second, as nginx counts.
          rate = (Number(m[1]) * 1000) / (m[2] === 'm' ? 60 : 1);
        } else if (a === 'sync') throw new ProxyConfError('NOT_SUPPORTED', `"sync" in "limit_req_zone" directive is not supported by tsgi-proxy`, pos(d));
        else throw new ProxyConfError('BAD_VALUE', `invalid parameter "${a}"`, pos(d));
      }
      if (!zone) throw new ProxyConfError('BAD_VALUE', `"limit_req_zone" must have "zone" parameter`, pos(d));
      if (rate === 0) throw new ProxyConfError('BAD_VALUE', `invalid rate in "limit_req_zone" directive`, pos(d));
      const zones = s.http!.limitReqZones;
      if (zones.has(zone.name)) throw new ProxyConfError('DUPLICATE', `duplicate zone "${zone.name}"`, pos(d));
      const z: LimitReqZone = { name: zone.name, key: compileTemplate(d.args[0]!, s.reg, pos(d)), rate, maxStates: Math.max(64, Math.floor(zone.size / 64)), states: new Map(), pos: pos(d) };
      zones.set(zone.name, z);
    },
  },
  {
    name: 'limit_req', ctx: HSL, args: [1, 3],
    set(s, d) {
      let name = '';
      let burst = 0;
      let delay = 0;
      let nodelay = false;
      for (const a of d.args) {
        if (a.startsWith('zone=')) name = zoneRef(d, a);
        else if (a.startsWith('burst=')) {
          if (!/^\d+$/.test(a.slice(6)) || Number(a.slice(6)) === 0) throw new ProxyConfError('BAD_VALUE', `invalid burst value "${a}"`, pos(d));
          burst = Number(a.slice(6));
        } else if (a.startsWith('delay=')) {
          if (!/^\d+$/.test(a.slice(6))) throw new ProxyConfError('BAD_VALUE', `invalid delay value "${a}"`, pos(d));
          delay = Number(a.slice(6));
        } else if (a === 'nodelay') nodelay = true;
        else throw new ProxyConfError('BAD_VALUE', `invalid parameter "${a}"`, pos(d));
      }
      if (name === '') throw new ProxyConfError('BAD_VALUE', `"limit_req" must have "zone" parameter`, pos(d));
      const list = (s.loc.limitReq ??= []);
      if (list.some((l) => l.zoneName === name)) throw new ProxyConfError('DUPLICATE', `"${d.name}" directive is duplicate`, pos(d));
      list.push({ zoneName: name, zone: undefined, burst: burst * 1000, delay: nodelay ? Number.POSITIVE_INFINITY : delay * 1000, pos: pos(d) });
    },
  },
  statusSpec('limit_req_status', 'limitReqStatus'),
  levelSpec('limit_req_log_level', 'limitReqLogLevel'),
  locOnce('limit_req_dry_run', HSL, 'flag', 'limitReqDryRun', (d) => d.args[0]!.toLowerCase() === 'on'),
  {
    name: 'limit_conn_zone', ctx: HTTP, args: 2,
    set(s, d) {
      const zone = zoneArg(d, d.args[1]!);
      const zones = s.http!.limitConnZones;
      if (zones.has(zone.name)) throw new ProxyConfError('DUPLICATE', `duplicate zone "${zone.name}"`, pos(d));
      const z: LimitConnZone = { name: zone.name, key: compileTemplate(d.args[0]!, s.reg, pos(d)), maxStates: Math.max(64, Math.floor(zone.size / 64)), counts: new Map(), pos: pos(d) };
      zones.set(zone.name, z);
    },
  },
  {
    name: 'limit_conn', ctx: HSL, args: 2,
    set(s, d) {
      const name = d.args[0]!;
      const n = Number(d.args[1]);
      if (!/^\d+$/.test(d.args[1]!) || n === 0 || n > 65535) throw new ProxyConfError('BAD_VALUE', `invalid number of connections "${d.args[1]}"`, pos(d));
      const list = (s.loc.limitConn ??= []);
      if (list.some((l) => l.zoneName === name)) throw new ProxyConfError('DUPLICATE', `"${d.name}" directive is duplicate`, pos(d));
      list.push({ zoneName: name, zone: undefined, max: n, pos: pos(d) });
    },
  },
  statusSpec('limit_conn_status', 'limitConnStatus'),
  levelSpec('limit_conn_log_level', 'limitConnLogLevel'),
  locOnce('limit_conn_dry_run', HSL, 'flag', 'limitConnDryRun', (d) => d.args[0]!.toLowerCase() === 'on'),
];
