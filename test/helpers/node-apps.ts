/** Shared by the Node worker tests: where the fixture apps are, a clean environment, memory and descriptors. */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from './paths.js';

export const NODE_APPS = join(repoRoot, 'test/fixtures/node-apps');

/** The environment of a shell without tsgi/uWSGI variables. */
export function cleanEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const k of Object.keys(env)) if (k.startsWith('UWSGI_') || k.startsWith('TSGI_')) delete env[k];
  return env;
}

export function openFds(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

/** Peak resident memory of a process since start or since resetPeakRss (VmHWM), in bytes. */
export function peakRss(pid: number): number {
  const m = /^VmHWM:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m![1]) * 1024;
}

/** Resets a process's peak resident memory to its current size (Linux: clear_refs 5). */
export function resetPeakRss(pid: number): void {
  writeFileSync(`/proc/${pid}/clear_refs`, '5');
}
