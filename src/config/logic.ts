/**
 * The pass that runs over every configuration entry once all sources are read, in order, as uWSGI 2.0 does:
 * `%(name)` placeholders, the configuration logic (`for`/`endfor`, `if-*`/`endif`), `print` and `exit`.
 *
 * Placeholder semantics (observed on uWSGI 2.0.21): `%(name)` takes the value of the FIRST entry named `name`
 * anywhere in the configuration — already expanded when that entry comes earlier, as written when it comes
 * later — and an unknown name is left as written. Inside a logic block `%(_)` is the loop item or the value
 * the condition tested.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { hostname } from 'node:os';
import { ConfigError } from './errors.js';
import type { Entry } from './origin.js';

const FOR_KEYS = new Set(['for', 'for-glob', 'for-times', 'for-readline']);
const END_FOR = new Set(['endfor', 'end-for']);
const END_IF = new Set(['endif', 'end-if']);

type Condition = (value: string, ctx: LogicContext) => { ok: boolean; item: string | undefined };

function notCond(c: Condition): Condition {
  return (v, ctx) => {
    const r = c(v, ctx);
    return { ok: !r.ok, item: r.ok ? undefined : v };
  };
}

const isFile = (p: string): boolean => {
  try {
    return statSync(p).isFile();
  } catch {
    return false;
  }
};
const isDir = (p: string): boolean => {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
};

const envCond: Condition = (v, ctx) => {
  const name = v.split('=')[0] ?? v;
  const val = ctx.env[name];
  if (val === undefined) return { ok: false, item: undefined };
  const eq = v.indexOf('=');
  if (eq !== -1) return { ok: val === v.slice(eq + 1), item: val };
  return { ok: true, item: val };
};
const existsCond: Condition = (v) => ({ ok: existsSync(v), item: v });
const fileCond: Condition = (v) => ({ ok: isFile(v), item: v });
const dirCond: Condition = (v) => ({ ok: isDir(v), item: v });
const hostnameCond: Condition = (v) => ({ ok: hostname() === v, item: v });
const hostnameMatchCond: Condition = (v) => {
  try {
    return { ok: new RegExp(v).test(hostname()), item: v };
  } catch {
    return { ok: false, item: v };
  }
};
const reloadCond: Condition = (_v, ctx) => ({ ok: ctx.reloading, item: undefined });
const pluginCond: Condition = (v) => ({ ok: ['python', 'python3', 'node', 'http'].includes(v.trim()), item: v });

const IF_CONDITIONS: ReadonlyMap<string, Condition> = new Map<string, Condition>([
  ['if-env', envCond],
  ['ifenv', envCond],
  ['if-not-env', notCond(envCond)],
  ['if-exists', existsCond],
  ['ifexists', existsCond],
  ['if-not-exists', notCond(existsCond)],
  ['if-file', fileCond],
  ['if-not-file', notCond(fileCond)],
  ['if-dir', dirCond],
  ['ifdir', dirCond],
  ['if-directory', dirCond],
  ['if-not-dir', notCond(dirCond)],
  ['if-hostname', hostnameCond],
  ['if-not-hostname', notCond(hostnameCond)],
  ['if-hostname-match', hostnameMatchCond],
  ['if-not-hostname-match', notCond(hostnameMatchCond)],
  ['if-reload', reloadCond],
  ['if-not-reload', notCond(reloadCond)],
  ['if-plugin', pluginCond],
  ['ifplugin', pluginCond],
  ['if-not-plugin', notCond(pluginCond)],
  // if-opt / if-not-opt need the entries themselves: handled in the pass.
]);

export function isLogicKey(key: string): boolean {
  return FOR_KEYS.has(key) || END_FOR.has(key) || END_IF.has(key) || IF_CONDITIONS.has(key) || key === 'if-opt' || key === 'if-not-opt';
}

export interface LogicContext {
  env: NodeJS.ProcessEnv;
  /** True when the configuration is read again for a reload (`if-reload`). */
  reloading: boolean;
  /** Where `print` goes (stdout for uWSGI). */
  print: (line: string) => void;
}

