/** What Linux's /proc says about processes and sockets, for limits and stats. Cheap synchronous reads. */
import { readFileSync } from 'node:fs';

const PAGE = 4096;

/** Resident and virtual size of a process in bytes (0, 0 when it is gone). */
export function memoryOf(pid: number): { rss: number; vsz: number } {
  try {
    const f = readFileSync(`/proc/${pid}/statm`, 'latin1').split(' ');
    return { vsz: Number(f[0]) * PAGE, rss: Number(f[1]) * PAGE };
  } catch {
    return { rss: 0, vsz: 0 };
  }
}

/**
 * Connections waiting to be accepted on a listening TCP port (the kernel's accept queue: the rx_queue of the
 * LISTEN entry in /proc/net/tcp*). Unix sockets do not expose it there: undefined.
 */
export function tcpListenQueue(port: number): number | undefined {
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  let total: number | undefined;
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text: string;
    try {
      text = readFileSync(file, 'latin1');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 5 || f[3] !== '0A') continue; // 0A = LISTEN
      if (!f[1]!.endsWith(`:${hexPort}`)) continue;
      const rx = Number.parseInt(f[4]!.split(':')[1]!, 16);
      total = (total ?? 0) + rx;
    }
  }
  return total;
}
