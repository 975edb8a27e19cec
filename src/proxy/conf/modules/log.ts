/** Access log directives: access_log and log_format. */
import { ProxyConfError } from '../errors.js';
import type { LogFormat } from '../model.js';
import type { Scope } from '../scope.js';
import { HSL, HTTP, LIF, MORE, pos, tuning, type DirectiveSpec } from '../table.js';
import { compileTemplate, escapeLogDefault, escapeLogJson, newRegistry } from '../../vars.js';
import { fullPath } from './core.js';

type Spec = DirectiveSpec<Scope>;

export const COMBINED_SOURCE = '$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent"';

export function combinedFormat(): LogFormat {
  return { name: 'combined', template: compileTemplate(COMBINED_SOURCE, newRegistry(), { file: '<built-in>', line: 0 }, undefined, escapeLogDefault), escape: 'default' };
}

export const logSpecs: Spec[] = [
  {
    name: 'log_format', ctx: HTTP, args: [2, MORE],
    set(s, d) {
      let args = d.args;
      const name = args[0]!;
      let escape: LogFormat['escape'] = 'default';
      if (args[1]!.startsWith('escape=')) {
        const e = args[1]!.slice(7);
        if (e !== 'default' && e !== 'json' && e !== 'none') throw new ProxyConfError('BAD_VALUE', `unknown log format escaping "${e}"`, pos(d));
        escape = e;
        args = [name, ...args.slice(2)];
      }
      if (name === 'combined' || s.http!.logFormats.has(name)) throw new ProxyConfError('DUPLICATE', `duplicate "log_format" name "${name}"`, pos(d));
      if (args.length < 2) throw new ProxyConfError('ARG_COUNT', 'invalid number of arguments in "log_format" directive', pos(d));
      const wrap = escape === 'default' ? escapeLogDefault : escape === 'json' ? escapeLogJson : undefined;
      s.http!.logFormats.set(name, { name, template: compileTemplate(args.slice(1).join(''), s.reg, pos(d), undefined, wrap), escape });
    },
  },
  {
    name: 'access_log', ctx: HSL | LIF, args: [1, MORE],
    set(s, d) {
      if (d.args[0] === 'off') {
        if (d.args.length > 1) throw new ProxyConfError('ARG_COUNT', 'invalid number of arguments in "access_log" directive', pos(d));
        s.loc.accessLogs = 'off';
        return;
      }
      if (s.loc.accessLogs === 'off') s.loc.accessLogs = undefined;
      const p = d.args[0]!;
      if (p.startsWith('syslog:')) throw new ProxyConfError('NOT_SUPPORTED', '"syslog:" in "access_log" directive is not supported by tsgi-proxy', pos(d));
      const fmtName = d.args[1] ?? 'combined';
      let format: LogFormat | undefined = fmtName === 'combined' ? combinedFormat() : s.http?.logFormats.get(fmtName);
      if (!format) throw new ProxyConfError('BAD_VALUE', `unknown log format "${fmtName}"`, pos(d));
      let condition;
      for (const o of d.args.slice(2)) {
        if (o.startsWith('if=')) condition = compileTemplate(o.slice(3), s.reg, pos(d));
        else if (o.startsWith('buffer=') || o.startsWith('flush=')) {
          // Lines are always batched per event-loop turn; these sizes do not change what is written.
        } else if (o.startsWith('gzip')) throw new ProxyConfError('NOT_SUPPORTED', '"gzip" in "access_log" directive is not supported by tsgi-proxy', pos(d));
        else throw new ProxyConfError('BAD_VALUE', `invalid parameter "${o}"`, pos(d));
      }
      const path = p.includes('$') ? compileTemplate(p, s.reg, pos(d)) : compileTemplate(p === '/dev/stdout' || p === '/dev/stderr' ? p : fullPath(s, p), s.reg, pos(d));
      const list = (s.loc.accessLogs ??= []) as Exclude<typeof s.loc.accessLogs, 'off' | undefined>;
      list.push({ path, format, condition });
    },
  },
  tuning('open_log_file_cache', HSL, [1, 4]),
];
