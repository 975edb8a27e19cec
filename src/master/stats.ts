/**
 * The stats the master serves: uWSGI 2.0's stats JSON (what uwsgitop, tsgi top and monitoring agents read)
 * and the same numbers as Prometheus text. Both are built from one snapshot of the master's state.
 */
import type { SlotState } from './scoreboard.js';

export interface SocketSnapshot {
  name: string;
  proto: string;
  /** Connections waiting to be accepted, when the kernel tells (TCP). */
  queue: number;
  maxQueue: number;
}

export interface WorkerSnapshot {
  id: number;
  pid: number;
  /** cheap: not running because of cheaper (never started, stopped, or stopping after its last request). */
  state: 'starting' | 'ready' | 'stopping' | 'cheap';
  spawnedAtMs: number;
  respawns: number;
  harakiriCount: number;
  slot: SlotState;
  rss: number;
  vsz: number;
}

export interface MasterSnapshot {
  version: string;
  pid: number;
  uid: number;
  gid: number;
  cwd: string;
  sockets: SocketSnapshot[];
  workers: WorkerSnapshot[];
  /** The spooler processes (docs/spooler.md), when a spooler is configured: uWSGI's "spoolers" list. */
  spoolers?: Array<{ dir: string; pid: number; tasks: number; respawns: number; running: number }>;
  /** The mules (docs/mules.md), when configured. uWSGI 2.0.21's stats have no mule list; tsgi adds one. */
  mules?: Array<{ id: number; pid: number; respawns: number; messages: number }>;
  /** cache2/cache (docs/cache.md): each cache's counters, as uWSGI's "caches" list; absent without caches. */
  caches?: Array<Record<string, string | number>>;
  /** enable-metrics (docs/metrics.md): uWSGI's "metrics" object; absent when metrics are off. */
  metrics?: Record<string, { type: number; oid: string; value: number }>;
}

function workerJson(w: WorkerSnapshot) {
  const s = w.slot;
  const busy = s.cores.some((c) => c.requestStartMs > 0);
  return {
    id: w.id,
    pid: w.pid,
    accepting: w.state === 'ready' ? 1 : 0,
    requests: s.requests,
    delta_requests: s.requests,
    exceptions: s.exceptions,
    harakiri_count: w.harakiriCount,
    signals: 0,
    signal_queue: 0,
    status: w.state === 'cheap' ? 'cheap' : w.state === 'stopping' ? 'pause' : busy ? 'busy' : 'idle',
    rss: w.rss,
    vsz: w.vsz,
    running_time: s.rtTotalUs,
    last_spawn: Math.floor(w.spawnedAtMs / 1000),
    respawn_count: w.respawns,
    tx: s.tx,
    avg_rt: s.requests ? Math.round(s.rtTotalUs / s.requests) : 0,
    apps: [{ id: 0, modifier1: 0, mountpoint: '', startup_time: 0, requests: s.requests, exceptions: s.exceptions, chdir: '' }],
    cores: s.cores.map((c, i) => ({
      id: i,
      requests: c.requests,
      static_requests: 0,
      routed_requests: 0,
      offloaded_requests: 0,
      write_errors: 0,
      read_errors: 0,
      in_request: c.requestStartMs > 0 ? 1 : 0,
      vars: [],
      req_info: c.requestStartMs > 0 ? { request_start: Math.floor(c.requestStartMs / 1000), request: c.request } : {},
    })),
  };
}

/** The stats document, with uWSGI 2.0's field names. */
export function statsDocument(s: MasterSnapshot) {
  const workers = s.workers.map(workerJson);
  return {
    version: s.version,
    listen_queue: s.sockets[0]?.queue ?? 0,
    listen_queue_errors: 0,
    signal_queue: 0,
    load: workers.reduce((n, w) => n + w.cores.filter((c) => c.in_request).length, 0),
    pid: s.pid,
    uid: s.uid,
    gid: s.gid,
    cwd: s.cwd,
    locks: [],
    ...(s.metrics ? { metrics: s.metrics } : {}),
    sockets: s.sockets.map((k) => ({ name: k.name, proto: k.proto, queue: k.queue, max_queue: k.maxQueue, shared: 0, can_offload: 0 })),
    workers,
    ...(s.spoolers ? { spoolers: s.spoolers } : {}),
    ...(s.mules ? { mules: s.mules } : {}),
    ...(s.caches ? { caches: s.caches } : {}),
  };
}

export function statsJson(s: MasterSnapshot, minified: boolean): string {
  return minified ? JSON.stringify(statsDocument(s)) : JSON.stringify(statsDocument(s), null, '\t');
}

/** Prometheus text exposition format (version 0.0.4). */
export function prometheusText(s: MasterSnapshot): string {
  const lines: string[] = [];
  const metric = (name: string, type: 'counter' | 'gauge', help: string, rows: Array<[string, number]>): void => {
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    for (const [labels, v] of rows) lines.push(`${name}${labels} ${v}`);
  };
  // Worker ids that do not run (cheaper) have no process to describe.
  const processes = s.workers.filter((w) => !(w.state === 'cheap' && w.pid === 0));
  const per = (f: (w: WorkerSnapshot) => number): Array<[string, number]> => processes.map((w) => [`{worker="${w.id}",pid="${w.pid}"}`, f(w)]);
  metric('tsgi_listen_queue', 'gauge', 'Connections waiting to be accepted on the first socket.', [['', s.sockets[0]?.queue ?? 0]]);
  metric('tsgi_workers', 'gauge', 'Worker processes.', [['', processes.length]]);
  metric('tsgi_workers_cheap', 'gauge', 'Worker ids not running because of cheaper (adaptive process spawning).',
    [['', s.workers.length - processes.length]]);
  metric('tsgi_worker_requests_total', 'counter', 'Requests served by the worker.', per((w) => w.slot.requests));
  metric('tsgi_worker_exceptions_total', 'counter', 'App exceptions in the worker.', per((w) => w.slot.exceptions));
  metric('tsgi_worker_tx_bytes_total', 'counter', 'Bytes sent by the worker.', per((w) => w.slot.tx));
  metric('tsgi_worker_busy', 'gauge', 'Requests the worker is serving now.', per((w) => w.slot.cores.filter((c) => c.requestStartMs > 0).length));
  metric('tsgi_worker_rss_bytes', 'gauge', 'Resident memory of the worker.', per((w) => w.rss));
  metric('tsgi_worker_avg_response_seconds', 'gauge', 'Average response time of the worker.', per((w) => (w.slot.requests ? w.slot.rtTotalUs / w.slot.requests / 1e6 : 0)));
  metric('tsgi_worker_respawns_total', 'counter', 'Times this worker id was started.', per((w) => w.respawns));
  metric('tsgi_worker_harakiri_total', 'counter', 'Requests killed by harakiri on this worker id.', per((w) => w.harakiriCount));
  return `${lines.join('\n')}\n`;
}
