/**
 * The master FIFO (uWSGI's `master-fifo`): one-letter commands written to a named pipe, e.g.
 * `echo r > /run/app.fifo`. The master holds the FIFO open for reading and writing, so it never sees an
 * end-of-file between writers and never spins.
 */
import { spawnSync } from 'node:child_process';
import { constants, existsSync, lstatSync, openSync, unlinkSync } from 'node:fs';
import net from 'node:net';

export class MasterFifo {
  private readonly socket: net.Socket;

  constructor(readonly path: string, onCommand: (letter: string) => void) {
    if (existsSync(path)) {
      if (!lstatSync(path).isFIFO()) throw new Error(`master-fifo ${path} exists and is not a FIFO`);
    } else {
      const r = spawnSync('mkfifo', ['-m', '600', path], { encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`master-fifo ${path}: cannot create it (${(r.stderr || r.error?.message || '').trim()})`);
    }
    const fd = openSync(path, constants.O_RDWR | constants.O_NONBLOCK);
    this.socket = new net.Socket({ fd, readable: true, writable: false });
    this.socket.on('data', (d: Buffer) => {
      for (const ch of d.toString('latin1')) if (ch.trim()) onCommand(ch);
    });
    this.socket.on('error', () => {
      /* a FIFO read error leaves the master without its FIFO, nothing worse */
    });
  }

  close(): void {
    this.socket.destroy();
    try {
      unlinkSync(this.path);
    } catch {
      /* already gone */
    }
  }
}
