/** Medians, ratios against the targets, and the tables (plain text for the terminal, Markdown for RESULTS.md). */
import type { AppName, Front, PeerName } from './peers.js';
import type { Memory } from './proc-stats.js';
import type { WrkResult } from './wrk.js';

/** One measured run: wrk's numbers (without its raw output) and what the benchmark measured beside them. */
export interface RunRecord extends Omit<WrkResult, 'raw'> {
  scenario: AppName;
  logging: boolean;
  peer: PeerName;
  round: number;
  /** Position of this run in the whole sequence of measured runs (1-based). */
  sequence: number;
  /** Measurements taken for this run (more than 1 when earlier ones were noisy; the quietest is kept). */
  attempts: number;
  /** Time spent waiting for an idle machine before the run. */
  quietWaitMs: number;
  cpu: {
    /** CPU seconds used during the measured run by the server's processes (master + workers). */
    server: number;
    nginx: number;
    wrk: number;
    bench: number;
    /** CPU seconds the whole machine was busy, and the CPU seconds available (cores x wall time). */
    machineBusy: number;
    capacity: number;
    /** Busy CPU not accounted for by the processes above: something else competed for the cores. */
    other: number;
    otherPct: number;
    serverUsPerRequest: number;
    nginxUsPerRequest: number;
    wrkUsPerRequest: number;
  };
  memory: Memory;
}

export interface PeerSummary {
  scenario: AppName;
  logging: boolean;
  peer: PeerName;
  runs: number;
  rps: number;
  rpsMin: number;
  rpsMax: number;
  p50: number;
  p99: number;
  pssMb: number;
  ussMb: number;
  rssMb: number;
  processes: number;
  serverUsPerRequest: number;
  nginxUsPerRequest: number;
  wrkUsPerRequest: number;
  /** Server + nginx + wrk CPU per request: on a saturated machine, throughput is inversely proportional. */
  totalUsPerRequest: number;
  errorRuns: number;
  maxOtherPct: number;
}

export interface RatioSummary {
  scenario: AppName;
  logging: boolean;
  against: PeerName;
  /** tsgi's median req/s over the peer's median req/s. */
  ratio: number;
  /** Smallest and largest ratio of runs of the same round (tsgi's run / the peer's run). */
  pairedMin: number;
  pairedMax: number;
  /**
   * The ratio the CPU cost per request predicts when the cores are saturated (peer's total CPU µs per
   * request over tsgi's): much less sensitive to other load on the machine than req/s.
   */
  cpuRatio: number;
  target: number | undefined;
  met: boolean | undefined;
  /** How much more req/s tsgi needs to meet the target, in % (0 when met). */
  shortfallPct: number | undefined;
}

/**
 * The issues' targets, for request logging off: behind nginx (issue 2: the guide's deployment) and on each
 * server's own HTTP port (issue 3: HTTP for Python apps).
 */
export const TARGETS: Record<Front, Partial<Record<AppName, Partial<Record<PeerName, number>>>>> = {
  nginx: {
    hello: { uwsgi: 1.05, gunicorn: 1.8 },
    flask: { uwsgi: 1.0 },
  },
  http: {
    hello: { uwsgi: 1.6, gunicorn: 1.6 },
    flask: { uwsgi: 1.3, gunicorn: 1.3 },
  },
};

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

function groupKey(r: { scenario: string; logging: boolean }): string {
  return `${r.scenario}/${r.logging ? 'on' : 'off'}`;
}

function usPer(seconds: number, r: RunRecord): number {
  return (seconds / r.requests) * 1e6;
}

