/**
 * emperor-stats: the table of vassals as one JSON document (schema: docs/emperor.md), served on a TCP address or
 * a Unix socket the way uWSGI's stats servers do it: a client connects, the emperor writes the JSON and closes.
 * `tsgi top` reads it to show the vassals.
 */
import { existsSync, lstatSync, unlinkSync } from 'node:fs';
import net from 'node:net';
import { ConfigError } from '../config/errors.js';
import type { Origin } from '../config/origin.js';
import { parseSocketAddress } from '../config/resolve.js';
import { TSGI_VERSION } from '../version.js';
import type { MonitorSpec } from './config.js';
import type { Emperor, Vassal } from './emperor.js';

/** Epoch seconds (with milliseconds), or null. */
const secs = (ms: number | undefined): number | null => (ms === undefined ? null : Math.round(ms) / 1000);

export interface VassalStats {
  name: string;
  file: string;
  monitor: string;
  status: Vassal['status'];
  pid: number | null;
  uid: number;
  gid: number;
  sockets: string[];
  restarts: number;
  reloads: number;
  first_start: number | null;
  last_start: number | null;
  ready_at: number | null;
  next_start: number | null;
  last_mod: number;
  last_exit: string | null;
  last_error: string | null;
}

export interface EmperorStats {
  version: string;
  pid: number;
  uid: number;
  gid: number;
  cwd: string;
  emperor: string[];
  emperor_tyrant: boolean;
  started_at: number;
  scans: number;
  vassals: VassalStats[];
}

export function statsOf(emperor: Emperor, monitors: readonly MonitorSpec[], tyrant: boolean, scans: number, cwd: string): EmperorStats {
  const vassals = [...emperor.vassals.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : a.path < b.path ? -1 : 1));
  return {
    version: TSGI_VERSION,
    pid: process.pid,
    uid: process.getuid?.() ?? 0,
    gid: process.getgid?.() ?? 0,
    cwd,
    emperor: monitors.map((m) => m.text),
    emperor_tyrant: tyrant,
    started_at: secs(emperor.startedAt)!,
    scans,
    vassals: vassals.map((v) => ({
      name: v.name,
      file: v.path,
      monitor: v.monitor.text,
      status: v.status,
      pid: v.pid ?? null,
      uid: v.uid,
      gid: v.gid,
      sockets: v.sockets,
      restarts: v.restarts,
      reloads: v.reloads,
      first_start: secs(v.firstStart),
      last_start: secs(v.lastStart),
      ready_at: secs(v.readyAt),
      next_start: v.status === 'backoff' ? secs(v.nextStart) : null,
      last_mod: secs(v.stamp.mtimeMs)!,
      last_exit: v.lastExit ?? null,
      last_error: v.lastError ?? null,
    })),
  };
}

export interface StatsServer {
  /** Where it listens, as shown in the log (the port resolved when :0 was asked for). */
  where: string;
  close(): void;
}

/** Listens on `addr` (host:port, :port or a Unix path); each connection gets `render()` and is closed. */
export async function startStatsServer(addr: string, origin: Origin, render: () => string): Promise<StatsServer> {
  const address = parseSocketAddress(addr, origin, 'emperor-stats');
  const server = net.createServer((socket) => {
    socket.on('error', () => {
      /* a client that went away */
    });
    socket.end(render());
  });
  let path: string | undefined;
  if (address.kind === 'unix') {
    path = address.path;
    if (existsSync(path)) {
      if (!lstatSync(path).isSocket()) throw new ConfigError('BAD_VALUE', `${path} exists and is not a socket`, origin, 'emperor-stats');
      const inUse = await new Promise<boolean>((resolve) => {
        const c = net.connect(path!);
        c.once('connect', () => {
          c.destroy();
          resolve(true);
        });
        c.once('error', () => resolve(false));
      });
      if (inUse) throw new ConfigError('BAD_VALUE', `${path}: address already in use (a server is listening on it)`, origin, 'emperor-stats');
      unlinkSync(path);
    }
  }
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(new ConfigError('BAD_VALUE', `cannot listen on ${addr}: ${err.code === 'EADDRINUSE' ? 'address already in use' : (err.code ?? err.message)}`, origin, 'emperor-stats')),
    );
    if (address.kind === 'unix') server.listen(address.path, resolve);
    else server.listen({ host: address.host, port: address.port }, resolve);
  });
  server.unref();
  const bound = server.address();
  const where = typeof bound === 'string' || bound === null ? (path ?? addr) : `${bound.family === 'IPv6' ? `[${bound.address}]` : bound.address}:${bound.port}`;
  return {
    where,
    close: () => {
      server.close();
      if (path) {
        try {
          unlinkSync(path);
        } catch {
          /* already gone */
        }
      }
    },
  };
}