/** Thrown by `exit = N` in a configuration: the caller exits with `status`. */
export class ConfigExit extends Error {
  constructor(readonly status: number) {
    super(`configuration asked to exit with status ${status}`);
  }
}

/**
 * uWSGI 2.0's placeholder math: `%(foo + bar + 3)` — tokens separated by spaces, names resolved as
 * placeholders, `+ - * /` applied left to right without precedence, `++`/`--` add or take one, and two
 * operands in a row concatenate.
 */
function placeholderMath(expr: string, lookup: (name: string) => string | undefined): string {
  let acc: string | undefined;
  let op: string | undefined;
  for (const tok of expr.split(' ').filter(Boolean)) {
    if (tok === '++' || tok === '--') {
      acc = String(Number(acc ?? 0) + (tok === '++' ? 1 : -1));
      continue;
    }
    if (tok === '+' || tok === '-' || tok === '*' || tok === '/') {
      op = tok;
      continue;
    }
    const v = lookup(tok) ?? tok;
    if (acc === undefined) acc = v;
    else if (op === undefined) acc += v;
    else {
      const a = Number(acc);
      const b = Number(v);
      acc = String(op === '+' ? a + b : op === '-' ? a - b : op === '*' ? a * b : b === 0 ? 0 : Math.trunc(a / b));
      op = undefined;
    }
  }
  return acc ?? '';
}

/** Replaces `%(name)` (and `%(math expression)`) using `lookup`; unknown names are left as written. */
export function expandPlaceholders(value: string, lookup: (name: string) => string | undefined): string {
  if (value.indexOf('%(') === -1) return value;
  let out = '';
  let i = 0;
  while (i < value.length) {
    const start = value.indexOf('%(', i);
    if (start === -1) break;
    const close = value.indexOf(')', start + 2);
    if (close === -1) break;
    out += value.slice(i, start);
    const name = value.slice(start + 2, close);
    const v = name.includes(' ') ? placeholderMath(name, lookup) : lookup(name);
    out += v === undefined ? value.slice(start, close + 1) : v;
    i = close + 1;
  }
  return out + value.slice(i);
}

function replaceItem(value: string, item: string): string {
  return value.split('%(_)').join(item);
}

/** Finds the index of the entry that closes the block opened at `start` (or entries.length if unclosed). */
function blockEnd(entries: Entry[], start: number, opens: (k: string) => boolean, closes: Set<string>): number {
  let depth = 0;
  for (let j = start + 1; j < entries.length; j++) {
    const k = entries[j]!.key;
    if (opens(k)) depth++;
    else if (closes.has(k)) {
      if (depth === 0) return j;
      depth--;
    }
  }
  return entries.length;
}

function forItems(key: string, value: string, from: Entry): string[] {
  switch (key) {
    case 'for':
      return value.split(/\s+/).filter(Boolean);
    case 'for-times': {
      const n = Number.parseInt(value, 10);
      if (!Number.isFinite(n) || n < 0) throw new ConfigError('BAD_VALUE', `for-times needs a number, got '${value}'`, from.origin, key);
      return Array.from({ length: n }, (_, k) => String(k + 1));
    }
    case 'for-readline':
      try {
        return readFileSync(value, 'utf8').split('\n').map((l) => l.replace(/\r$/, '')).filter((l) => l !== '');
      } catch {
        return []; // as uWSGI: a missing file is an empty loop
      }
    case 'for-glob': {
      // Like glob(3) with GLOB_NOCHECK, as uWSGI uses it: no match leaves the pattern itself as the one item.
      const found = globSync(value);
      return found.length ? found : [value];
    }
  }
  return [];
}

