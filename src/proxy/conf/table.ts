/**
 * Directive tables: each module declares its directives as data — name, the contexts it may appear in,
 * how many arguments it takes, whether it opens a block, and the function that stores it. The walker checks
 * context and argument count generically, so "is not allowed here" and "invalid number of arguments" come
 * from here with file:line, never from a handler.
 */
import { ProxyConfError, type ConfPos } from './errors.js';
import type { ConfNode } from './parse.js';

/** Contexts, as bits so one directive can list several. */
export const MAIN = 1 << 0;
export const EVENTS = 1 << 1;
export const HTTP = 1 << 2;
export const SRV = 1 << 3;
export const LOC = 1 << 4;
export const UPS = 1 << 5;
/** `if` inside server and inside location. */
export const SIF = 1 << 6;
export const LIF = 1 << 7;
export const TYPES = 1 << 8;
/** Inside `limit_except`. */
export const LMT = 1 << 9;
export const ANY = MAIN | EVENTS | HTTP | SRV | LOC | UPS | SIF | LIF | TYPES | LMT;
/** The three levels that share location-level settings. */
export const HSL = HTTP | SRV | LOC;

/** Argument count: exact number, a [min, max] range, or 'flag' (exactly one of on/off). */
export type ArgCount = number | readonly [number, number] | 'flag';
export const MORE = Number.POSITIVE_INFINITY;

export interface DirectiveSpec<S> {
  name: string;
  ctx: number;
  args: ArgCount;
  /** Opens a block; the children are walked by the handler. */
  block?: boolean;
  /** An nginx directive tsgi-proxy does not implement: its handler throws, before any shape check. */
  refused?: boolean;
  set: (scope: S, d: ConfNode) => void;
}

/** Directives accepted because they tune what nginx does internally and Node does on its own; docs/proxy.md
 * lists them as "accepted, no effect". Their arguments are still counted. */
export function tuning<S>(name: string, ctx: number, args: ArgCount): DirectiveSpec<S> {
  return { name, ctx, args, set() {} };
}

/** nginx directives tsgi-proxy knows and does not implement: an error naming file:line, never ignored. */
export function unsupported<S>(name: string, ctx: number, args: ArgCount, why: string): DirectiveSpec<S> {
  return {
    name, ctx, args,
    set(_s, d) {
      throw new ProxyConfError('NOT_SUPPORTED', `"${name}" directive is not supported by tsgi-proxy (${why})`, pos(d));
    },
  };
}

export function pos(d: ConfNode): ConfPos {
  return { file: d.file, line: d.line };
}

export function badValue(d: ConfNode, value: string, why?: string): ProxyConfError {
  return new ProxyConfError('BAD_VALUE', `invalid value "${value}" in "${d.name}" directive${why ? `, ${why}` : ''}`, pos(d));
}

export function argsOk(args: ArgCount, n: number): boolean {
  if (args === 'flag') return n === 1;
  if (typeof args === 'number') return n === args;
  return n >= args[0] && n <= args[1];
}

/** Directives by name; a name may have several specs (e.g. `server` in http and in upstream). */
export class DirectiveTable<S> {
  private readonly byName = new Map<string, DirectiveSpec<S>[]>();

  add(...specs: DirectiveSpec<S>[]): this {
    for (const s of specs) {
      const list = this.byName.get(s.name);
      if (list) list.push(s);
      else this.byName.set(s.name, [s]);
    }
    return this;
  }

  has(name: string): boolean {
    return this.byName.has(name);
  }

  names(): string[] {
    return [...this.byName.keys()];
  }

