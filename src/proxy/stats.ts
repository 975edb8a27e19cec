/**
 * stub_status counters: connections accepted and handled, requests, and the connections open now by state
 * (reading a request head, writing a response; the rest wait for their next request). nginx keeps them in
 * shared memory for the whole server; here each worker counts its own, and the stub_status page asks the
 * master for the sum over every worker (worker-main.ts, master.ts). Counting is on only when the
 * configuration has stub_status or a $connections_* variable (`LoadedConf.connStats`).
 */

/** accepts, handled, requests, active, reading, writing: the order the counters travel in between processes. */
export type Counts = [number, number, number, number, number, number];

export class ConnStats {
  accepts = 0;
  handled = 0;
  requests = 0;
  active = 0;
  reading = 0;
  writing = 0;

  counts(): Counts {
    return [this.accepts, this.handled, this.requests, this.active, this.reading, this.writing];
  }
}

/** This process's counters (one Front serves per process). */
export const STATS = new ConnStats();

/**
 * How the stub_status page gets the server's numbers: this worker's alone unless worker-main.ts replaces it
 * with a question to the master.
 */
let source: () => Promise<Counts> = () => Promise.resolve(STATS.counts());

export function setCountsSource(fn: () => Promise<Counts>): void {
  source = fn;
}

export function serverCounts(): Promise<Counts> {
  return source();
}

/** nginx's page, byte for byte (the trailing spaces included). */
export function stubStatusBody(c: Counts): string {
  const [accepts, handled, requests, active, reading, writing] = c;
  return `Active connections: ${active} \nserver accepts handled requests\n ${accepts} ${handled} ${requests} \nReading: ${reading} Writing: ${writing} Waiting: ${Math.max(0, active - reading - writing)} \n`;
}

export function sumCounts(list: Counts[]): Counts {
  const out: Counts = [0, 0, 0, 0, 0, 0];
  for (const c of list) for (let i = 0; i < 6; i++) out[i]! += c[i]!;
  return out;
}
