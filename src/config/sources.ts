/**
 * Reads the raw configuration entries, in the order uWSGI applies them: environment variables first
 * (TSGI_* and UWSGI_*), then the command line from left to right, each `--ini` file read in place.
 * Later single-valued options override earlier ones; `--get` reports the first value.
 */
import { ConfigError } from './errors.js';
import { CONFIG_SOURCE_KEYS, readConfigSource, type readIniFile } from './ini.js';
import type { Entry, Origin } from './origin.js';
import { findOption, findShort, isKnownUnimplemented, unknownOptionError, type OptionDef } from './options.js';
import { UWSGI_SHORT_FLAGS } from './uwsgi-names.js';
import { isLogicKey } from './logic.js';

export interface ReadSourcesOptions {
  env: NodeJS.ProcessEnv;
  cwd: string;
  /** Collects non-fatal notes (e.g. an environment variable that names no option). */
  warn: (line: string) => void;
}

/** Variables uWSGI itself exports to its children (and TSGI_SYSLOG_SOCKET, where the syslog logger sends): not options. */
const INTERNAL_ENV = new Set(['RELOADS', 'ORIGINAL_PROC_NAME', 'VASSAL', 'EMPEROR_FD', 'EMPEROR_FD_CONFIG', 'EMPEROR_PROXY', 'SHARED_SOCKETS', 'SOCKETS',
  'SYSLOG_SOCKET']);

function fromEnv(env: NodeJS.ProcessEnv, warn: (l: string) => void): Entry[] {
  const out: Entry[] = [];
  for (const prefix of ['UWSGI_', 'TSGI_']) {
    for (const [name, value] of Object.entries(env)) {
      if (!name.startsWith(prefix) || value === undefined) continue;
      const rest = name.slice(prefix.length);
      if (INTERNAL_ENV.has(rest) || rest.startsWith('VASSAL_') || rest.startsWith('WORKER_') || rest.startsWith('TEST_')) continue;
      const key = rest.toLowerCase().replace(/_/g, '-');
      const origin: Origin = { kind: 'env', name };
      if (findOption(key) || isKnownUnimplemented(key)) out.push({ key, value, origin });
      else warn(`environment variable ${name} names no tsgi option; ignored`);
    }
  }
  return out;
}

/** Config files given as bare arguments are recognised by extension, as uWSGI does. */
function positionalConfigKey(arg: string): string | undefined {
  const base = arg.split(':')[0] ?? arg;
  if (/\.ini$/.test(base)) return 'ini';
  if (/\.(xml|ya?ml|json|js)$/.test(base)) return base.replace(/^.*\./, '').replace('yml', 'yaml');
  return undefined;
}

export function readSources(argv: readonly string[], opts: ReadSourcesOptions): Entry[] {
  const entries = fromEnv(opts.env, opts.warn);
  let firstIni: ReturnType<typeof readIniFile>['magic'] | undefined;

  const push = (key: string, value: string, origin: Origin, flag = false, written?: string): void => {
    const e: Entry = { key, value, origin };
    if (flag) e.flag = true;
    if (written !== undefined && written !== key) e.written = written;
    entries.push(e);
    if (CONFIG_SOURCE_KEYS.has(key)) {
      const r = readConfigSource(key, value, { from: origin, cwd: opts.cwd, env: opts.env, first: firstIni });
      firstIni ??= r.magic;
      entries.push(...r.entries);
    }
  };
  // Environment-provided ini files are read like command-line ones.
  for (const e of entries.splice(0)) push(e.key, e.value, e.origin);

  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const origin: Origin = { kind: 'argv', index: i };
    if (arg.startsWith('--') && arg.length > 2) {
      const eq = arg.indexOf('=');
      const name = eq === -1 ? arg.slice(2) : arg.slice(2, eq);
      const def = findOption(name);
      if (!def && !isKnownUnimplemented(name) && !isLogicKey(name) && name !== 'exit') throw unknownOptionError(name, origin);
      const key = def?.name ?? name;
      if (eq !== -1) {
        push(key, arg.slice(eq + 1), origin, false, name);
        continue;
      }
      if (!takesValue(def, argv[i + 1])) {
        push(key, def?.implicit ?? 'true', origin, true, name);
        continue;
      }
      if (i + 1 >= argv.length) throw new ConfigError('MISSING_VALUE', 'needs a value', origin, key);
      push(key, argv[++i]!, origin, false, name);
      continue;
    }
    if (arg.startsWith('-') && arg.length > 1 && arg !== '-') {
      // Short flags: `-s ADDR`, `-sADDR`, bundled booleans `-MT`.
      for (let k = 1; k < arg.length; k++) {
        const letter = arg[k]!;
        const def = findShort(letter);
        if (!def) {
          const uw = UWSGI_SHORT_FLAGS[letter];
          if (uw) throw new ConfigError('NOT_IMPLEMENTED', 'is not implemented in tsgi yet', origin, `-${letter} (--${uw})`);
          throw new ConfigError('UNKNOWN_OPTION', 'unknown option', origin, `-${letter}`);
        }
        if (def.kind === 'bool') {
          push(def.name, def.implicit ?? 'true', origin, true);
          continue;
        }
        const attached = arg.slice(k + 1);
        if (attached) push(def.name, attached, origin);
        else if (!takesValue(def, argv[i + 1])) push(def.name, def.implicit ?? '', origin, true);
        else if (i + 1 < argv.length) push(def.name, argv[++i]!, origin);
        else throw new ConfigError('MISSING_VALUE', 'needs a value', origin, def.name);
        break;
      }
      continue;
    }
    const cfgKey = positionalConfigKey(arg);
    if (cfgKey === 'ini') {
      push('ini', arg, origin);
      continue;
    }
    if (cfgKey) throw new ConfigError('NOT_IMPLEMENTED', `${cfgKey} configuration files are not supported yet (use ini)`, origin, arg);
    throw new ConfigError('SYNTAX', `unexpected argument '${arg}' (options start with --; config files end in .ini)`, origin);
  }
  return entries;
}

/**
 * Whether an option consumes the next argument: booleans only an explicit boolean word (`--master true`),
 * optional-value options (`--chmod-socket [MODE]`) only a fitting value, unknown ones anything not an option.
 */
function takesValue(def: OptionDef | undefined, next: string | undefined): boolean {
  if (next === undefined) return def !== undefined && def.kind !== 'bool' && def.implicit === undefined;
  if (!def) return !next.startsWith('-');
  if (def.kind === 'bool') return /^(true|false|yes|no|on|off|1|0)$/i.test(next);
  if (def.implicit !== undefined) return /^[0-7]{3,4}$/.test(next);
  return true;
}
