/**
 * uWSGI's metrics subsystem (enable-metrics, metric, metrics-dir; docs/metrics.md).
 *
 * Every metric's value is an int64 in one shared file (in /dev/shm, unlinked at once, like the scoreboard), in
 * the order of the list: the master's collector writes the built-in ones once a second from the scoreboard,
 * Python workers update the user ones in place (uwsgi.metric_inc & co., under a record lock on the 8 bytes),
 * so a metric update never goes through the master and nothing is done per request.
 */
import { closeSync, existsSync, ftruncateSync, openSync, readSync, unlinkSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError } from '../config/errors.js';
import { METRIC_TYPES, type MetricType, type MetricsSettings } from '../config/metrics.js';
import type { MasterSnapshot, WorkerSnapshot } from './stats.js';

/** How a built-in metric is computed from a snapshot; user metrics have none. */
type Collect = (s: MasterSnapshot, byId: Map<number, WorkerSnapshot>) => number;

interface Metric {
  name: string;
  type: MetricType;
  oid: string;
  collect?: Collect;
  /** type=alias: the index whose value this one shows. */
  target?: number;
  initial: number;
  /** metrics-dir: the metric's file (kept open) and the last value written there. */
  fd?: number;
  written?: number;
}

const PAGE = 4096;

export class Metrics {
  readonly fd: number;
  readonly size: number;
  private readonly list: Metric[] = [];
  private readonly buf: Buffer;

  constructor(settings: MetricsSettings, processes: number, cores: number, sockets: number) {
    const add = (name: string, type: MetricType, oid: string, collect?: Collect): void => {
      this.list.push({ name, type, oid, collect, initial: 0 });
    };
    const worker = (id: number, f: (w: WorkerSnapshot) => number): Collect => (_s, byId) => {
      const w = byId.get(id);
      return w ? f(w) : 0;
    };
    const all = (s: MasterSnapshot, f: (w: WorkerSnapshot) => number): number => s.workers.reduce((n, w) => n + f(w), 0);
    const running = (w: WorkerSnapshot): boolean => w.state !== 'cheap' && w.pid > 0;
    const busy = (w: WorkerSnapshot): boolean => w.slot.cores.some((c) => c.requestStartMs > 0);
    const avg = (w: WorkerSnapshot): number => (w.slot.requests ? Math.round(w.slot.rtTotalUs / w.slot.requests) : 0);
    // The list and its order are uWSGI 2.0.21's (as its stats JSON shows them).
    add('core.routed_signals', 'counter', '5.1', () => 0);
    add('core.unrouted_signals', 'counter', '5.2', () => 0);
    add('core.busy_workers', 'gauge', '5.3', (s) => s.workers.filter((w) => running(w) && busy(w)).length);
    add('core.idle_workers', 'gauge', '5.4', (s) => s.workers.filter((w) => running(w) && !busy(w)).length);
    add('core.overloaded', 'counter', '5.5', () => 0);
    for (let i = 0; i <= processes; i++) {
      // Worker 0 stands for all the workers (uWSGI keeps the totals there).
      const w = (f: (w: WorkerSnapshot) => number): Collect => (i === 0 ? (s) => all(s, f) : worker(i, f));
      add(`worker.${i}.requests`, 'counter', `3.${i}.1`, w((x) => x.slot.requests));
      add(`worker.${i}.delta_requests`, 'absolute', `3.${i}.2`, i === 0 ? () => 0 : w((x) => x.slot.requests));
      add(`worker.${i}.failed_requests`, 'counter', `3.${i}.13`, i === 0 ? () => 0 : w((x) => x.slot.exceptions));
      add(`worker.${i}.respawns`, 'counter', `3.${i}.14`, i === 0 ? () => 0 : w((x) => x.respawns));
      add(`worker.${i}.avg_response_time`, 'gauge', `3.${i}.8`, i === 0 ? () => 0 : w(avg));
      add(`worker.${i}.total_tx`, 'counter', `3.${i}.9`, i === 0 ? () => 0 : w((x) => x.slot.tx));
      add(`worker.${i}.rss_size`, 'gauge', `3.${i}.11`, i === 0 ? () => 0 : w((x) => x.rss));
      add(`worker.${i}.vsz_size`, 'gauge', `3.${i}.12`, i === 0 ? () => 0 : w((x) => x.vsz));
      // uWSGI gives running_time the oid of failed_requests (3.N.13); kept as it shows them.
      add(`worker.${i}.running_time`, 'counter', `3.${i}.13`, i === 0 ? () => 0 : w((x) => x.slot.rtTotalUs));
      if (i === 0) continue;
      for (let j = 0; j < cores; j++) {
        const core = (f: (c: WorkerSnapshot['slot']['cores'][number]) => number): Collect => worker(i, (x) => (x.slot.cores[j] ? f(x.slot.cores[j]!) : 0));
        add(`worker.${i}.core.${j}.requests`, 'counter', `3.${i}.2.${j}.1`, core((c) => c.requests));
        // tsgi counts none of these per core: they stay 0, as they do in the stats' core list.
        add(`worker.${i}.core.${j}.write_errors`, 'counter', `3.${i}.2.${j}.3`, () => 0);
        add(`worker.${i}.core.${j}.routed_requests`, 'counter', `3.${i}.2.${j}.4`, () => 0);
        add(`worker.${i}.core.${j}.static_requests`, 'counter', `3.${i}.2.${j}.5`, () => 0);
        add(`worker.${i}.core.${j}.offloaded_requests`, 'counter', `3.${i}.2.${j}.6`, () => 0);
        add(`worker.${i}.core.${j}.exceptions`, 'counter', `3.${i}.2.${j}.7`, () => 0);
        add(`worker.${i}.core.${j}.read_errors`, 'counter', `3.${i}.2.${j}.8`, () => 0);
      }
    }
    const workers = (s: MasterSnapshot): WorkerSnapshot[] => s.workers.filter(running);
    add('core.total_tx', 'counter', '5.100', (s) => all(s, (w) => w.slot.tx));
    add('core.total_rss', 'gauge', '5.101', (s) => all(s, (w) => w.rss));
    add('core.total_vsz', 'gauge', '5.102', (s) => all(s, (w) => w.vsz));
    add('core.avg_response_time', 'gauge', '5.103', (s) => {
      const ws = workers(s);
      return ws.length ? Math.round(ws.reduce((n, w) => n + avg(w), 0) / ws.length) : 0;
    });
    add('core.total_running_time', 'counter', '5.104', (s) => all(s, (w) => w.slot.rtTotalUs));
    for (let k = 0; k < sockets; k++) add(`socket.${k}.listen_queue`, 'gauge', `7.${k}.1`, (s) => s.sockets[k]?.queue ?? 0);
    this.alias('rss_size', 'core.total_rss');
    this.alias('vsz_size', 'core.total_vsz');
    for (const u of settings.user) {
      if (u.type === 'alias') {
        const err = this.alias(u.name, u.alias!);
        if (err) throw new ConfigError('BAD_VALUE', `'${u.text}': ${err}`, u.origin, 'metric');
        continue;
      }
      // A name given again replaces the earlier metric, as in uWSGI.
      const old = this.list.findIndex((m) => m.name === u.name);
      const m: Metric = { name: u.name, type: u.type, oid: u.oid, initial: u.initial };
      if (old >= 0) this.list[old] = m;
      else this.list.push(m);
    }

    this.size = Math.max(8, this.list.length * 8);
    this.buf = Buffer.alloc(this.size);
    const dir = existsSync('/dev/shm') ? '/dev/shm' : tmpdir();
    const path = join(dir, `tsgi-metrics-${process.pid}-${Date.now()}`);
    this.fd = openSync(path, 'w+', 0o600);
    unlinkSync(path);
    ftruncateSync(this.fd, this.size);
    if (settings.dir) this.openDir(settings.dir, settings.restore);
    for (let i = 0; i < this.list.length; i++) {
      const m = this.list[i]!;
      if (!m.collect && m.target === undefined && m.initial) this.buf.writeBigInt64LE(BigInt(m.initial), i * 8);
    }
    writeSync(this.fd, this.buf, 0, this.size, 0);
  }

