/**
 * A Node worker: loads the TS/JS app in this process, listens on the master's sockets (uwsgi and HTTP),
 * tells the master it is ready, and serves until it is told to stop.
 *
 *   SIGTERM          stop accepting, answer what is in progress and what is already queued, exit 0
 *   SIGHUP           (a reload) stop accepting, finish what is in progress and answer each kept-alive
 *                    HTTP connection once more (Connection: close) if its client speaks within a grace, exit 0
 *   SIGINT, SIGQUIT  exit now
 *   master gone      (the control channel closes) as SIGTERM
 *
 * Exit statuses, as a Python worker's: 22 the app could not be loaded, 23 a socket could not be listened on,
 * 24 recycled itself (max-requests), 1 a crash (an exception outside any request), 0 a requested stop.
 */
import net from 'node:net';
import { Exchanges, describeError } from './exchange.js';
import { closeSilentConnections, createHttpServer, createRedirectServer, isHttpServer } from './http.js';
import type { NodeWorkerConfig } from './launcher.js';
import { loadApp } from './load.js';
import { WorkerLog } from './log.js';
import { LISTENER_INFO } from './request-info.js';
import { SlotWriter } from './scoreboard.js';
import { UwsgiServer } from './uwsgi.js';
import { StaticFiles } from '../../static/files.js';

const EXIT_APP_FAILED = 22;
const EXIT_SOCKET_FAILED = 23;
const EXIT_RECYCLED = 24;
/** How long a reloading or recycling worker keeps a kept-alive connection that stays silent. */
const IDLE_GRACE_MS = 5000;