/** A minimal glob (`*`, `?` in the last path components), enough for `for-glob` over config folders. */
export function globSync(pattern: string): string[] {
  const parts = pattern.split('/');
  let bases: string[] = [pattern.startsWith('/') ? '/' : '.'];
  for (let idx = pattern.startsWith('/') ? 1 : 0; idx < parts.length; idx++) {
    const part = parts[idx]!;
    if (part === '') continue;
    const next: string[] = [];
    if (!/[*?[]/.test(part)) {
      for (const b of bases) next.push(b === '/' ? `/${part}` : b === '.' ? part : `${b}/${part}`);
    } else {
      const re = new RegExp(`^${part.replace(/[.+^${}()|\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.')}$`);
      for (const b of bases) {
        let names: string[] = [];
        try {
          names = readdirSync(b).sort();
        } catch {
          continue;
        }
        for (const n of names) if (re.test(n) && !n.startsWith('.')) next.push(b === '/' ? `/${n}` : b === '.' ? n : `${b}/${n}`);
      }
    }
    bases = next;
  }
  return bases.filter((p) => existsSync(p));
}

/**
 * Runs the logic pass. Returns the entries as uWSGI's `show-config` would list them: logic keys kept,
 * loop bodies expanded, false `if` bodies dropped, every value expanded.
 */
export function runLogic(input: readonly Entry[], ctx: LogicContext): Entry[] {
  const entries: Entry[] = input.map((e) => ({ ...e }));
  const lookup = (name: string): string | undefined => {
    for (const e of entries) {
      if (e.key === name) return e.value;
      if ((e.key === 'set-placeholder' || e.key === 'set-ph') && e.value.startsWith(`${name}=`)) return e.value.slice(name.length + 1);
    }
    return undefined;
  };
  let i = 0;
  while (i < entries.length) {
    const e = entries[i]!;
    e.value = expandPlaceholders(e.value, lookup);
    const key = e.key;
    if (FOR_KEYS.has(key)) {
      const end = blockEnd(entries, i, (k) => FOR_KEYS.has(k), END_FOR);
      const body = entries.slice(i + 1, end);
      const items = forItems(key, e.value, e);
      const expanded: Entry[] = [];
      for (const b of body) for (const item of items) expanded.push({ key: b.key, value: replaceItem(b.value, item), origin: b.origin });
      entries.splice(i + 1, body.length, ...expanded);
      i++;
      continue;
    }
    const cond = IF_CONDITIONS.get(key);
    if (cond || key === 'if-opt' || key === 'if-not-opt') {
      let r: { ok: boolean; item: string | undefined };
      if (cond) r = cond(e.value, ctx);
      else {
        const eq = e.value.indexOf('=');
        const name = eq === -1 ? e.value : e.value.slice(0, eq);
        const found = entries.find((x) => x.key === name);
        const ok = found !== undefined && (eq === -1 || found.value === e.value.slice(eq + 1));
        r = key === 'if-opt' ? { ok, item: found?.value } : { ok: !ok, item: undefined };
      }
      const end = blockEnd(entries, i, (k) => IF_CONDITIONS.has(k) || k === 'if-opt' || k === 'if-not-opt', END_IF);
      const body = entries.slice(i + 1, end);
      const kept = r.ok ? body.map((b) => ({ key: b.key, value: r.item === undefined ? b.value : replaceItem(b.value, r.item), origin: b.origin })) : [];
      entries.splice(i + 1, body.length, ...kept);
      i++;
      continue;
    }
    if (key === 'print') ctx.print(e.value);
    else if (key === 'exit') {
      const n = Number.parseInt(e.value || '1', 10);
      throw new ConfigExit(Number.isFinite(n) ? n : 1);
    } else if ((key === 'set' || key === 'S') && e.value.includes('=')) {
      // `set = key=value` defines an option as if it had been written `key = value`.
      const eq = e.value.indexOf('=');
      entries.splice(i + 1, 0, { key: e.value.slice(0, eq), value: e.value.slice(eq + 1), origin: e.origin });
    }
    i++;
  }
  return entries;
}
