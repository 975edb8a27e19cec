/** Running wrk and reading its report (requests/s, latency percentiles from --latency, errors). */
import { runCaptured } from './procs.js';

export const WRK = '/usr/bin/wrk';

export interface WrkResult {
  requests: number;
  seconds: number;
  rps: number;
  /** Latency percentiles from wrk's --latency distribution, in milliseconds. */
  p50: number;
  p75: number;
  p90: number;
  p99: number;
  socketErrors: { connect: number; read: number; write: number; timeout: number };
  non2xx: number;
  /** Whether wrk reported any socket error or non-2xx/3xx response: such a run is flagged. */
  errors: boolean;
  raw: string;
}

const UNIT_MS: Record<string, number> = { us: 0.001, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

function timeMs(text: string): number {
  const m = /^([\d.]+)(us|ms|s|m|h)$/.exec(text);
  if (!m) throw new Error(`wrk: unreadable time '${text}'`);
  return Number(m[1]) * UNIT_MS[m[2]!]!;
}

/** Parses the text wrk prints with --latency. Throws if a number the benchmark needs is missing. */
export function parseWrk(out: string): WrkResult {
  const pct = (p: string): number => {
    const m = new RegExp(`^\\s+${p}%\\s+(\\S+)\\s*$`, 'm').exec(out);
    if (!m) throw new Error(`wrk: no ${p}% latency line (was --latency given?)\n${out}`);
    return timeMs(m[1]!);
  };
  const total = /^\s+(\d+) requests in ([\d.]+)(us|ms|s|m|h),/m.exec(out);
  const rps = /^Requests\/sec:\s+([\d.]+)/m.exec(out);
  if (!total || !rps) throw new Error(`wrk: unreadable output\n${out}`);
  const se = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const socketErrors = se
    ? { connect: Number(se[1]), read: Number(se[2]), write: Number(se[3]), timeout: Number(se[4]) }
    : { connect: 0, read: 0, write: 0, timeout: 0 };
  const n2 = /Non-2xx or 3xx responses: (\d+)/.exec(out);
  const non2xx = n2 ? Number(n2[1]) : 0;
  return {
    requests: Number(total[1]),
    seconds: timeMs(`${total[2]}${total[3]}`) / 1000,
    rps: Number(rps[1]),
    p50: pct('50'),
    p75: pct('75'),
    p90: pct('90'),
    p99: pct('99'),
    socketErrors,
    non2xx,
    errors: non2xx > 0 || Object.values(socketErrors).some((n) => n > 0),
    raw: out,
  };
}

export interface WrkOptions {
  url: string;
  threads: number;
  connections: number;
  seconds: number;
}

export function wrkArgs(o: WrkOptions): string[] {
  return [`-t${o.threads}`, `-c${o.connections}`, `-d${o.seconds}s`, '--latency', o.url];
}

export async function runWrk(o: WrkOptions): Promise<WrkResult> {
  const r = await runCaptured('wrk', WRK, wrkArgs(o));
  if (r.code !== 0) throw new Error(`wrk exited with ${r.code}: ${r.stderr || r.stdout}`);
  return parseWrk(r.stdout);
}
