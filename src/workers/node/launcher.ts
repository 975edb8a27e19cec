/**
 * Starting a Node worker: this Node running src/workers/node/main.js, with the same descriptors as a Python
 * worker (0 /dev/null, 1-2 the log, 3 the control channel, 4 the scoreboard, 5... the sockets) and its
 * settings in one environment variable, read once. Node workers take every socket, uwsgi and HTTP alike.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { processTitle, type HeaderEdit, type LogWhen, type Settings } from '../../config/resolve.js';
import type { BoundSocket } from '../../master/sockets.js';
import type { ListenerTls } from '../../router/tls-options.js';

export const NODE_WORKER_SCRIPT = resolve(fileURLToPath(new URL('.', import.meta.url)), 'main.js');

const CONTROL_FD = 3;
const SCOREBOARD_FD = 4;
const FIRST_SOCKET_FD = 5;

export interface NodeSocketConfig {
  fd: number;
  protocol: 'uwsgi' | 'http';
  name: string;
  /** SERVER_PORT for HTTP requests ('' on a Unix socket). */
  port: string;
  timeoutMs: number;
  /** https, https-socket: the certificates (read by the master) and TLS settings. */
  tls?: ListenerTls;
  /** http-to-https: every request is redirected to https. */
  redirectHttps?: boolean;
}

/** What a Node worker is told (the TSGI_WORKER variable). */
import type { StaticSettings } from '../../static/config.js';

export interface NodeWorkerConfig {
  id: number;
  slot: number;
  processes: number;
  /** Recycle after this many requests (max-requests + id × max-requests-delta); 0: never. */
  maxRequests: number;
  listen: number;
  bufferSize: number;
  limitPost: number;
  disableLogging: boolean;
  /** log-4xx and friends: requests logged even with disable-logging. */
  logWhen: LogWhen | undefined;
  logMicros: boolean;
  logDate: string | undefined;
  /** req-logger: request lines go to this descriptor instead of the log; undefined when unset. */
  reqLogFd?: number;
  ftimeFormat: string | undefined;
  /** add-header / del-header. */
  headers: HeaderEdit | undefined;
  /** log-x-forwarded-for: the client address in request lines is the first of X-Forwarded-For. */
  logXForwardedFor: boolean;
  logFormat: string | undefined;
  /** static-map and friends: files the worker sends before the app is called (docs/static-files.md). */
  static: StaticSettings | undefined;
  catchExceptions: boolean;
  env: Array<[string, string]>;
  app: { file: string; callable: string; contract: 'wsgi' | 'fetch' | 'listener' | undefined };
  appName: string;
  /** The process title (procname options). */
  title: string;
  controlFd: number;
  scoreboard: { fd: number; size: number };
  sockets: NodeSocketConfig[];
}

export interface NodeWorkerSpec {
  settings: Settings;
  appFile: string;
  appName: string;
  id: number;
  slot: number;
  logFd: number;
  /** req-logger: the log master's request-line pipe, else undefined (request lines go to the log). */
  reqLogFd?: number;
  scoreboardFd: number;
  scoreboardSize: number;
  sockets: readonly BoundSocket[];
  env: NodeJS.ProcessEnv;
  /** The certificates of an https socket, read by the master before it dropped privileges. */
  tlsFor?: (socket: BoundSocket) => ListenerTls | undefined;
}

export function spawnNodeWorker(spec: NodeWorkerSpec): ChildProcess {
  const s = spec.settings;
  const conf: NodeWorkerConfig = {
    id: spec.id,
    slot: spec.slot,
    processes: s.processes,
    maxRequests: s.maxRequests ? s.maxRequests + spec.id * s.maxRequestsDelta : 0,
    listen: s.listen,
    bufferSize: s.bufferSize,
    limitPost: s.limitPost,
    disableLogging: s.disableLogging,
    logWhen: s.logWhen,
    logMicros: s.logMicros,
    logDate: s.logDate,
    ftimeFormat: s.ftimeFormat,
    headers: s.headers,
    logXForwardedFor: s.logXForwardedFor,
    logFormat: s.logFormat,
    static: s.static,
    catchExceptions: s.python.catchExceptions,
    env: s.env,
    app: { file: spec.appFile, callable: s.python.callable, contract: s.appContract },
    appName: spec.appName,
    title: processTitle(s.procname, 'worker', spec.id),
    controlFd: CONTROL_FD,
    scoreboard: { fd: SCOREBOARD_FD, size: spec.scoreboardSize },
    sockets: spec.sockets.map((b, i) => ({
      fd: FIRST_SOCKET_FD + i,
      protocol: b.spec.protocol,
      name: b.name,
      port: b.path ? '' : b.name.slice(b.name.lastIndexOf(':') + 1),
      timeoutMs: b.spec.timeout * 1000,
      tls: spec.tlsFor?.(b),
      redirectHttps: b.spec.redirectHttps,
    })),
    reqLogFd: spec.reqLogFd === undefined ? undefined : FIRST_SOCKET_FD + spec.sockets.length,
  };
  return spawn(process.execPath, [NODE_WORKER_SCRIPT], {
    stdio: ['ignore', spec.logFd, spec.logFd, 'pipe', spec.scoreboardFd, ...spec.sockets.map((b) => b.fd),
      ...(spec.reqLogFd === undefined ? [] : [spec.reqLogFd])],
    env: { ...spec.env, TSGI_WORKER: JSON.stringify(conf) },
  });
}
