/**
 * The scoreboard (docs/scoreboard.md): a shared memory file with one slot per worker, written in place by the
 * workers on every request and read by the master when it needs to (stats, harakiri, recycling). The master
 * owns the header and hands out slots.
 */
import { closeSync, existsSync, ftruncateSync, openSync, readSync, unlinkSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const MAGIC = 0x49475354; // "TSGI"
const VERSION = 2;
const HEADER_SIZE = 64;
const CORE_SIZE = 128;

export interface CoreState {
  /** Start of the request in progress (ms since the epoch), 0 when idle. */
  requestStartMs: number;
  requests: number;
  /** `METHOD URI` of the request in progress (or the last one). */
  request: string;
}

export interface SlotState {
  pid: number;
  busy: boolean;
  requests: number;
  exceptions: number;
  tx: number;
  rtTotalUs: number;
  /** Start of the oldest request in progress (ms since epoch), 0 when idle. */
  requestStartMs: number;
  lastRequestEndMs: number;
  cores: CoreState[];
}

export class Scoreboard {
  readonly fd: number;
  readonly size: number;
  readonly slots: number;
  readonly cores: number;
  readonly stride: number;
  private readonly free: number[] = [];
  private inUse = 1;
  private retired = 0n;
  private readonly buf: Buffer;
  private readonly flag = Buffer.alloc(4);

  constructor(slots: number, cores: number) {
    this.slots = slots;
    this.cores = cores;
    this.stride = HEADER_SIZE + CORE_SIZE * cores;
    this.size = (slots + 1) * this.stride;
    this.buf = Buffer.alloc(this.stride);
    const dir = existsSync('/dev/shm') ? '/dev/shm' : tmpdir();
    const path = join(dir, `tsgi-scoreboard-${process.pid}-${Date.now()}`);
    this.fd = openSync(path, 'w+', 0o600);
    unlinkSync(path); // only the descriptor keeps it alive: nothing to clean up, whatever happens
    ftruncateSync(this.fd, this.size);
    for (let s = slots; s >= 1; s--) this.free.push(s);
    this.writeHeader();
  }

  private writeHeader(): void {
    const h = Buffer.alloc(32);
    h.writeUInt32LE(MAGIC, 0);
    h.writeUInt32LE(VERSION, 4);
    h.writeUInt32LE(this.inUse, 8);
    h.writeBigUInt64LE(this.retired, 16);
    h.writeUInt32LE(this.stride, 24);
    h.writeUInt32LE(this.cores, 28);
    writeSync(this.fd, h, 0, h.length, 0);
  }

  /** Takes a free slot for a new worker (zeroed), or undefined when all are taken. */
  acquire(): number | undefined {
    const slot = this.free.pop();
    if (slot === undefined) return undefined;
    writeSync(this.fd, Buffer.alloc(this.stride), 0, this.stride, slot * this.stride);
    if (slot + 1 > this.inUse) {
      this.inUse = slot + 1;
      this.writeHeader();
    }
    return slot;
  }

  /**
   * Writes who holds a slot (offset 56 of its worker part): the worker id, how many times that id was spawned
   * before, and when (seconds since the epoch). Written once per spawn; `uwsgi.workers()` reads it.
   */
  identify(slot: number, id: number, respawns: number, spawnedAtMs: number): void {
    const b = Buffer.alloc(8);
    b.writeUInt16LE(Math.min(id, 0xffff), 0);
    b.writeUInt16LE(Math.min(respawns, 0xffff), 2);
    b.writeUInt32LE(Math.floor(spawnedAtMs / 1000) >>> 0, 4);
    writeSync(this.fd, b, 0, 8, slot * this.stride + 56);
  }

  /** Returns a dead worker's slot, keeping its request count in the running total. */
  release(slot: number): void {
    const s = this.read(slot);
    this.retired += BigInt(s.requests);
    writeSync(this.fd, Buffer.alloc(this.stride), 0, this.stride, slot * this.stride);
    this.writeHeader();
    this.free.push(slot);
  }

  /** Requests served by all workers, present and past. */
  totalRequests(liveSlots: Iterable<number>): number {
    let total = Number(this.retired);
    for (const s of liveSlots) total += this.read(s).requests;
    return total;
  }

  /** The worker's busy flag (any of its cores in a request), as it wrote it: a 4-byte read. */
  isBusy(slot: number): boolean {
    readSync(this.fd, this.flag, 0, 4, slot * this.stride + 4);
    return this.flag.readUInt32LE(0) === 1;
  }

  /** A slot with nothing in it, for a worker that does not run (cheaper). */
  empty(): SlotState {
    const cores: CoreState[] = [];
    for (let c = 0; c < this.cores; c++) cores.push({ requestStartMs: 0, requests: 0, request: '' });
    return { pid: 0, busy: false, requests: 0, exceptions: 0, tx: 0, rtTotalUs: 0, requestStartMs: 0, lastRequestEndMs: 0, cores };
  }

  read(slot: number): SlotState {
    const b = this.buf;
    readSync(this.fd, b, 0, this.stride, slot * this.stride);
    const cores: CoreState[] = [];
    for (let c = 0; c < this.cores; c++) {
      const off = HEADER_SIZE + CORE_SIZE * c;
      const len = Math.min(b[off + 16]!, CORE_SIZE - 17);
      cores.push({
        requestStartMs: Number(b.readBigUInt64LE(off) / 1000n),
        requests: Number(b.readBigUInt64LE(off + 8)),
        request: b.toString('latin1', off + 17, off + 17 + len),
      });
    }
    return {
      pid: b.readUInt32LE(0),
      busy: b.readUInt32LE(4) === 1,
      requests: Number(b.readBigUInt64LE(8)),
      exceptions: Number(b.readBigUInt64LE(16)),
      tx: Number(b.readBigUInt64LE(24)),
      rtTotalUs: Number(b.readBigUInt64LE(32)),
      requestStartMs: Number(b.readBigUInt64LE(40) / 1000n),
      lastRequestEndMs: Number(b.readBigUInt64LE(48) / 1000n),
      cores,
    };
  }

  close(): void {
    closeSync(this.fd);
  }
}
