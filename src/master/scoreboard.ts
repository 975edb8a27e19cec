/**
 * The scoreboard: a shared memory file, one 64-byte slot per worker, that workers update in place on every
 * request and the master reads when it needs to (stats, the request totals, harakiri). No message per request.
 * The layout is documented in python/tsgi_worker/scoreboard.py, which writes it.
 */
import { closeSync, existsSync, ftruncateSync, openSync, readSync, unlinkSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const SLOT_SIZE = 64;
const MAGIC = 0x49475354; // "TSGI"

export interface SlotState {
  pid: number;
  busy: boolean;
  requests: number;
  exceptions: number;
  tx: number;
  rtTotalUs: number;
  /** Start of the request in progress (ms since epoch), 0 when idle. */
  requestStartMs: number;
  lastRequestEndMs: number;
}

export class Scoreboard {
  readonly fd: number;
  readonly size: number;
  readonly slots: number;
  private readonly free: number[] = [];
  private inUse = 1;
  private retired = 0n;
  private readonly buf = Buffer.alloc(SLOT_SIZE);

  constructor(slots: number) {
    this.slots = slots;
    this.size = (slots + 1) * SLOT_SIZE;
    const dir = existsSync('/dev/shm') ? '/dev/shm' : tmpdir();
    const path = join(dir, `tsgi-scoreboard-${process.pid}-${Date.now()}`);
    this.fd = openSync(path, 'w+', 0o600);
    unlinkSync(path); // only the descriptor keeps it alive: nothing to clean up, whatever happens
    ftruncateSync(this.fd, this.size);
    for (let s = slots; s >= 1; s--) this.free.push(s);
    this.writeHeader();
  }

  private writeHeader(): void {
    const h = Buffer.alloc(24);
    h.writeUInt32LE(MAGIC, 0);
    h.writeUInt32LE(1, 4);
    h.writeUInt32LE(this.inUse, 8);
    h.writeBigUInt64LE(this.retired, 16);
    writeSync(this.fd, h, 0, h.length, 0);
  }

  /** Takes a free slot for a new worker (zeroed), or undefined when all are taken. */
  acquire(): number | undefined {
    const slot = this.free.pop();
    if (slot === undefined) return undefined;
    writeSync(this.fd, Buffer.alloc(SLOT_SIZE), 0, SLOT_SIZE, slot * SLOT_SIZE);
    if (slot + 1 > this.inUse) {
      this.inUse = slot + 1;
      this.writeHeader();
    }
    return slot;
  }

  /** Returns a dead worker's slot, keeping its request count in the running total. */
  release(slot: number): void {
    const s = this.read(slot);
    this.retired += BigInt(s.requests);
    writeSync(this.fd, Buffer.alloc(SLOT_SIZE), 0, SLOT_SIZE, slot * SLOT_SIZE);
    this.writeHeader();
    this.free.push(slot);
  }

  read(slot: number): SlotState {
    const b = this.buf;
    readSync(this.fd, b, 0, SLOT_SIZE, slot * SLOT_SIZE);
    return {
      pid: b.readUInt32LE(0),
      busy: b.readUInt32LE(4) === 1,
      requests: Number(b.readBigUInt64LE(8)),
      exceptions: Number(b.readBigUInt64LE(16)),
      tx: Number(b.readBigUInt64LE(24)),
      rtTotalUs: Number(b.readBigUInt64LE(32)),
      requestStartMs: Number(b.readBigUInt64LE(40) / 1000n),
      lastRequestEndMs: Number(b.readBigUInt64LE(48) / 1000n),
    };
  }

  close(): void {
    closeSync(this.fd);
  }
}
