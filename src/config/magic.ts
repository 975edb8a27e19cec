/**
 * Expansions that depend on the config file being read: uWSGI's magic variables (`%d`, `%n`, ...),
 * environment references `$(NAME)` and file inclusion `@(path)`.
 *
 * Semantics follow uWSGI 2.0 as observed: an unknown magic letter expands to nothing, an unset `$(NAME)`
 * is left as written, `%(` is left for the placeholder pass.
 */
import { readFileSync, statSync } from 'node:fs';
import { availableParallelism, hostname, userInfo } from 'node:os';
import { basename, dirname, extname, resolve } from 'node:path';
import { ConfigError } from './errors.js';
import type { Origin } from './origin.js';
import { TSGI_VERSION } from '../version.js';

export interface MagicContext {
  /** Absolute path of the file as given (symlinks not resolved, as in uWSGI). */
  path: string;
  /** Section name as given after `:` ('' when the default section is read). */
  section: string;
  /** The path exactly as given on the command line or in the including file. */
  given: string;
}

/** uWSGI's djb33x hash of a string, printed as 8 upper-case hex digits (magic `%j`). */
export function djb33x(s: string): string {
  let h = 5381;
  const bytes = Buffer.from(s);
  for (const b of bytes) h = (((h << 5) + h) ^ b) >>> 0;
  return h.toString(16).toUpperCase().padStart(8, '0');
}

function groupName(gid: number): string {
  try {
    for (const line of readFileSync('/etc/group', 'utf8').split('\n')) {
      const f = line.split(':');
      if (f.length > 2 && Number(f[2]) === gid) return f[0] ?? '';
    }
  } catch {
    /* no /etc/group: fall through */
  }
  return String(gid);
}

function magicValue(letter: string, m: MagicContext, first: MagicContext): string | undefined {
  // Upper-case variants of the file letters refer to the first config file read, not the current one.
  const ctx = 'OPSDNCEXIJ'.includes(letter) ? first : m;
  const lower = letter.toLowerCase();
  switch (letter) {
    case 'v':
      return process.cwd();
    case 'V':
      return TSGI_VERSION;
    case 'h':
      return hostname();
    case 'k':
      return String(availableParallelism());
    case 't':
      return String(Math.floor(Date.now() / 1000));
    case 'T':
      return String(BigInt(Date.now()) * 1000n);
    case 'u':
      return String(process.getuid?.() ?? 0);
    case 'U':
      return userInfo().username;
    case 'g':
      return String(process.getgid?.() ?? 0);
    case 'G':
      return groupName(process.getgid?.() ?? 0);
    case '[':
      return '\x1b';
  }
  switch (lower) {
    case 'o':
      return ctx.given;
    case 'p':
      return ctx.path;
    case 's':
      return basename(ctx.path);
    case 'd':
      return dirname(ctx.path).replace(/\/?$/, '/');
    case 'e':
      return extname(ctx.path).replace(/^\./, '');
    case 'n': {
      const b = basename(ctx.path);
      const dot = b.lastIndexOf('.');
      return dot > 0 ? b.slice(0, dot) : b;
    }
    case 'c':
      return basename(dirname(ctx.path));
    case 'x':
      return ctx.section;
    case 'i':
      try {
        return String(statSync(ctx.path).ino);
      } catch {
        return '';
      }
    case 'j':
      return djb33x(ctx.path);
  }
  if (letter >= '0' && letter <= '9') {
    const parts = dirname(m.path).split('/').filter(Boolean);
    return parts[Number(letter)] ?? '';
  }
  return undefined;
}

/** Expands `%X` magic variables (not `%(`...`)`), `$(ENV)` and `@(file)` in one value (relative @(paths) are taken from the process cwd, as uWSGI does). */
export function expandFileReferences(
  value: string,
  m: MagicContext,
  first: MagicContext,
  env: NodeJS.ProcessEnv,
  origin: Origin,
  baseDir: string,
): string {
  if (value.indexOf('%') === -1 && value.indexOf('$(') === -1 && value.indexOf('@(') === -1) return value;
  let out = '';
  for (let i = 0; i < value.length; i++) {
    const c = value[i];
    const next = value[i + 1];
    if (c === '%' && next !== undefined && next !== '(') {
      i++;
      if (next === '%') {
        out += '%';
        continue;
      }
      out += magicValue(next, m, first) ?? '';
      continue;
    }
    if ((c === '$' || c === '@') && next === '(') {
      const close = value.indexOf(')', i + 2);
      if (close !== -1) {
        const inner = value.slice(i + 2, close);
        if (c === '$') {
          const v = env[inner];
          out += v === undefined ? value.slice(i, close + 1) : v;
        } else {
          out += readInclusion(inner, origin, baseDir);
        }
        i = close;
        continue;
      }
    }
    out += c;
  }
  return out;
}

function readInclusion(ref: string, origin: Origin, baseDir: string): string {
  if (/^[a-z]+:\/\//.test(ref)) {
    throw new ConfigError('NOT_IMPLEMENTED', `@(${ref}): only @(path) file inclusion is implemented in tsgi`, origin);
  }
  const path = resolve(baseDir, ref);
  try {
    const text = readFileSync(path, 'utf8');
    return text.endsWith('\n') ? text.slice(0, -1) : text;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'error';
    throw new ConfigError('FILE_NOT_FOUND', `@(${ref}): cannot read ${path} (${code})`, origin);
  }
}