export function summarize(runs: readonly RunRecord[], front: Front): { peers: PeerSummary[]; ratios: RatioSummary[] } {
  const peers: PeerSummary[] = [];
  const ratios: RatioSummary[] = [];
  const groups = new Map<string, RunRecord[]>();
  for (const r of runs) {
    const k = groupKey(r);
    if (!groups.has(k)) groups.set(k, []);
    groups.get(k)!.push(r);
  }
  for (const list of groups.values()) {
    const { scenario, logging } = list[0]!;
    const names = [...new Set(list.map((r) => r.peer))];
    for (const peer of names) {
      const mine = list.filter((r) => r.peer === peer);
      const rps = mine.map((r) => r.rps);
      peers.push({
        scenario,
        logging,
        peer,
        runs: mine.length,
        rps: median(rps),
        rpsMin: Math.min(...rps),
        rpsMax: Math.max(...rps),
        p50: median(mine.map((r) => r.p50)),
        p99: median(mine.map((r) => r.p99)),
        pssMb: median(mine.map((r) => r.memory.pssKb)) / 1024,
        ussMb: median(mine.map((r) => r.memory.ussKb)) / 1024,
        rssMb: median(mine.map((r) => r.memory.rssKb)) / 1024,
        processes: median(mine.map((r) => r.memory.processes)),
        serverUsPerRequest: median(mine.map((r) => usPer(r.cpu.server, r))),
        nginxUsPerRequest: median(mine.map((r) => usPer(r.cpu.nginx, r))),
        wrkUsPerRequest: median(mine.map((r) => usPer(r.cpu.wrk, r))),
        totalUsPerRequest: median(mine.map((r) => usPer(r.cpu.server + r.cpu.nginx + r.cpu.wrk, r))),
        errorRuns: mine.filter((r) => r.errors).length,
        maxOtherPct: Math.max(...mine.map((r) => r.cpu.otherPct)),
      });
    }
    const tsgi = peers.find((p) => p.scenario === scenario && p.logging === logging && p.peer === 'tsgi');
    if (!tsgi) continue;
    for (const against of names.filter((n) => n !== 'tsgi')) {
      const other = peers.find((p) => p.scenario === scenario && p.logging === logging && p.peer === against)!;
      const paired: number[] = [];
      for (const t of list.filter((r) => r.peer === 'tsgi')) {
        const o = list.find((r) => r.peer === against && r.round === t.round);
        if (o) paired.push(t.rps / o.rps);
      }
      const ratio = tsgi.rps / other.rps;
      const target = logging ? undefined : TARGETS[front][scenario]?.[against];
      ratios.push({
        scenario,
        logging,
        against,
        ratio,
        pairedMin: Math.min(...paired),
        pairedMax: Math.max(...paired),
        cpuRatio: other.totalUsPerRequest / tsgi.totalUsPerRequest,
        target,
        met: target === undefined ? undefined : ratio >= target,
        shortfallPct: target === undefined ? undefined : Math.max(0, (target / ratio - 1) * 100),
      });
    }
  }
  return { peers, ratios };
}

const PEER_LABEL: Record<PeerName, string> = { tsgi: 'tsgi', uwsgi: 'uWSGI', gunicorn: 'gunicorn' };

function fmt(n: number, digits = 0): string {
  return Number.isFinite(n) ? n.toFixed(digits) : '-';
}

interface Column {
  title: string;
  numeric: boolean;
  cell(p: PeerSummary): string;
}

