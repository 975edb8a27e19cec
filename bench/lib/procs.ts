/**
 * Processes the benchmark starts: each in its own process group (its own session), output to a log file,
 * and remembered until it is gone, so that every one of them can be stopped on the way out, even on Ctrl-C
 * or a crash of the benchmark itself.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync, writeFileSync } from 'node:fs';

export interface Managed {
  name: string;
  child: ChildProcess;
  /** Pid of the leader, which is also the process group id (the child is started with setsid). */
  pid: number;
  logFile: string | undefined;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  isAlive(): boolean;
  /** What the process wrote to its log file so far. */
  log(): string;
}

const live = new Set<Managed>();

let groupNice = 0;

/**
 * Every process group started from now on gets this nice value. Each group is its own session, and with
 * Linux autogroups (sched_autogroup_enabled) a session is scheduled as one unit whose weight is set by
 * /proc/PID/autogroup, not by the nice value of its processes.
 */
export function setGroupNice(nice: number): void {
  groupNice = nice;
}

function applyNice(pid: number): void {
  if (groupNice === 0) return;
  try {
    // spawn() returns once the child has called setsid() and exec'd, so this is the child's own autogroup.
    writeFileSync(`/proc/${pid}/autogroup`, String(groupNice));
  } catch (err) {
    throw new Error(`cannot set the scheduling priority of pid ${pid} (/proc/${pid}/autogroup): ${(err as Error).message}`);
  }
}

export interface StartOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** stdout and stderr go to this file; without one they are discarded. */
  logFile?: string;
}

/** Starts `cmd args` as the leader of a new process group. */
export function startGroup(name: string, cmd: string, args: readonly string[], opts: StartOptions = {}): Managed {
  const fd = opts.logFile ? openSync(opts.logFile, 'a') : 'ignore';
  let child: ChildProcess;
  try {
    child = spawn(cmd, args, { cwd: opts.cwd, env: opts.env ?? process.env, stdio: ['ignore', fd, fd], detached: true });
  } finally {
    if (typeof fd === 'number') closeSync(fd);
  }
  if (child.pid === undefined) throw new Error(`${name}: could not start ${cmd}`);
  applyNice(child.pid);
  let alive = true;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => {
      alive = false;
      resolve({ code, signal });
    });
    child.once('error', () => {
      alive = false;
      resolve({ code: null, signal: null });
    });
  });
  const m: Managed = {
    name,
    child,
    pid: child.pid,
    logFile: opts.logFile,
    exited,
    isAlive: () => alive,
    log: () => {
      if (!opts.logFile) return '';
      try {
        return readFileSync(opts.logFile, 'utf8');
      } catch {
        return '';
      }
    },
  };
  live.add(m);
  return m;
}

/** Runs a command to completion in its own process group (killed with the rest on Ctrl-C), capturing stdout. */
export function runCaptured(name: string, cmd: string, args: readonly string[], env?: NodeJS.ProcessEnv): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true, env: env ?? process.env });
  if (child.pid === undefined) return Promise.reject(new Error(`${name}: could not start ${cmd}`));
  try {
    applyNice(child.pid);
  } catch {
    /* a command that already exited */
  }
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  const m: Managed = {
    name,
    child,
    pid: child.pid,
    logFile: undefined,
    exited,
    isAlive: () => child.exitCode === null && child.signalCode === null,
    log: () => stdout + stderr,
  };
  live.add(m);
  return new Promise((resolve, reject) => {
    child.once('error', (err) => {
      live.delete(m);
      reject(err);
    });
    child.once('close', (code) => {
      live.delete(m);
      killGroup(m.pid, 'SIGKILL'); // anything the command left behind in its group
      resolve({ code, stdout, stderr });
    });
  });
}

function killGroup(pgid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pgid, signal);
  } catch {
    /* the group is empty */
  }
}

function groupExists(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * Stops a server: `signal` to its leader (each server's own graceful or quick stop), then SIGKILL to the
 * whole group once the leader is gone or `graceMs` has passed, so that no worker outlives the benchmark.
 */
export async function stopGroup(m: Managed, signal: NodeJS.Signals, graceMs = 5000): Promise<void> {
  if (m.isAlive()) {
    try {
      process.kill(m.pid, signal);
    } catch {
      /* already gone */
    }
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([m.exited, new Promise<void>((r) => (timer = setTimeout(r, graceMs)))]);
    clearTimeout(timer);
  }
  killGroup(m.pid, 'SIGKILL');
  const deadline = Date.now() + 2000;
  while (groupExists(m.pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  live.delete(m);
}

/** Kills every process group still registered, synchronously (usable from an 'exit' handler). */
export function killAllSync(): void {
  for (const m of live) killGroup(m.pid, 'SIGKILL');
  live.clear();
}

/**
 * Makes sure nothing is left running however the benchmark ends: normal exit, an uncaught error, or
 * SIGINT/SIGTERM/SIGHUP. `cleanup` runs once, after the process groups are killed (e.g. to remove temp dirs).
 */
export function installCleanup(cleanup: () => void): void {
  let done = false;
  const run = (): void => {
    if (done) return;
    done = true;
    killAllSync();
    try {
      cleanup();
    } catch {
      /* best effort on the way out */
    }
  };
  process.on('exit', run);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(sig, () => {
      process.stderr.write(`\nbench: ${sig}: stopping every process the benchmark started\n`);
      run();
      process.exit(130);
    });
  }
  process.on('uncaughtException', (err) => {
    process.stderr.write(`bench: ${err.stack ?? err}\n`);
    run();
    process.exit(1);
  });
  process.on('unhandledRejection', (err) => {
    process.stderr.write(`bench: ${(err as Error)?.stack ?? err}\n`);
    run();
    process.exit(1);
  });
}
