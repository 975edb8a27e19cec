/**
 * The worker's slot in the master's scoreboard (layout: docs/scoreboard.md). Node cannot map shared memory,
 * so the slot is written in bulk with one positional write, once a second and at exit, never per request:
 * the worker part (totals) and core record 0 (the oldest request in progress, which harakiri reads). The
 * same tick reads every slot once, for the requests of all workers (the M of `req: N/M` in request lines,
 * exact to the second).
 */
import { readSync, writeSync } from 'node:fs';

const WORKER_PART = 64;
const CORE_SIZE = 128;
const CORE_LINE_MAX = 111;

export interface WorkerCounters {
  requests: number;
  exceptions: number;
  tx: number;
  rtTotalUs: number;
  inFlight: number;
  lastEndMs: number;
  /** The oldest request in progress: when it started (ms since the epoch) and `METHOD URI`. */
  oldest(): { startMs: number; line: string } | undefined;
}

export class SlotWriter {
  private readonly all: Buffer;
  private readonly stride: number;
  private readonly out = Buffer.alloc(WORKER_PART + CORE_SIZE);
  /** Requests of the other workers (and of workers that exited), as of the last tick. */
  othersTotal = 0;

  constructor(
    private readonly fd: number,
    size: number,
    private readonly slot: number,
    private readonly pid: number,
  ) {
    this.all = Buffer.alloc(size);
    const header = Buffer.alloc(32);
    let stride = WORKER_PART + CORE_SIZE;
    try {
      if (readSync(fd, header, 0, 32, 0) === 32 && header.readUInt32LE(4) >= 2) stride = header.readUInt32LE(24);
    } catch {
      /* no scoreboard to read: writes will fail silently too */
    }
    this.stride = stride;
  }

  write(c: WorkerCounters): void {
    const b = this.out;
    b.fill(0);
    const oldest = c.oldest();
    const startUs = oldest ? BigInt(Math.round(oldest.startMs * 1000)) : 0n;
    b.writeUInt32LE(this.pid, 0);
    b.writeUInt32LE(c.inFlight > 0 ? 1 : 0, 4);
    b.writeBigUInt64LE(BigInt(c.requests), 8);
    b.writeBigUInt64LE(BigInt(c.exceptions), 16);
    b.writeBigUInt64LE(BigInt(c.tx), 24);
    b.writeBigUInt64LE(BigInt(Math.round(c.rtTotalUs)), 32);
    b.writeBigUInt64LE(startUs, 40);
    b.writeBigUInt64LE(BigInt(Math.round(c.lastEndMs * 1000)), 48);
    // Core 0 stands for the whole worker (its requests run concurrently on one event loop).
    b.writeBigUInt64LE(startUs, WORKER_PART);
    b.writeBigUInt64LE(BigInt(c.requests), WORKER_PART + 8);
    if (oldest) {
      const n = b.write(oldest.line.slice(0, CORE_LINE_MAX), WORKER_PART + 17, CORE_LINE_MAX, 'latin1');
      b[WORKER_PART + 16] = n;
    }
    try {
      writeSync(this.fd, b, 0, b.length, this.slot * this.stride);
    } catch {
      /* the master is gone or the descriptor is closed: nothing to report to */
    }
  }

  /** Reads the whole scoreboard once and sums the requests of every other slot. */
  refreshTotals(): void {
    const a = this.all;
    try {
      if (readSync(this.fd, a, 0, a.length, 0) < 24) return;
    } catch {
      return;
    }
    let total = Number(a.readBigUInt64LE(16));
    const inUse = Math.min(a.readUInt32LE(8), Math.floor(a.length / this.stride));
    for (let i = 1; i < inUse; i++) if (i !== this.slot) total += Number(a.readBigUInt64LE(i * this.stride + 8));
    this.othersTotal = total;
  }
}
