/**
 * Regexes in the configuration are PCRE in nginx; JavaScript's syntax covers what configs use. The two
 * spellings JavaScript lacks are translated: `(?P<name>` for named groups and a leading `(?i)`.
 */
import { ProxyConfError } from '../errors.js';
import type { ConfNode } from '../parse.js';
import type { Scope } from '../scope.js';
import { pos } from '../table.js';

export function compileRegex(src: string, caseless: boolean, d: ConfNode, s: Scope): RegExp {
  let body = src.replace(/\(\?P</g, '(?<');
  let flags = caseless ? 'i' : '';
  if (body.startsWith('(?i)')) {
    body = body.slice(4);
    flags = 'i';
  }
  let re: RegExp;
  try {
    re = new RegExp(body, flags);
  } catch (e) {
    throw new ProxyConfError('BAD_VALUE', `invalid regex "${src}": ${(e as Error).message.replace(/^Invalid regular expression: /, '')}`, pos(d));
  }
  for (const m of body.matchAll(/\(\?<([A-Za-z_][A-Za-z0-9_]*)>/g)) s.reg.declared.add(m[1]!);
  return re;
}