  private alias(name: string, of: string): string | undefined {
    const target = this.list.findIndex((m) => m.name === of);
    if (target < 0) return `unable to find metric '${of}' (a built-in one, or a user metric given before)`;
    const t = this.list[target]!;
    this.list.push({ name, type: 'alias', oid: t.oid, target: t.target ?? target, initial: 0 });
    return undefined;
  }

  /** metrics-dir: one page-sized file per metric, created (zero-filled) as uWSGI does, kept open. */
  private openDir(dir: string, restore: boolean): void {
    const page = Buffer.alloc(PAGE);
    for (const m of this.list) {
      const path = join(dir, m.name);
      m.fd = openSync(path, existsSync(path) ? 'r+' : 'w+', 0o640);
      const n = readSync(m.fd, page, 0, PAGE, 0);
      // metrics-dir-restore: a collected metric counts on from the value its file holds.
      if (restore && m.collect && n > 0) m.initial = Number.parseInt(page.subarray(0, n).toString('latin1'), 10) || 0;
      if (n < PAGE) writeSync(m.fd, Buffer.alloc(1), 0, 1, PAGE - 1);
      m.written = restore ? m.initial : undefined;
    }
  }

  /**
   * The collector, once a second: the built-in values into the shared file, and into metrics-dir the ones that
   * changed (uWSGI rewrites a file only when its collected value changes, so user metrics' files stay empty).
   */
  collect(s: MasterSnapshot): void {
    readSync(this.fd, this.buf, 0, this.size, 0);
    const byId = new Map(s.workers.map((w) => [w.id, w]));
    for (let i = 0; i < this.list.length; i++) {
      const m = this.list[i]!;
      if (!m.collect) continue;
      const v = m.initial + m.collect(s, byId);
      this.buf.writeBigInt64LE(BigInt(v), i * 8);
      if (m.fd !== undefined && v !== (m.written ?? 0)) {
        const text = Buffer.alloc(PAGE);
        text.write(`${v}\n`, 'latin1');
        writeSync(m.fd, text, 0, PAGE, 0);
        m.written = v;
      }
    }
    // Only the collected values are written back: the user ones belong to the workers between two reads.
    for (let i = 0; i < this.list.length; i++) if (this.list[i]!.collect) writeSync(this.fd, this.buf, i * 8, 8, i * 8);
  }

  /** The stats JSON's "metrics" object, uWSGI's shape: name → {type, oid, value}. */
  json(): Record<string, { type: number; oid: string; value: number }> {
    readSync(this.fd, this.buf, 0, this.size, 0);
    const out: Record<string, { type: number; oid: string; value: number }> = {};
    for (let i = 0; i < this.list.length; i++) {
      const m = this.list[i]!;
      out[m.name] = { type: METRIC_TYPES[m.type], oid: m.oid, value: Number(this.buf.readBigInt64LE((m.target ?? i) * 8)) };
    }
    return out;
  }

  /** For the Python workers: each metric's name, its slot in the file, and whether the app may change it. */
  table(): Array<[string, number, boolean]> {
    return this.list.map((m, i) => [m.name, m.target ?? i, !m.collect && m.target === undefined]);
  }

  close(): void {
    for (const m of this.list) if (m.fd !== undefined) closeSync(m.fd);
    closeSync(this.fd);
  }
}