async function main(): Promise<void> {
  const raw = process.env.TSGI_WORKER;
  if (!raw) {
    process.stderr.write('TSGI_WORKER is not set: Node workers are started by the tsgi master, not by hand\n');
    process.exit(1);
  }
  delete process.env.TSGI_WORKER;
  const conf = JSON.parse(raw) as NodeWorkerConfig;
  for (const [k, v] of conf.env) process.env[k] = v;
  process.title = conf.title;
  const pid = process.pid;
  const log = new WorkerLog(2, `[pid: ${pid}|worker ${conf.id}]`, conf.logDate);
  if (conf.reqLogFd !== undefined) log.sendRequestsTo(conf.reqLogFd);
  const slot = new SlotWriter(conf.scoreboard.fd, conf.scoreboard.size, conf.slot, pid);
  process.on('exit', () => log.flush());

  let exchanges: Exchanges | undefined;
  let stopping = false;
  let exitStatus = 0;
  const servers: net.Server[] = [];
  const uwsgiServers: UwsgiServer[] = [];

  const finish = (): void => {
    try {
      if (exchanges) slot.write(exchanges);
    } finally {
      log.flush();
      process.exit(exitStatus);
    }
  };

  /**
   * drain: a stop for good (SIGTERM), what is queued on the sockets is accepted and answered first.
   * handover: a reload or a recycle, new workers take the new connections (see below for the idle ones).
   * graceful: a crash outside any request, the requests in progress are finished and that is all.
   */
  const stop = (mode: 'drain' | 'handover' | 'graceful', status: number): void => {
    if (stopping) return;
    stopping = true;
    exitStatus = status;
    if (!exchanges) finish();
    const ex = exchanges!;
    // A stop for good (drain) closes idle keep-alive connections at once: nobody would answer their next
    // request; so does a crashed worker, which should take no more. A handover does not: a client sends its
    // next request the moment it has read a response, so that request may be in flight on any "idle"
    // connection, and cutting the connection would lose it — when a new worker is there to serve the client's
    // next connection. Instead each connection is answered once more, with Connection: close (Exchanges.stop);
    // one that stays silent ends at its keep-alive timeout, or after IDLE_GRACE_MS (an --http keep-alive
    // timeout is a minute: old workers must not linger). In every mode, a connection accepted that has sent
    // nothing yet has that grace to send its request.
    // Kept uwsgi connections (tsgi-proxy's, docs/protocol-keepalive.md) are closed at once when idle, in every
    // mode: the proxy sends a request that crossed the close again, on a new connection. A busy one closes
    // once its response is out.
    let cutIdle = mode !== 'handover';
    const closeIdle = (): void => {
      if (cutIdle) for (const s of servers) if (isHttpServer(s)) s.closeIdleConnections();
    };
    setTimeout(() => {
      cutIdle = true;
      for (const s of servers) if (isHttpServer(s)) closeSilentConnections(s);
    }, IDLE_GRACE_MS);
    ex.stop(() => setImmediate(closeIdle));
    for (const u of uwsgiServers) u.stop();
    const closeAll = (): void => {
      let open = servers.length;
      if (open === 0) return finish();
      const closed = (): void => {
        if (--open === 0) finish();
      };
      // http.Server.close() would also cut the idle connections; net.Server's close only stops accepting
      // (its callback runs once every connection has ended).
      for (const s of servers) (cutIdle ? s.close(closed) : net.Server.prototype.close.call(s, closed));
      closeIdle();
    };
    // Draining: one more turn of the event loop accepts every connection already queued on the sockets.
    if (mode === 'drain') setImmediate(() => setImmediate(closeAll));
    else closeAll();
  };

  process.on('SIGTERM', () => stop('drain', 0));
  process.on('SIGHUP', () => stop('handover', 0));
  for (const sig of ['SIGINT', 'SIGQUIT'] as const) {
    process.on(sig, () => {
      exitStatus = 0;
      finish();
    });
  }
  // harakiri-verbose: the master asks for the worker's state before killing it. A Node worker's requests
  // share one event loop: what can be told is which requests are in progress (if the loop is free to say it).
  process.on('SIGUSR2', () => {
    const oldest = exchanges?.oldest();
    log.error(`harakiri: ${exchanges?.inFlight ?? 0} request(s) in progress${oldest ? `, the oldest ${oldest.line} since ${new Date(oldest.startMs).toISOString()}` : ''}`);
    log.flush();
  });
  process.on('unhandledRejection', (reason) => {
    if (exchanges) exchanges.exceptions++;
    log.error(`unhandled promise rejection (the worker goes on):\n${describeError(reason)}`);
  });
  process.on('uncaughtException', (err) => {
    if (stopping) {
      log.error(`uncaught exception while stopping:\n${describeError(err)}`);
      return;
    }
    log.error(`uncaught exception outside any request; the worker finishes its requests and exits to be replaced:\n${describeError(err)}`);
    stop('graceful', 1);
  });

  // The control channel: the readiness byte goes out on it; its end means the master is gone.
  const control = new net.Socket({ fd: conf.controlFd, readable: true, writable: true });
  control.on('error', () => {});
  control.on('close', () => stop('drain', 0));
  control.resume();

  let app;
  try {
    app = await loadApp(
      { file: conf.app.file, callable: conf.app.callable, contract: conf.app.contract, name: conf.appName },
      { multiprocess: conf.processes > 1, log },
    );
  } catch (err) {
    log.error(`cannot load the app ${conf.appName}:\n${describeError(err)}`);
    log.flush();
    process.exit(EXIT_APP_FAILED);
  }
  const ex = new Exchanges(app.handler, log, {
    pid,
    logRequests: !conf.disableLogging || conf.logWhen !== undefined,
    logWhen: conf.disableLogging ? conf.logWhen : undefined,
    logMicros: conf.logMicros,
    ftimeFormat: conf.ftimeFormat,
    headers: conf.headers,
    logXForwardedFor: conf.logXForwardedFor,
    logFormat: conf.logFormat,
    staticFiles: conf.static ? new StaticFiles(conf.static, (line) => log.error(line)) : undefined,
    workerId: conf.id,
    catchExceptions: conf.catchExceptions,
    maxRequests: conf.maxRequests,
    onMaxRequests: () => {
      // The master starts the replacement now: this worker no longer accepts, but its connections may last.
      control.write('M');
      stop('handover', EXIT_RECYCLED);
    },
  });
  exchanges = ex;

  const tick = setInterval(() => {
    slot.write(ex);
    slot.refreshTotals();
    ex.othersTotal = slot.othersTotal;
  }, 1000);
  tick.unref();
  slot.write(ex);
  slot.refreshTotals();
  ex.othersTotal = slot.othersTotal;

  let listening = 0;
  for (const s of conf.sockets) {
    let server: net.Server;
    if (s.protocol === 'uwsgi') {
      const u = new UwsgiServer(ex, log, { bufferSize: conf.bufferSize, timeoutMs: s.timeoutMs });
      uwsgiServers.push(u);
      server = u.server;
    } else if (s.redirectHttps) {
      server = createRedirectServer(s.timeoutMs);
    } else {
      server = createHttpServer(ex, log, { timeoutMs: s.timeoutMs, limitPost: conf.limitPost, tls: s.tls, name: s.name });
    }
    (server as net.Server & { [LISTENER_INFO]?: unknown })[LISTENER_INFO] = { port: s.port, https: s.tls !== undefined };
    server.on('error', (err) => {
      log.error(`cannot listen on ${s.name}: ${err.message}`);
      log.flush();
      process.exit(EXIT_SOCKET_FAILED);
    });
    servers.push(server);
    server.listen({ fd: s.fd, backlog: conf.listen }, () => {
      if (++listening === conf.sockets.length && !stopping) control.write('R');
    });
  }
}

void main();
