/**
 * How one vassal is started: the same `tsgi` program, reading its own file, with what the emperor gives every
 * vassal, in its own process group, with a link (Node's IPC channel) back to the emperor.
 *
 *   tsgi [--set KEY=VALUE]... --ini FILE [--ini INHERITED]...
 *
 * - vassal-set values come first, so the vassal's own file can override them (uWSGI's order); magic variables in
 *   them (%n, %d, ...) name the vassal's file.
 * - vassals-inherit files come after it (uWSGI's --inherit order); in them %n is the inherited file and %N the
 *   vassal's (uWSGI's rule for magic variables in included files).
 * - The environment is the emperor's, except: TSGI_VASSAL_X / UWSGI_VASSAL_X become TSGI_X / UWSGI_X (uWSGI's
 *   UWSGI_VASSAL_* rule), with magic variables naming the vassal's file; variables that configure the emperor
 *   itself (TSGI_EMPEROR, TSGI_INI, ...) are dropped, so a vassal never becomes an emperor by inheritance; NOTIFY_SOCKET is
 *   dropped (systemd's socket is the emperor's, as in uWSGI); TSGI_VASSAL names the vassal to itself.
 * - Working directory: the watched folder (uWSGI chdirs into it), or the emperor's own for a glob.
 * - emperor-tyrant: the file's owner and group (libuv drops supplementary groups when it switches).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigError } from '../config/errors.js';
import { expandFileReferences, type MagicContext } from '../config/magic.js';
import { findOption } from '../config/options.js';
import type { EmperorSettings } from '../config/resolve.js';
import { configFlag } from './config.js';
import { VASSAL_ENV } from './link.js';
import type { FoundFile } from './watch.js';

/** The `tsgi` program every vassal runs (this very package's bin/tsgi). */
export const TSGI_BIN = resolve(fileURLToPath(new URL('.', import.meta.url)), '../../../bin/tsgi');

export interface VassalCommand {
  args: string[];
  env: NodeJS.ProcessEnv;
  cwd: string;
  uid: number | undefined;
  gid: number | undefined;
}

/** The vassal file as magic variables see it: the path as found, symlinks not resolved (as the ini reader does). */
function magicOf(file: string): MagicContext {
  return { path: file, section: '', given: file };
}

/** Expands magic variables, $(ENV) and @(file) in a value as if it were written in the vassal's file. */
export function expandForVassal(value: string, file: string, env: NodeJS.ProcessEnv, cwd: string): string {
  const m = magicOf(file);
  return expandFileReferences(value, m, m, env, { kind: 'file', file: m.path, line: 0 }, cwd);
}

const PREFIXES = ['TSGI_', 'UWSGI_'] as const;

/** The vassal's environment, made from the emperor's (see the header). */
export function vassalEnv(emperorEnv: NodeJS.ProcessEnv, file: string, name: string, cwd: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  const renamed: Array<[string, string]> = [];
  for (const [key, value] of Object.entries(emperorEnv)) {
    if (value === undefined) continue;
    const prefix = PREFIXES.find((p) => key.startsWith(p));
    if (prefix) {
      const rest = key.slice(prefix.length);
      if (rest.startsWith('VASSAL_') && rest.length > 7) {
        renamed.push([`${prefix}${rest.slice(7)}`, value]);
        continue;
      }
      if (rest === 'RELOADS') continue;
      // The emperor's own configuration (TSGI_EMPEROR, TSGI_INI naming the emperor's file...) is not the vassal's.
      const option = findOption(rest.toLowerCase().replace(/_/g, '-'));
      if (option?.section === 'Emperor' || option?.name === 'ini') continue;
    }
    if (key === 'NOTIFY_SOCKET') continue;
    env[key] = value;
  }
  for (const [key, value] of renamed) env[key] = expandForVassal(value, file, emperorEnv, cwd);
  env[VASSAL_ENV] = name;
  return env;
}

/** Everything needed to start the vassal of `found`. Throws a ConfigError when a vassal-set value cannot be expanded. */
export function vassalCommand(found: FoundFile, settings: EmperorSettings, emperorEnv: NodeJS.ProcessEnv, emperorCwd: string): VassalCommand {
  const cwd = found.monitor.kind === 'dir' ? found.monitor.dir : emperorCwd;
  const args: string[] = [];
  for (const { value, origin } of settings.set) {
    try {
      args.push('--set', expandForVassal(value, found.path, emperorEnv, emperorCwd));
    } catch (err) {
      if (err instanceof ConfigError) throw new ConfigError(err.code, `vassal-set ${value}: ${err.detail}`, origin);
      throw err;
    }
  }
  args.push(configFlag(found.path), found.path);
  for (const file of settings.inherit) args.push('--ini', resolve(emperorCwd, file));
  return {
    args,
    env: vassalEnv(emperorEnv, found.path, found.name, emperorCwd),
    cwd,
    uid: settings.tyrant ? found.stamp.uid : undefined,
    gid: settings.tyrant ? found.stamp.gid : undefined,
  };
}

/**
 * Starts the vassal: its own process group (the emperor can end a vassal and everything it spawned at once, and a
 * terminal's Ctrl-C reaches the emperor only, which stops the vassals in order), stdout and stderr on the
 * emperor's log, the link on fd 3.
 */
export function spawnVassal(cmd: VassalCommand, logFd: number): ChildProcess {
  return spawn(process.execPath, [TSGI_BIN, ...cmd.args], {
    cwd: cmd.cwd,
    env: cmd.env,
    stdio: ['ignore', logFd, logFd, 'ipc'],
    detached: true,
    ...(cmd.uid !== undefined ? { uid: cmd.uid } : {}),
    ...(cmd.gid !== undefined ? { gid: cmd.gid } : {}),
  });
}
