/**
 * The static-file options (uWSGI's static-map family) read into one plain object: validated here, with the
 * file and line of a bad value, and passed as JSON to whichever process serves the files (docs/static-files.md).
 */
import { resolve as resolveFrom } from 'node:path';
import { ConfigError } from '../config/errors.js';
import type { Origin } from '../config/origin.js';

/** A mount point and what it maps to. */
export interface StaticMount {
  /** The request path prefix ('' for check-static: every path). */
  mount: string;
  /** A directory, or the one file a mount serves. */
  path: string;
  /** static-map2: the whole request path is appended to `path`, not only what follows the mount. */
  appendWhole: boolean;
}

export type ExpiresMatch = 'filename' | 'uri' | 'path-info' | 'type';

export interface ExpiresRule {
  match: ExpiresMatch;
  /** A regular expression (JavaScript and Python read these the same way), or the exact type for 'type'. */
  pattern: string;
  seconds: number;
  /** From the file's modification time instead of now. */
  fromMtime: boolean;
}

export interface StaticSettings {
  /** static-map, static-map2 and check-static in the order given: the first that finds a file serves it. */
  mounts: StaticMount[];
  index: string[];
  skipExt: string[];
  safe: string[];
  expires: ExpiresRule[];
  gzipAll: boolean;
  gzipRegex: string[];
  gzipExt: string[];
  gzipDir: string[];
  /** mime.types files to read; empty: /etc/mime.types if it exists, else the built-in table. */
  mimeFiles: string[];
}

/** What the reader of options offers (config/resolve.ts's OptionValues). */
interface Values {
  all(name: string): Array<{ value: string; origin: Origin }>;
  bool(name: string): boolean;
}

const EXPIRES: Array<[string, ExpiresMatch, boolean]> = [
  ['static-expires', 'filename', false],
  ['static-expires-mtime', 'filename', true],
  ['static-expires-uri', 'uri', false],
  ['static-expires-uri-mtime', 'uri', true],
  ['static-expires-path-info', 'path-info', false],
  ['static-expires-path-info-mtime', 'path-info', true],
  ['static-expires-type', 'type', false],
  ['static-expires-type-mtime', 'type', true],
];

function checkRegex(pattern: string, origin: Origin, option: string): string {
  try {
    new RegExp(pattern);
  } catch (err) {
    throw new ConfigError('BAD_VALUE', `bad regular expression '${pattern}': ${(err as Error).message}`, origin, option);
  }
  return pattern;
}

/**
 * Reads the static-file options; undefined when none maps anything (the common case: nothing to check per
 * request). Relative paths are taken from `base` (the app's chdir, else the directory tsgi started in).
 */
export function readStaticSettings(values: Values, base: string): StaticSettings | undefined {
  const resolvePath = (p: string): string => resolveFrom(base, p);
  const mounts: StaticMount[] = [];
  for (const option of ['static-map', 'static-map2'] as const) {
    for (const { value, origin } of values.all(option)) {
      const eq = value.indexOf('=');
      if (eq <= 0 || eq === value.length - 1) {
        throw new ConfigError('BAD_VALUE', `bad value '${value}': expected MOUNT=PATH (e.g. /static=/srv/app/static)`, origin, option);
      }
      const mount = value.slice(0, eq);
      if (!mount.startsWith('/')) throw new ConfigError('BAD_VALUE', `bad value '${value}': the mount point must start with /`, origin, option);
      mounts.push({ mount, path: resolvePath(value.slice(eq + 1)), appendWhole: option === 'static-map2' });
    }
  }
  for (const { value } of values.all('check-static')) mounts.push({ mount: '', path: resolvePath(value), appendWhole: true });
  if (mounts.length === 0) return undefined;
  const expires: ExpiresRule[] = [];
  for (const [option, match, fromMtime] of EXPIRES) {
    for (const { value, origin } of values.all(option)) {
      let pattern: string;
      let secondsText: string;
      if (match === 'type') {
        const eq = value.lastIndexOf('=');
        pattern = value.slice(0, eq).trim();
        secondsText = value.slice(eq + 1).trim();
        if (eq <= 0) throw new ConfigError('BAD_VALUE', `bad value '${value}': expected TYPE=SECONDS (e.g. text/css=86400)`, origin, option);
      } else {
        const sp = value.trimEnd().lastIndexOf(' ');
        pattern = value.slice(0, sp).trim();
        secondsText = value.slice(sp + 1).trim();
        if (sp <= 0 || pattern === '') throw new ConfigError('BAD_VALUE', `bad value '${value}': expected REGEX SECONDS (e.g. /* 86400)`, origin, option);
        checkRegex(pattern, origin, option);
      }
      if (!/^\d+$/.test(secondsText)) throw new ConfigError('BAD_VALUE', `bad value '${value}': '${secondsText}' is not a number of seconds`, origin, option);
      expires.push({ match, pattern, seconds: Number(secondsText), fromMtime });
    }
  }
  return {
    mounts,
    index: values.all('static-index').map((v) => v.value),
    skipExt: values.all('static-skip-ext').map((v) => v.value),
    safe: values.all('static-safe').map((v) => resolvePath(v.value)),
    expires,
    gzipAll: values.bool('static-gzip-all'),
    gzipRegex: values.all('static-gzip').map((v) => checkRegex(v.value, v.origin, 'static-gzip')),
    gzipExt: values.all('static-gzip-ext').map((v) => v.value),
    gzipDir: values.all('static-gzip-dir').map((v) => resolvePath(v.value)),
    mimeFiles: values.all('mime-file').map((v) => resolvePath(v.value)),
  };
}
