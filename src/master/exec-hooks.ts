/**
 * uWSGI's exec-* hooks: shell commands the master runs, and waits for, at fixed points of its life. A
 * command that fails stops the start (as in uWSGI, where the same failure exits with status 1); its output
 * goes where the master's log goes.
 *
 * The points, in the order they come: asap, pre-jail, in-jail (tsgi has no jail: these two come right after
 * asap), as-root (before the sockets are bound and privileges dropped), as-user (after the drop), pre-app
 * (before the first worker or app loader starts), and as-user-atexit (when tsgi stops, and before a reload).
 * A reload runs as-user-atexit, then as-user and pre-app again; the others run once, at start.
 */
import { spawnSync } from 'node:child_process';

export const EXEC_PHASES = ['asap', 'pre-jail', 'in-jail', 'as-root', 'as-user', 'pre-app', 'as-user-atexit'] as const;
export type ExecPhase = (typeof EXEC_PHASES)[number];
export type ExecHooks = Record<ExecPhase, readonly string[]>;

/** How uWSGI names each point in its "running ..." line. */
const LABELS: Record<ExecPhase, string> = {
  asap: 'asap', 'pre-jail': 'pre-jail', 'in-jail': 'in-jail', 'as-root': 'as root', 'as-user': 'as user', 'pre-app': 'pre app',
  'as-user-atexit': 'as user, at exit',
};

/**
 * Runs the commands of `phase` one after the other. Returns undefined when all succeeded, else the line
 * saying which failed and how (the caller decides: a start stops, an exit goes on).
 */
export function runExecHooks(hooks: ExecHooks, phase: ExecPhase, log: (line: string) => void, outFd: number | undefined,
  /** With a log master: the hook's output, collected (the master cannot read its own pipe while it waits). */
  collected?: (output: string) => void): string | undefined {
  for (const command of hooks[phase]) {
    log(`running "${command}" (${LABELS[phase]})...`);
    const out = collected ? 'pipe' : outFd ?? 'inherit';
    const r = spawnSync('/bin/sh', ['-c', command], { stdio: ['ignore', out, out], maxBuffer: 64 * 1024 * 1024 });
    if (collected) {
      const text = `${r.stdout?.toString() ?? ''}${r.stderr?.toString() ?? ''}`;
      if (text) collected(text);
    }
    if (r.error) return `exec-${phase}: "${command}" could not be run (${(r.error as NodeJS.ErrnoException).code ?? r.error.message})`;
    if (r.status !== 0) {
      return `exec-${phase}: "${command}" ${r.signal ? `was killed by ${r.signal}` : `exited with status ${r.status}`}`;
    }
  }
  return undefined;
}

export function hasExecHooks(hooks: ExecHooks): boolean {
  return EXEC_PHASES.some((p) => hooks[p].length > 0);
}
