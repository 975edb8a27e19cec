/**
 * What the master's Python side processes (spoolers, mules) share at their end: a graceful stop within a mercy,
 * an immediate kill, and the removal of their private run directory. Each keeps its own spawning and respawning,
 * which differ (control channels, stats).
 */
import type { ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';

/** A supervised process slot: its current child, and the timer of a pending respawn. */
export interface SupervisedProcess {
  child: ChildProcess | undefined;
  timer: NodeJS.Timeout | undefined;
}

/** SIGTERM to each one; SIGKILL to those still there after `mercyS` (logged as `name(p)`); resolves when all are gone. */
export function stopSupervised<P extends SupervisedProcess>(procs: readonly P[], mercyS: number, name: (p: P) => string, log: (line: string) => void): Promise<void> {
  const waits = procs.map((p) => {
    if (p.timer) clearTimeout(p.timer);
    p.timer = undefined;
    const child = p.child;
    if (!child) return Promise.resolve();
    return new Promise<void>((done) => {
      const kill = setTimeout(() => {
        if (mercyS > 0) log(`${name(p)} (pid: ${child.pid}) still running after ${mercyS} s: killed`);
        child.kill('SIGKILL');
      }, mercyS * 1000);
      child.once('exit', () => {
        clearTimeout(kill);
        done();
      });
      child.kill('SIGTERM');
    });
  });
  return Promise.all(waits).then(() => undefined);
}

/** An immediate stop: no respawn pending, every child killed now. */
export function killSupervised(procs: readonly SupervisedProcess[]): void {
  for (const p of procs) {
    if (p.timer) clearTimeout(p.timer);
    p.timer = undefined;
    p.child?.kill('SIGKILL');
  }
}

/** The private run directory, once the processes that used it are gone. */
export function removeRunDir(dir: string): void {
  try {
    rmSync(dir, { recursive: true, force: true });
  } catch {
    /* nothing to do */
  }
}