  /** Finds the spec for `d` in context `ctx` and checks block-ness and argument count. */
  resolve(d: ConfNode, ctx: number): DirectiveSpec<S> {
    const list = this.byName.get(d.name);
    if (!list) throw new ProxyConfError('UNKNOWN_DIRECTIVE', `unknown directive "${d.name}"`, pos(d));
    const spec = list.find((s) => (s.ctx & ctx) !== 0);
    if (!spec) throw new ProxyConfError('NOT_ALLOWED_HERE', `"${d.name}" directive is not allowed here`, pos(d));
    if (spec.refused) return spec; // refused whatever its shape (modules/unsupported.ts)
    if (spec.block && d.block === undefined) throw new ProxyConfError('SYNTAX', `directive "${d.name}" has no opening "{"`, pos(d));
    if (!spec.block && d.block !== undefined) throw new ProxyConfError('SYNTAX', `directive "${d.name}" is not terminated by ";"`, pos(d));
    if (!argsOk(spec.args, d.args.length)) {
      throw new ProxyConfError('ARG_COUNT', `invalid number of arguments in "${d.name}" directive`, pos(d));
    }
    if (spec.args === 'flag') {
      const v = d.args[0]!.toLowerCase();
      if (v !== 'on' && v !== 'off') throw badValue(d, d.args[0]!, 'it must be "on" or "off"');
    }
    return spec;
  }

  /** Applies every directive of a block in order. */
  walk(scope: S, list: ConfNode[], ctx: number): void {
    for (const d of list) this.resolve(d, ctx).set(scope, d);
  }
}

// ---- value parsers shared by the modules ----

export function parseFlag(d: ConfNode): boolean {
  return d.args[0]!.toLowerCase() === 'on';
}

/** Sizes: bytes, or with k/K, m/M, g/G suffixes. Returns NaN when invalid. */
export function parseSize(s: string): number {
  const m = /^(\d+)([kKmMgG]?)$/.exec(s);
  if (!m) return Number.NaN;
  const n = Number(m[1]);
  const unit = m[2]!.toLowerCase();
  return unit === 'k' ? n * 1024 : unit === 'm' ? n * 1024 * 1024 : unit === 'g' ? n * 1024 * 1024 * 1024 : n;
}

const TIME_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60000, h: 3600000, d: 86400000, w: 604800000, M: 2592000000, y: 31536000000 };

/** Times in milliseconds: "30", "30s", "1m 30s", "500ms"; a bare number is seconds. NaN when invalid. */
export function parseTimeMs(s: string): number {
  // Parts may be written together ("15h30m33s") or apart ("1m 30s"); a bare number (seconds) ends the value.
  const t = s.trim();
  if (t === '') return Number.NaN;
  const re = /(\d+)(ms|s|m|h|d|w|M|y)?\s*/y;
  let total = 0;
  let bare = false;
  while (re.lastIndex < t.length) {
    const m = re.exec(t);
    if (!m || bare) return Number.NaN;
    if (!m[2]) bare = true;
    total += Number(m[1]) * (m[2] ? TIME_UNITS[m[2]]! : 1000);
  }
  return total;
}

export function sizeArg(d: ConfNode, i = 0): number {
  const v = parseSize(d.args[i]!);
  if (Number.isNaN(v)) throw new ProxyConfError('BAD_VALUE', `"${d.name}" directive invalid value`, pos(d));
  return v;
}

export function timeArg(d: ConfNode, i = 0): number {
  const v = parseTimeMs(d.args[i]!);
  if (Number.isNaN(v)) throw new ProxyConfError('BAD_VALUE', `"${d.name}" directive invalid value`, pos(d));
  return v;
}

/** A time in whole seconds, for the directive values nginx keeps in seconds: "ms" is refused there. */
export function secondsArg(d: ConfNode, i = 0): number {
  const v = d.args[i]!;
  const ms = /ms/.test(v) ? Number.NaN : parseTimeMs(v);
  if (Number.isNaN(ms)) throw new ProxyConfError('BAD_VALUE', `"${d.name}" directive invalid value`, pos(d));
  return Math.floor(ms / 1000);
}

export function duplicate(d: ConfNode): ProxyConfError {
  return new ProxyConfError('DUPLICATE', `"${d.name}" directive is duplicate`, pos(d));
}

export function notSupported(d: ConfNode, what: string): ProxyConfError {
  return new ProxyConfError('NOT_SUPPORTED', `${what} in "${d.name}" directive is not supported by tsgi-proxy`, pos(d));
}
