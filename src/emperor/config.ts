/**
 * The emperor's own configuration: which options it takes, and what each `emperor` value watches.
 *
 * The emperor runs no app: an app option on its command line or in its ini file is an error that says where it
 * belongs (a vassal file, or vassal-set). App options that come from the environment (TSGI_* / UWSGI_*) are
 * not refused: the environment is passed to every vassal, which reads them as its own, as uWSGI does.
 */
import { statSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import { ConfigError } from '../config/errors.js';
import type { Entry, Origin } from '../config/origin.js';
import { findOption } from '../config/options.js';

/** Options that configure the emperor itself (besides the emperor section and read-time keys). */
const EMPEROR_KEEPS = new Set(['logto', 'reload-mercy', 'master', 'die-on-term', 'strict', 'show-config']);
/** Keys that are read while the configuration is read, never options of a running process. */
const READ_TIME = new Set(['print', 'set', 'set-placeholder', 'ini', 'get', 'help', 'version']);

/** Refuses app options given to the emperor on its command line or in its ini files. */
export function checkEmperorEntries(entries: readonly Entry[]): void {
  for (const e of entries) {
    if (e.origin.kind !== 'argv' && e.origin.kind !== 'file') continue;
    const def = findOption(e.key);
    if (!def || READ_TIME.has(def.name) || def.section === 'Emperor' || EMPEROR_KEEPS.has(def.name)) continue;
    throw new ConfigError(
      'CONFLICT',
      `belongs in a vassal file: the emperor runs no app itself (to give it to every vassal, use vassal-set = ${def.name}=...)`,
      e.origin,
      e.key,
    );
  }
}

/** Config files the emperor starts a vassal for (uWSGI's list; tsgi itself reads ini, and says so for the rest). */
export const VASSAL_EXTENSIONS = ['.ini', '.xml', '.yml', '.yaml', '.json', '.js'] as const;

export function isVassalFile(name: string): boolean {
  return !name.startsWith('.') && VASSAL_EXTENSIONS.some((ext) => name.endsWith(ext) && name.length > ext.length);
}

/** The option that makes a vassal read its file, by extension (as uWSGI passes --ini, --xml, --yaml, --json). */
export function configFlag(file: string): string {
  if (file.endsWith('.ini')) return '--ini';
  if (file.endsWith('.xml')) return '--xml';
  if (file.endsWith('.yml') || file.endsWith('.yaml')) return '--yaml';
  return '--json';
}

/** What one `emperor` value watches: a directory, or a glob pattern. */
export type MonitorSpec =
  | { kind: 'dir'; text: string; dir: string }
  | { kind: 'glob'; text: string; pattern: string };

const GLOB_CHARS = /[*?[]/;

/**
 * `DIR`, `dir://DIR`, `GLOB`, `glob://GLOB` (uWSGI's spellings); relative paths are taken from the emperor's
 * working directory. A plain path that is no directory is refused with one line (a single file is a glob too:
 * `--emperor /etc/tsgi/app.ini` watches that one file).
 */
export function parseMonitor(value: string, origin: Origin, cwd: string): MonitorSpec {
  let text = value.trim();
  let kind: 'dir' | 'glob' | undefined;
  if (text.startsWith('dir://')) {
    kind = 'dir';
    text = text.slice(6);
  } else if (text.startsWith('glob://')) {
    kind = 'glob';
    text = text.slice(7);
  } else if (/^[a-z0-9]+:\/\//.test(text)) {
    throw new ConfigError('NOT_IMPLEMENTED', `'${value}': only folders and globs of vassal files are implemented (no ${text.split(':')[0]}:// monitor)`, origin, 'emperor');
  }
  if (text === '') throw new ConfigError('BAD_VALUE', 'a folder or a glob of vassal files is required', origin, 'emperor');
  const abs = isAbsolute(text) ? text : resolve(cwd, text);
  if (kind === 'glob' || (kind === undefined && GLOB_CHARS.test(text))) return { kind: 'glob', text: value, pattern: abs };
  let isDir = false;
  let isFile = false;
  try {
    const st = statSync(abs);
    isDir = st.isDirectory();
    isFile = st.isFile();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new ConfigError('FILE_NOT_FOUND', `${abs}: ${code === 'ENOENT' ? 'no such directory' : code} (create it, or give a glob such as '${abs}/*.ini')`, origin, 'emperor');
  }
  if (isDir) return { kind: 'dir', text: value, dir: abs };
  if (isFile && kind === undefined) return { kind: 'glob', text: value, pattern: abs };
  throw new ConfigError('BAD_VALUE', `${abs} is not a directory`, origin, 'emperor');
}
