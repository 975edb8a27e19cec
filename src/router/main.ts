/**
 * The HTTP router process, spawned and supervised by the master. It listens on the HTTP sockets the master
 * bound (inherited descriptors), keeps one link per Python worker, and forwards complete requests.
 *
 *   SIGTERM  stop accepting, answer every request already received, exit 0
 *   SIGINT / SIGQUIT  exit now
 * The master tells it over IPC when a reload changed the number of workers.
 */
import { closeSync, openSync, writeSync } from 'node:fs';
import { HttpRouter, type HttpListenerConfig, type ListenerTls } from './http.js';
import { LinkPool } from './links.js';
import { UpstreamPool, type UpstreamTarget } from './upstream.js';
import type { TlsMaterial } from '../master/tls.js';
import type { TlsSettings } from '../config/https.js';
import type { StaticSettings } from '../static/config.js';
import { StaticFiles } from '../static/files.js';
import type { HeaderEdit, LogWhen } from '../config/resolve.js';
import { logWanted } from '../workers/node/log.js';
import { logDatePrefix } from '../config/strftime.js';

export interface RouterProcessConfig {
  linkPath: string;
  links: number;
  maxQueue: number;
  bufferSize: number;
  limitPost: number;
  /** static-map and friends, served by the router. */
  static?: StaticSettings;
  disableLogging: boolean;
  /** log-4xx and friends: with disable-logging, the static-file requests they name are still logged. */
  logWhen?: LogWhen;
  logMicros?: boolean;
  logDate?: string;
  headers?: HeaderEdit;
  /** The process title (procname options). */
  title: string;
  /** The logto file, reopened on SIGWINCH (log rotation); undefined when logging to stderr. */
  logto?: string;
  /** req-logger: request lines go to this descriptor (the log master's request pipe) instead of the log. */
  reqLogFd?: number;
  listeners: HttpListenerConfig[];
  /** http-to: requests go to these uwsgi servers instead of the workers. */
  httpTo: UpstreamTarget[];
  /** Set when a listener is https: the certificates then come in a 'tls' IPC message. */
  tlsSettings?: TlsSettings;
}

let logFd = 2;
/** Where request lines go: the log, or the request pipe with req-logger. */
let reqLogFd = -1;
/** log-date: 'true' or a strftime format. */
let logDate: string | undefined;

function log(line: string): void {
  try {
    writeSync(logFd, `${logDate === undefined ? '' : logDatePrefix(logDate, Date.now())}[router pid ${process.pid}] ${line}\n`);
  } catch {
    /* nowhere to say it */
  }
}

/** A request line, as the workers write theirs (no router prefix). */
function logLine(line: string): void {
  try {
    writeSync(reqLogFd === -1 ? logFd : reqLogFd, `${line}\n`);
  } catch {
    /* nowhere to say it */
  }
}

export function main(): void {
  const raw = process.env.TSGI_ROUTER;
  if (!raw) {
    log('TSGI_ROUTER is not set: the router is started by the tsgi master, not by hand');
    process.exit(1);
  }
  delete process.env.TSGI_ROUTER;
  const cfg = JSON.parse(raw) as RouterProcessConfig;
  logDate = cfg.logDate;
  if (cfg.reqLogFd !== undefined) reqLogFd = cfg.reqLogFd;
  process.title = cfg.title;
  const pool = cfg.httpTo.length ? new UpstreamPool(cfg.httpTo, log) : new LinkPool(cfg.linkPath, cfg.links, cfg.maxQueue, log);
  const router = new HttpRouter(pool, {
    bufferSize: cfg.bufferSize,
    limitPost: cfg.limitPost,
    staticFiles: cfg.static ? new StaticFiles(cfg.static, log) : undefined,
    logRequest: !cfg.disableLogging
      ? logLine
      : cfg.logWhen
        ? (line, status, bytes, usec) => {
            if (logWanted(cfg.logWhen!, status, usec, bytes)) logLine(line);
          }
        : undefined,
    logMicros: cfg.logMicros === true,
    headers: cfg.headers,
  }, log);
  let listening = 0;
  const listenAll = (material: ReadonlyArray<TlsMaterial | undefined | null>): void => {
    cfg.listeners.forEach((l, i) => {
      const m = material[i];
      const t: ListenerTls | undefined = l.tls && m ? { ...m, ...cfg.tlsSettings! } : undefined;
      router.listen(l, () => {
        if (++listening === cfg.listeners.length) process.send?.({ type: 'ready' });
      }, t);
    });
  };
  if (cfg.tlsSettings) {
    process.once('message', (m: { type?: string; material?: Array<TlsMaterial | null> }) => {
      if (m?.type === 'tls' && Array.isArray(m.material)) listenAll(m.material);
    });
  } else listenAll([]);

  let stopping = false;
  process.on('SIGTERM', () => {
    if (stopping) return;
    stopping = true;
    pool.beginStop();
    // Let one more poll phase run first: libuv then accepts every connection already established, which
    // closing the listener would otherwise reset.
    setImmediate(() =>
      setImmediate(() =>
        router.close(() => {
          pool.close();
          process.exit(0);
        }),
      ),
    );
  });
  for (const sig of ['SIGINT', 'SIGQUIT'] as const) process.on(sig, () => process.exit(0));
  process.on('SIGHUP', () => {
    /* reloads are the master's business */
  });
  process.on('SIGWINCH', () => {
    if (!cfg.logto) return;
    try {
      const fd = openSync(cfg.logto, 'a', 0o640);
      if (logFd !== 2) closeSync(logFd);
      logFd = fd;
    } catch (err) {
      log(`cannot reopen the log ${cfg.logto}: ${(err as NodeJS.ErrnoException).code}`);
    }
  });
  process.on('message', (m: { type?: string; links?: number; material?: Array<TlsMaterial | null>; reload?: boolean }) => {
    if (m?.type === 'links' && typeof m.links === 'number' && pool instanceof LinkPool) pool.resize(m.links);
    if (m?.type === 'tls' && m.reload === true && Array.isArray(m.material) && cfg.tlsSettings) {
      // A reload's certificates (the master checked them): new handshakes use them, open connections keep theirs.
      cfg.listeners.forEach((l, i) => {
        const material = m.material![i];
        if (!l.tls || !material) return;
        try {
          router.setTls(i, { ...material, ...cfg.tlsSettings! });
        } catch (err) {
          log(`https ${l.name}: the reloaded certificate was refused (${(err as Error).message}); the old one stays`);
        }
      });
    }
  });
  process.on('disconnect', () => {
    // The master is gone: nothing supervises us any more.
    if (!stopping) process.kill(process.pid, 'SIGTERM');
  });
}

main();
