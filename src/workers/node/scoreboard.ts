/**
 * The worker's slot in the master's scoreboard (layout: python/tsgi_worker/scoreboard.py). Node cannot map
 * shared memory, so the slot is written in bulk with one positional write, once a second and at exit, never
 * per request; the same tick reads every slot once to know the requests of all workers (the M of `req: N/M`
 * in request lines, exact to the second).
 */
import { readSync, writeSync } from 'node:fs';

export const SLOT_SIZE = 64;

export interface WorkerCounters {
  requests: number;
  exceptions: number;
  tx: number;
  rtTotalUs: number;
  inFlight: number;
  /** When the worker last went from idle to busy (ms since epoch), 0 when idle. */
  busySinceMs: number;
  lastEndMs: number;
}

export class SlotWriter {
  private readonly slotBuf = Buffer.alloc(SLOT_SIZE);
  private readonly all: Buffer;
  /** Requests of the other workers (and of workers that exited), as of the last tick. */
  othersTotal = 0;

  constructor(
    private readonly fd: number,
    size: number,
    private readonly slot: number,
    private readonly pid: number,
  ) {
    this.all = Buffer.alloc(size);
  }

  write(c: WorkerCounters): void {
    const b = this.slotBuf;
    b.fill(0);
    b.writeUInt32LE(this.pid, 0);
    b.writeUInt32LE(c.inFlight > 0 ? 1 : 0, 4);
    b.writeBigUInt64LE(BigInt(c.requests), 8);
    b.writeBigUInt64LE(BigInt(c.exceptions), 16);
    b.writeBigUInt64LE(BigInt(c.tx), 24);
    b.writeBigUInt64LE(BigInt(Math.round(c.rtTotalUs)), 32);
    b.writeBigUInt64LE(BigInt(Math.round(c.busySinceMs * 1000)), 40);
    b.writeBigUInt64LE(BigInt(Math.round(c.lastEndMs * 1000)), 48);
    try {
      writeSync(this.fd, b, 0, SLOT_SIZE, this.slot * SLOT_SIZE);
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
    const inUse = Math.min(a.readUInt32LE(8), Math.floor(a.length / SLOT_SIZE));
    for (let i = 1; i < inUse; i++) if (i !== this.slot) total += Number(a.readBigUInt64LE(i * SLOT_SIZE + 8));
    this.othersTotal = total;
  }
}
