/**
 * The rewrite module: return, rewrite, set, break, if. Each level (server, location, if) keeps its own
 * script, run in order by the request pipeline; scripts are not inherited.
 */
import { ProxyConfError } from '../errors.js';
import { LocConf, type IfTest, type LocationConf, type ScriptOp } from '../model.js';
import type { ConfNode } from '../parse.js';
import type { Scope } from '../scope.js';
import { HTTP, LIF, LOC, MORE, SIF, SRV, pos, tuning, type DirectiveSpec } from '../table.js';
import { compileTemplate, type Template } from '../../vars.js';
import type { Rq } from '../../request.js';

/**
 * A rewrite replacement. Captures written after its "?" (in the new arguments) are escaped for an argument
 * when the request's URI had escapes or a "+" (nginx's rule; $1..$9, not named captures): "/a%25" captured as "/a%" goes into the
 * arguments as "/a%25" again.
 */
function compileReplacement(repl: string, s: Scope, d: ConfNode): Template {
  const q = repl.indexOf('?');
  if (q < 0 || q === repl.length - 1) return compileTemplate(repl, s.reg, pos(d));
  const head = compileTemplate(repl.slice(0, q + 1), s.reg, pos(d));
  const args = compileTemplate(repl.slice(q + 1), s.reg, pos(d), undefined, escapeCaptureArg, (name) => /^[0-9]$/.test(name));
  return {
    source: repl,
    constant: undefined,
    hasVars: true,
    eval: (r: Rq) => head.eval(r) + args.eval(r),
  };
}

function escapeCaptureArg(v: string, r: Rq): string {
  if (!/[%+]/.test(r.requestUri)) return v;
  return v.replace(/[\x00-\x20"#%&'+<>?\x7f-\xff]/g, (c) => '%' + c.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0'));
}
import { compileRegex } from './regex.js';

type Spec = DirectiveSpec<Scope>;
const SCRIPT_CTX = SRV | LOC | SIF | LIF;

function parseReturn(d: ConfNode, s: Scope): ScriptOp {
  const a0 = d.args[0]!;
  if (d.args.length === 1 && !/^\d+$/.test(a0)) {
    // "return URL": a 302 to a URL that must start with a scheme or a variable.
    if (!/^(https?:\/\/|\$)/.test(a0)) throw new ProxyConfError('BAD_VALUE', `invalid return code "${a0}"`, pos(d));
    return { op: 'return', code: 302, text: compileTemplate(a0, s.reg, pos(d)), pos: pos(d) };
  }
  const code = Number(a0);
  if (!/^\d+$/.test(a0) || code > 999) throw new ProxyConfError('BAD_VALUE', `invalid return code "${a0}"`, pos(d));
  const text = d.args[1] !== undefined ? compileTemplate(d.args[1], s.reg, pos(d)) : undefined;
  return { op: 'return', code, text, pos: pos(d) };
}

function parseRewrite(d: ConfNode, s: Scope): ScriptOp {
  const regex = compileRegex(d.args[0]!, false, d, s);
  const repl = d.args[1]!;
  const flag = d.args[2];
  if (flag !== undefined && !['last', 'break', 'redirect', 'permanent'].includes(flag)) {
    throw new ProxyConfError('BAD_VALUE', `invalid parameter "${flag}"`, pos(d));
  }
  return {
    op: 'rewrite',
    regex,
    replacement: compileReplacement(repl, s, d),
    flag: flag as 'last' | 'break' | 'redirect' | 'permanent' | undefined,
    redirectByScheme: /^(https?:\/\/|\$scheme)/.test(repl),
    pos: pos(d),
  };
}

function parseIfTest(d: ConfNode, s: Scope): IfTest {
  const a = [...d.args];
  const p = pos(d);
  // The condition arrives as words; the first starts with "(" and the last ends with ")".
  if (!a[0]!.startsWith('(') || !a[a.length - 1]!.endsWith(')')) throw new ProxyConfError('BAD_VALUE', `invalid condition "${a.join(' ')}"`, p);
  a[0] = a[0]!.slice(1);
  a[a.length - 1] = a[a.length - 1]!.slice(0, -1);
  const words = a.filter((w, i) => w !== '' || d.quoted[i]);
  if (words.length === 1) {
    if (!words[0]!.startsWith('$')) throw new ProxyConfError('BAD_VALUE', `invalid condition "${words[0]}"`, p);
    return { kind: 'var', value: compileTemplate(words[0]!, s.reg, p), negate: false };
  }
  if (words.length === 2) {
    const m = /^(!?)-([fdex])$/.exec(words[0]!);
    if (!m) throw new ProxyConfError('BAD_VALUE', `invalid condition "${words.join(' ')}"`, p);
    return { kind: 'file', test: m[2] as 'f' | 'd' | 'e' | 'x', value: compileTemplate(words[1]!, s.reg, p), negate: m[1] === '!' };
  }
  if (words.length === 3) {
    const [lhs, op, rhs] = words as [string, string, string];
    const value = compileTemplate(lhs, s.reg, p);
    if (op === '=' || op === '!=') return { kind: 'cmp', value, to: compileTemplate(rhs, s.reg, p), negate: op === '!=' };
    if (op === '~' || op === '~*' || op === '!~' || op === '!~*') {
      return { kind: 'regex', value, regex: compileRegex(rhs, op.endsWith('*'), d, s), negate: op.startsWith('!') };
    }
  }
  throw new ProxyConfError('BAD_VALUE', `invalid condition "${words.join(' ')}"`, p);
}

export const rewriteSpecs: Spec[] = [
  { name: 'return', ctx: SCRIPT_CTX, args: [1, 2], set: (s, d) => void s.script.push(parseReturn(d, s)) },
  { name: 'rewrite', ctx: SCRIPT_CTX, args: [2, 3], set: (s, d) => void s.script.push(parseRewrite(d, s)) },
  { name: 'break', ctx: SCRIPT_CTX, args: 0, set: (s) => void s.script.push({ op: 'break' }) },
  {
    name: 'set', ctx: SCRIPT_CTX, args: 2,
    set(s, d) {
      const v = d.args[0]!;
      if (!/^\$[A-Za-z0-9_]+$/.test(v)) throw new ProxyConfError('BAD_VALUE', `invalid variable name "${v}"`, pos(d));
      s.reg.declared.add(v.slice(1));
      s.script.push({ op: 'set', name: v.slice(1), value: compileTemplate(d.args[1]!, s.reg, pos(d)) });
    },
  },
  {
    name: 'if', ctx: SRV | LOC, args: [1, MORE], block: true,
    set(s, d) {
      const test = parseIfTest(d, s);
      const script: ScriptOp[] = [];
      if (s.ctx === SRV) {
        // In server context, `if` holds only rewrite directives.
        s.walk({ ...s, ctx: SIF, script }, d.block!, SIF);
        s.script.push({ op: 'if', test, script, conf: undefined, location: undefined });
        return;
      }
      // In a location, `if` is a nameless nested location whose settings apply when the test is true.
      const conf = new LocConf();
      const location: LocationConf = {
        name: `if ${d.args.join(' ')}`, kind: 'prefix', regex: undefined, conf, script, children: [], parent: s.location,
        autoRedirect: false, pos: pos(d),
      };
      s.walk({ ...s, ctx: LIF, loc: conf, script, location }, d.block!, LIF);
      s.script.push({ op: 'if', test, script, conf, location });
    },
  },
  tuning('rewrite_log', SCRIPT_CTX | HTTP, 'flag'),
  tuning('uninitialized_variable_warn', SCRIPT_CTX | HTTP, 'flag'),
];

