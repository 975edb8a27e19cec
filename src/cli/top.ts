/**
 * `tsgi top ADDR`: a live view of a running server's stats, in the spirit of uwsgitop. Reads the stats
 * server (raw or stats-http, tsgi's or uWSGI's), redraws in place once a second, `q` or Ctrl-C quits.
 */
import net from 'node:net';

interface WorkerStats {
  id: number;
  pid: number;
  status: string;
  requests: number;
  exceptions: number;
  rss: number;
  avg_rt: number;
  tx: number;
  respawn_count: number;
  cores?: Array<{ in_request: number }>;
}

interface Stats {
  version?: string;
  pid?: number;
  listen_queue?: number;
  load?: number;
  workers?: WorkerStats[];
  vassals?: Array<Record<string, unknown>>;
}

/** Reads one stats document from ADDR (host:port or a Unix path). */
export function fetchStats(addr: string): Promise<Stats> {
  return new Promise((resolve, reject) => {
    const colon = addr.lastIndexOf(':');
    const tcp = !addr.includes('/') && colon !== -1;
    const c = tcp ? net.connect(Number(addr.slice(colon + 1)), addr.slice(0, colon) || '127.0.0.1') : net.connect(addr);
    let data = '';
    c.setTimeout(5000, () => c.destroy(new Error('no answer within 5 s')));
    // A raw stats server writes at once and ignores this; a stats-http one needs it.
    c.on('connect', () => c.write('GET / HTTP/1.0\r\n\r\n'));
    c.on('data', (d) => (data += d));
    c.on('error', reject);
    c.on('end', () => {
      const body = data.startsWith('HTTP/') ? data.slice(data.indexOf('\r\n\r\n') + 4) : data;
      try {
        resolve(JSON.parse(body) as Stats);
      } catch {
        reject(new Error('the answer is not stats JSON'));
      }
    });
  });
}

const mb = (n: number): string => (n / (1024 * 1024)).toFixed(1);
const pad = (s: string | number, w: number): string => String(s).padStart(w);

/** The screen for one refresh: pure, so it can be tested without a terminal. */
export function render(addr: string, s: Stats, rps: Map<number, number>, width = 100): string[] {
  const workers = s.workers ?? [];
  const total = workers.reduce((n, w) => n + (rps.get(w.pid) ?? 0), 0);
  const busy = workers.filter((w) => w.status === 'busy').length;
  // Worker ids that do not run because of cheaper (pid 0), as uWSGI's stats show them.
  const cheap = workers.filter((w) => w.status === 'cheap' && !w.pid).length;
  const lines = [
    `tsgi top - ${addr} - ${s.version ?? '?'} - master pid ${s.pid ?? '?'} - ${new Date().toLocaleTimeString()}`,
    `workers: ${workers.length - cheap}${cheap ? ` (+${cheap} cheap)` : ''}  busy: ${busy}  req/s: ${total.toFixed(1)}  listen queue: ${s.listen_queue ?? 0}  load: ${s.load ?? 0}`,
    '',
    `${pad('WID', 4)} ${pad('PID', 8)} ${'STATUS'.padEnd(7)} ${pad('REQ', 10)} ${pad('RPS', 8)} ${pad('EXC', 6)} ${pad('AVG ms', 8)} ${pad('RSS MB', 8)} ${pad('TX MB', 8)} ${pad('RESP', 5)}`,
  ];
  for (const w of workers) {
    lines.push(
      `${pad(w.id, 4)} ${pad(w.pid, 8)} ${String(w.status).padEnd(7)} ${pad(w.requests, 10)} ${pad((rps.get(w.pid) ?? 0).toFixed(1), 8)} ${pad(w.exceptions, 6)} ` +
        `${pad((w.avg_rt / 1000).toFixed(1), 8)} ${pad(mb(w.rss), 8)} ${pad(mb(w.tx), 8)} ${pad(w.respawn_count, 5)}`,
    );
  }
  if (s.vassals) {
    lines.push('', 'VASSALS');
    for (const v of s.vassals) lines.push(`  ${String(v.name ?? v.file ?? '?').padEnd(30)} pid ${pad(String(v.pid ?? '-'), 8)}  ${String(v.status ?? '')}  restarts ${String(v.restarts ?? 0)}`);
  }
  lines.push('', 'q: quit');
  return lines.map((l) => (l.length > width ? l.slice(0, width) : l));
}

export async function top(args: string[]): Promise<number> {
  const addr = args[0];
  if (!addr || addr.startsWith('-')) {
    process.stderr.write('usage: tsgi top ADDR   (the stats address of a server: host:port or a Unix socket path)\n');
    return 1;
  }
  const out = process.stdout;
  const last = new Map<number, { requests: number; at: number }>();
  let stopped = false;
  const stop = (): void => {
    stopped = true;
    out.write('\x1b[?25h\n');
  };
  if (process.stdin.isTTY) {
    process.stdin.setRawMode(true);
    process.stdin.resume();
    process.stdin.on('data', (d: Buffer) => {
      const k = d.toString();
      if (k === 'q' || k === '\x03') stop();
    });
  }
  process.on('SIGINT', stop);
  out.write('\x1b[?25l');
  while (!stopped) {
    let lines: string[];
    try {
      const s = await fetchStats(addr);
      const now = Date.now();
      const rps = new Map<number, number>();
      for (const w of s.workers ?? []) {
        const prev = last.get(w.pid);
        if (prev && now > prev.at) rps.set(w.pid, ((w.requests - prev.requests) * 1000) / (now - prev.at));
        last.set(w.pid, { requests: w.requests, at: now });
      }
      lines = render(addr, s, rps, out.columns ?? 100);
    } catch (err) {
      lines = [`tsgi top - ${addr}`, '', `cannot read the stats: ${(err as Error).message}; retrying`];
    }
    out.write(`\x1b[H\x1b[2J${lines.join('\n')}\n`);
    await new Promise((r) => setTimeout(r, 1000));
  }
  if (process.stdin.isTTY) process.stdin.setRawMode(false);
  process.stdin.pause();
  return 0;
}
