/**
 * The ini reader: uWSGI's dialect of ini, as uWSGI 2.0 reads it.
 *
 * - `[section]` headers; only the wanted section (default `uwsgi`) is kept.
 * - `key = value`, split at the first `=`, both sides trimmed; a line without `=` is a key with an empty value.
 * - Lines starting with `;` or `#` are comments; there are no inline comments (`a = 1 ; x` keeps `1 ; x`),
 *   and quotes are kept as written.
 * - Repeated keys accumulate (order is kept).
 *
 * Expansion of magic variables, `$(ENV)` and `@(file)` happens here because it depends on the file being read;
 * `%(placeholder)` expansion and the `for`/`if-*` logic run later, over all sources together (see logic.ts).
 */
import { readFileSync, realpathSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { ConfigError } from './errors.js';
import type { Entry, Origin } from './origin.js';
import { expandFileReferences, type MagicContext } from './magic.js';
import { findOption } from './options.js';

export interface IniLine {
  key: string;
  value: string;
  line: number;
}

export interface ParsedIni {
  lines: IniLine[];
  sectionFound: boolean;
}

/** Pure parse of ini text: no I/O, no expansion. */
export function parseIni(text: string, section: string): ParsedIni {
  const lines: IniLine[] = [];
  let current = '';
  let sectionFound = false;
  let lineNo = 0;
  for (const raw of text.split('\n')) {
    lineNo++;
    const line = raw.trim();
    if (line === '' || line[0] === ';' || line[0] === '#') continue;
    if (line[0] === '[') {
      const close = line.indexOf(']');
      current = (close === -1 ? line.slice(1) : line.slice(1, close)).trim();
      if (current === section) sectionFound = true;
      continue;
    }
    if (current !== section) continue;
    const eq = line.indexOf('=');
    if (eq === -1) lines.push({ key: line, value: '', line: lineNo });
    else lines.push({ key: line.slice(0, eq).trim(), value: line.slice(eq + 1).trim(), line: lineNo });
  }
  return { lines, sectionFound };
}

/** Splits `file.ini:section` (the section part never contains a slash). */
export function splitIniSpec(spec: string): { file: string; section: string | undefined } {
  const colon = spec.lastIndexOf(':');
  if (colon > 0 && !spec.slice(colon + 1).includes('/')) {
    return { file: spec.slice(0, colon), section: spec.slice(colon + 1) || undefined };
  }
  return { file: spec, section: undefined };
}

export interface IniReadOptions {
  /** Where the `ini` option itself was given, for error messages. */
  from: Origin;
  cwd: string;
  env: NodeJS.ProcessEnv;
  /** The first config file read (uWSGI's "non-template" variants %O %P ... refer to it). */
  first?: MagicContext | undefined;
  depth?: number;
}

export interface IniReadResult {
  entries: Entry[];
  magic: MagicContext;
}

/**
 * Reads `file[:section]` into entries, with magic variables, `$(ENV)` and `@(file)` expanded.
 * Nested `ini = other.ini` lines are read in place.
 */
export function readIniFile(spec: string, opts: IniReadOptions): IniReadResult {
  const { file, section } = splitIniSpec(spec);
  const wanted = section ?? 'uwsgi';
  const path = resolve(opts.cwd, file);
  let text: string;
  let real: string;
  try {
    real = realpathSync(path);
    if (statSync(real).isDirectory()) throw Object.assign(new Error('is a directory'), { code: 'EISDIR' });
    text = readFileSync(real, 'utf8');
  } catch (err) {
    throw new ConfigError('FILE_NOT_FOUND', `cannot read ini file ${path}: ${errnoText(err)}`, opts.from, 'ini');
  }
  const parsed = parseIni(text, wanted);
  if (!parsed.sectionFound) {
    throw new ConfigError('SECTION_NOT_FOUND', `no [${wanted}] section in ${path}`, opts.from, 'ini');
  }
  // Magic variables name the file as it was given (made absolute), symlinks not resolved, as uWSGI does: a vassal
  // `app1.ini` linked to a shared `app.skel` is %n = app1.
  const magic: MagicContext = { path, section: section ?? '', given: file };
  const depth = opts.depth ?? 0;
  if (depth > 16) throw new ConfigError('SYNTAX', `ini files include each other too deeply (at ${path})`, opts.from, 'ini');
  const entries: Entry[] = [];
  for (const l of parsed.lines) {
    const origin: Origin = { kind: 'file', file: real, line: l.line };
    // A per-vassal option (vassal-set) keeps %n, %d... for the emperor to expand against each vassal's file.
    const value = findOption(l.key)?.perVassal ? l.value : expandFileReferences(l.value, magic, opts.first ?? magic, opts.env, origin, opts.cwd);
    entries.push({ key: l.key, value, origin });
    if (CONFIG_SOURCE_KEYS.has(l.key)) {
      // uWSGI reads a nested config right where it is named; relative paths are taken from the process cwd.
      entries.push(...readConfigSource(l.key, value, { ...opts, from: origin, first: opts.first ?? magic, depth: depth + 1 }).entries);
    }
  }
  return { entries, magic };
}

/** Keys that pull in another configuration file where they appear. */
export const CONFIG_SOURCE_KEYS: ReadonlySet<string> = new Set(['ini', 'include', 'inherit', 'xml', 'xmlconfig', 'yaml', 'yml', 'json', 'js', 'config', 'ini-paste', 'ini-paste-logged']);

/**
 * Reads the file a config-source key names. `ini` is always ini; `include`/`inherit` go by the file's
 * extension, as uWSGI does; formats tsgi cannot read are an error, never skipped.
 */
export function readConfigSource(key: string, value: string, opts: IniReadOptions): IniReadResult {
  const { file } = splitIniSpec(value);
  const format = key === 'ini' ? 'ini' : key === 'include' || key === 'inherit' || key === 'config' ? (/\.ini$/.test(file) ? 'ini' : (/\.([a-z]+)$/.exec(file)?.[1] ?? '')) : key;
  if (format === 'ini') return readIniFile(value, opts);
  if (format === '') {
    throw new ConfigError('BAD_VALUE', `cannot tell the format of '${value}' (tsgi reads .ini files)`, opts.from, key);
  }
  throw new ConfigError('NOT_IMPLEMENTED', `'${value}': ${format} configuration files are not supported by tsgi yet (use ini)`, opts.from, key);
}

export function errnoText(err: unknown): string {
  const code = (err as NodeJS.ErrnoException)?.code;
  switch (code) {
    case 'ENOENT':
      return 'no such file or directory';
    case 'EACCES':
      return 'permission denied';
    case 'EISDIR':
      return 'is a directory';
    case 'ENOTDIR':
      return 'a path component is not a directory';
    default:
      return code ?? String((err as Error)?.message ?? err);
  }
}
