/** Helpers for the emperor's tests: start one, read its stats, poll until something holds. */
import net from 'node:net';
import { tsgiBin } from './paths.js';
import { startProcess, type RunningProcess } from './procs.js';
import { getVars, uwsgiRequest, type Address, type ParsedResponse } from './uwsgi-client.js';

export interface VassalStats {
  name: string;
  file: string;
  monitor: string;
  status: string;
  pid: number | null;
  uid: number;
  gid: number;
  sockets: string[];
  restarts: number;
  reloads: number;
  first_start: number | null;
  last_start: number | null;
  ready_at: number | null;
  next_start: number | null;
  last_mod: number;
  last_exit: string | null;
  last_error: string | null;
}

export interface EmperorStats {
  version: string;
  pid: number;
  emperor: string[];
  emperor_tyrant: boolean;
  scans: number;
  vassals: VassalStats[];
}

/** Starts `tsgi ARGS` as an emperor and waits for its ready line (every vassal found at start has started or failed). */
export async function startEmperor(args: readonly string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; ready?: boolean; timeoutMs?: number } = {}): Promise<RunningProcess> {
  const p = startProcess(tsgiBin, args, opts);
  if (opts.ready !== false) await p.waitFor(/emperor: ready: \d+ vassal/, opts.timeoutMs ?? 60_000);
  return p;
}

/** Reads emperor-stats once: connect, read to the end, parse. */
export function readStats(addr: Address): Promise<EmperorStats> {
  return new Promise((resolve, reject) => {
    const s = typeof addr === 'string' ? net.connect(addr) : net.connect(addr.port, addr.host);
    const chunks: Buffer[] = [];
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('error', reject);
    s.on('close', () => {
      try {
        resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')) as EmperorStats);
      } catch (err) {
        reject(err);
      }
    });
  });
}

export function vassal(stats: EmperorStats, name: string): VassalStats | undefined {
  return stats.vassals.find((v) => v.name === name);
}

/** Polls `check` every `everyMs` until it returns a value other than undefined/false; fails after the safety timeout. */
export async function until<T>(what: string, check: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 30_000, everyMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const r = await check();
      if (r !== undefined && r !== false) return r;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}${last ? ` (last error: ${String(last)})` : ''}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** One uwsgi request to a vassal's socket. */
export function ask(addr: Address, path = '/', query = ''): Promise<ParsedResponse> {
  return uwsgiRequest(addr, getVars(query ? `${path}?${query}` : path));
}

/** Lines of a process's output that match `re`. */
export function linesMatching(output: string, re: RegExp): string[] {
  return output.split('\n').filter((l) => re.test(l));
}
