/**
 * Access logs: one appending writer per file, lines batched per event-loop turn and written without
 * blocking. Formats were compiled at config time; nothing is formatted when logging is off.
 */
import { createWriteStream, mkdirSync, type WriteStream } from 'node:fs';
import { dirname } from 'node:path';
import type { Rq } from './request.js';

class Writer {
  private stream: WriteStream;
  private pending = '';
  private scheduled = false;

  constructor(readonly path: string) {
    this.stream = this.openStream();
  }

  private openStream(): WriteStream {
    if (this.path === '/dev/stdout' || this.path === '/dev/stderr') {
      return createWriteStream('', { fd: this.path === '/dev/stdout' ? 1 : 2, autoClose: false });
    }
    try {
      mkdirSync(dirname(this.path), { recursive: true });
    } catch {
      // reported by the stream's error below
    }
    const s = createWriteStream(this.path, { flags: 'a' });
    s.on('error', () => {});
    return s;
  }

  write(line: string): void {
    this.pending += line;
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.flush);
    }
  }

  readonly flush = (): void => {
    this.scheduled = false;
    if (this.pending) {
      this.stream.write(this.pending, 'latin1');
      this.pending = '';
    }
  };

  reopen(): void {
    this.flush();
    const old = this.stream;
    this.stream = this.openStream();
    old.end();
  }

  close(): Promise<void> {
    this.flush();
    return new Promise((res) => this.stream.end(res));
  }
}

export class AccessLogs {
  private readonly writers = new Map<string, Writer>();

  log(r: Rq): void {
    if (r.logged) return;
    r.logged = true;
    const logs = r.conf.accessLogs;
    if (!logs || logs === 'off') return;
    for (const l of logs) {
      if (l.condition) {
        const c = l.condition.eval(r);
        if (c === '' || c === '0') continue;
      }
      const path = l.path.constant ?? l.path.eval(r);
      let w = this.writers.get(path);
      if (!w) {
        w = new Writer(path);
        this.writers.set(path, w);
      }
      w.write(l.format.template.eval(r) + '\n');
    }
  }

  reopen(): void {
    for (const w of this.writers.values()) w.reopen();
  }

  async close(): Promise<void> {
    await Promise.all([...this.writers.values()].map((w) => w.close()));
  }
}