/** The table's columns; without nginx in front, its column is left out. */
function columns(front: Front): Column[] {
  const all: (Column & { nginxOnly?: boolean })[] = [
    { title: 'app', numeric: false, cell: (p) => p.scenario },
    { title: 'log', numeric: false, cell: (p) => (p.logging ? 'on' : 'off') },
    { title: 'server', numeric: false, cell: (p) => PEER_LABEL[p.peer] },
    { title: 'req/s', numeric: true, cell: (p) => fmt(p.rps) },
    { title: 'range', numeric: true, cell: (p) => `${fmt(p.rpsMin)}–${fmt(p.rpsMax)}` },
    { title: 'p50 ms', numeric: true, cell: (p) => fmt(p.p50, 2) },
    { title: 'p99 ms', numeric: true, cell: (p) => fmt(p.p99, 2) },
    { title: 'PSS MB', numeric: true, cell: (p) => fmt(p.pssMb, 1) },
    { title: 'USS MB', numeric: true, cell: (p) => fmt(p.ussMb, 1) },
    { title: 'RSS MB', numeric: true, cell: (p) => fmt(p.rssMb, 1) },
    { title: 'procs', numeric: true, cell: (p) => String(p.processes) },
    { title: 'server µs', numeric: true, cell: (p) => fmt(p.serverUsPerRequest, 1) },
    { title: 'nginx µs', numeric: true, cell: (p) => fmt(p.nginxUsPerRequest, 1), nginxOnly: true },
    { title: 'wrk µs', numeric: true, cell: (p) => fmt(p.wrkUsPerRequest, 1) },
    { title: 'total µs', numeric: true, cell: (p) => fmt(p.totalUsPerRequest, 1) },
    { title: 'other CPU', numeric: true, cell: (p) => `${fmt(p.maxOtherPct, 1)}%` },
    { title: 'errors', numeric: false, cell: (p) => (p.errorRuns ? `${p.errorRuns} run(s)` : 'none') },
  ];
  return all.filter((c) => front === 'nginx' || !c.nginxOnly);
}

function ratioLine(r: RatioSummary): string {
  const base = `${r.scenario} (logging ${r.logging ? 'on' : 'off'}): tsgi/${PEER_LABEL[r.against]} = ${r.ratio.toFixed(2)}x` +
    ` (same-round runs ${r.pairedMin.toFixed(2)}–${r.pairedMax.toFixed(2)}; predicted by CPU per request ${r.cpuRatio.toFixed(2)}x)`;
  if (r.target === undefined) return base;
  return r.met
    ? `${base}; target ≥ ${r.target.toFixed(2)}x: MET`
    : `${base}; target ≥ ${r.target.toFixed(2)}x: NOT MET (tsgi needs ${r.shortfallPct!.toFixed(1)}% more req/s)`;
}

export function legend(front: Front): string {
  const cpu = front === 'nginx' ? 'server/nginx/wrk µs' : 'server/wrk µs';
  const closed =
    front === 'http'
      ? ' uWSGI (--http-socket) and gunicorn (sync workers) close the connection after every response: wrk ' +
        'reconnects, and counts a read error for each response that ends at the close; those are expected and ' +
        'not flagged as errors (the JSON keeps the counts).'
      : '';
  return (
    'req/s: median of the rounds (range: lowest–highest); p50/p99: wrk --latency, median of the rounds; ' +
    `PSS/USS/RSS: memory of the server (master + workers${front === 'http' ? ' + router' : ''}) after the run; ${cpu}: CPU time ` +
    '(user + system) per request of each during the run, total: their sum; other CPU: share of the ' +
    `machine's CPU used by processes the benchmark did not start (highest of the rounds).${closed}`
  );
}

export function textReport(peers: readonly PeerSummary[], ratios: readonly RatioSummary[], front: Front): string {
  const cols = columns(front);
  const rows = [cols.map((c) => c.title), ...peers.map((p) => cols.map((c) => c.cell(p)))];
  const widths = cols.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  const lines = rows.map((r) => r.map((c, i) => (cols[i]!.numeric ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  ').trimEnd());
  lines.splice(1, 0, widths.map((w) => '-'.repeat(w)).join('  '));
  return `${lines.join('\n')}\n${legend(front)}\n\n${ratios.map(ratioLine).join('\n')}\n`;
}

export function markdownReport(peers: readonly PeerSummary[], ratios: readonly RatioSummary[], front: Front): string {
  const cols = columns(front);
  const rows = [cols.map((c) => c.title), cols.map((c) => (c.numeric ? '---:' : '---')), ...peers.map((p) => cols.map((c) => c.cell(p)))];
  const table = rows.map((r) => `| ${r.join(' | ')} |`).join('\n');
  return `${table}\n\n${legend(front)}\n\n${ratios.map((r) => `- ${ratioLine(r)}`).join('\n')}\n`;
}
