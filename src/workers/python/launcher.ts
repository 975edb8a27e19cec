/**
 * Starting a Python worker: the interpreter the user chose (home/virtualenv, else $VIRTUAL_ENV, else python3
 * on PATH) running python/tsgi-worker.py, with the master's sockets, the scoreboard and a control channel as
 * inherited descriptors and the worker's settings in one environment variable (read once at start-up).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants as fsConstants, existsSync } from 'node:fs';
import { delimiter, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { processTitle, type Settings } from '../../config/resolve.js';

export const WORKER_SCRIPT = resolve(fileURLToPath(new URL('.', import.meta.url)), '../../../../python/tsgi-worker.py');

/** Exit statuses a Python worker uses to tell the master why it stopped. */
export const EXIT_APP_FAILED = 22;

export class InterpreterError extends Error {
  override name = 'InterpreterError';
}

function isExecutable(p: string): boolean {
  try {
    accessSync(p, fsConstants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function inVenv(dir: string): string | undefined {
  for (const name of ['python3', 'python']) {
    const p = join(dir, 'bin', name);
    if (isExecutable(p)) return p;
  }
  return undefined;
}

/** The interpreter for the app, as uWSGI's `home` and the guide's activated virtualenv would choose it. */
export function resolveInterpreter(settings: Settings, env: NodeJS.ProcessEnv): string {
  const home = settings.python.home;
  if (home) {
    const p = inVenv(resolve(home));
    if (!p) throw new InterpreterError(`home ${home}: no Python interpreter at ${join(home, 'bin/python3')} (is it a virtualenv?)`);
    return p;
  }
  if (env.VIRTUAL_ENV) {
    const p = inVenv(env.VIRTUAL_ENV);
    if (p) return p;
  }
  for (const dir of (env.PATH ?? '').split(delimiter)) {
    if (!dir) continue;
    const p = join(dir, 'python3');
    if (isExecutable(p)) return p;
  }
  throw new InterpreterError('no python3 on PATH (set home = /path/to/virtualenv)');
}

export interface PythonWorkerSpec {
  interpreter: string;
  settings: Settings;
  id: number;
  slot: number;
  logFd: number;
  /** req-logger: the log master's request-line pipe, else undefined (request lines go to the log). */
  reqLogFd?: number;
  scoreboardFd: number;
  scoreboardSize: number;
  socketFds: readonly number[];
  /** The router's link socket, when there is an HTTP router. */
  linkFd: number | undefined;
  /** The caches' shared files (docs/cache.md), passed after the sockets and the link. */
  caches?: ReadonlyArray<{ name: string; fd: number; size: number }>;
  /** enable-metrics (docs/metrics.md): the metrics' shared file, passed last, and its table. */
  metrics?: { fd: number; size: number; table: Array<[string, number, boolean]> };
  /** Start the app loader (preloading) rather than a worker. */
  loader?: boolean;
  /** Start a spooler process on this directory rather than a worker (docs/spooler.md). */
  spoolerDir?: string;
  /** Start mule N rather than a worker (docs/mules.md). */
  muleId?: number;
  env: NodeJS.ProcessEnv;
}

/** The app as the user named it, for log lines. */
export function appName(settings: Settings): string {
  const p = settings.python;
  const mounted = p.mounts.map((m) => `${m.app} on ${m.mountpoint}`).join(', ');
  if (!p.wsgiFile && !p.module) return mounted || 'none configured (apps named per request: UWSGI_SCRIPT)';
  const main = p.wsgiFile ? `${p.wsgiFile}${p.callable !== 'application' ? `:${p.callable}` : ''}` : `${p.module}:${p.callable}`;
  return mounted ? `${main}, ${mounted}` : main;
}

/**
 * The apps a Python worker loads, in uWSGI's order (their app ids): the main app (module or wsgi-file, mountpoint
 * '') first, then each mount. null when there is no mount: the worker loads `app` alone and never selects.
 */
function mountedApps(settings: Settings): Array<Record<string, string | null>> | null {
  const p = settings.python;
  // vhost, or no app at all (apps loaded as requests name them, docs/vhost.md), need the table too.
  if (!p.mounts.length && !p.noDefaultApp && !p.vhost && (p.module || p.wsgiFile)) return null;
  const apps: Array<Record<string, string | null>> = [];
  if (p.module || p.wsgiFile) {
    apps.push({ mountpoint: '', module: p.module ?? null, wsgiFile: p.wsgiFile ?? null, callable: p.callable, name: appName({ ...settings, python: { ...p, mounts: [] } }) });
  }
  for (const m of p.mounts) apps.push({ mountpoint: m.mountpoint, module: m.module ?? null, wsgiFile: m.wsgiFile ?? null, callable: m.callable, name: m.app });
  return apps;
}

// Descriptor layout in the worker: 0 /dev/null, 1-2 the log, 3 control channel, 4 scoreboard, 5... sockets.
const CONTROL_FD = 3;
const SCOREBOARD_FD = 4;
const FIRST_SOCKET_FD = 5;

/** What a Python process needs to map each cache: its descriptor there, and the geometry of its file. */
function cacheConf(s: Settings, spec: PythonWorkerSpec) {
  if (!s.caches || !spec.caches?.length) return null;
  const first = FIRST_SOCKET_FD + spec.socketFds.length + (spec.linkFd === undefined ? 0 : 1);
  return {
    caches: s.caches.caches.map((c, i) => ({
      name: c.name, fd: first + i, size: spec.caches![i]!.size, items: c.items, blocksize: c.blocksize, blocks: c.blocks,
      keysize: c.keysize, hashsize: c.hashsize, bitmap: c.bitmap, purgeLru: c.purgeLru, ignoreFull: c.ignoreFull,
      clearOnFull: c.clearOnFull, noExpire: c.noExpire, mathInitial: c.mathInitial,
    })),
    loads: s.caches.loads,
  };
}

export function spawnPythonWorker(spec: PythonWorkerSpec): ChildProcess {
  const s = spec.settings;
  const conf = {
    id: spec.id,
    slot: spec.slot,
    processes: s.processes,
    threads: s.threads,
    maxRequests: s.maxRequests ? s.maxRequests + spec.id * s.maxRequestsDelta : 0,
    // With a log master (s.logging) the worker writes to its pipe, which is never reopened.
    logto: s.logto && !s.logging ? resolve(s.logto) : null,
    listen: s.listen,
    bufferSize: s.bufferSize,
    socketTimeout: s.socketTimeout,
    disableLogging: s.disableLogging,
    logWhen: s.logWhen ?? null,
    logMicros: s.logMicros,
    logDate: s.logDate ?? null,
    ftimeFormat: s.ftimeFormat ?? null,
    // add-header / del-header: applied to every response head the worker writes; null when unset.
    headers: s.headers ?? null,
    logFormat: s.logFormat ?? null,
    logXForwardedFor: s.logXForwardedFor,
    strict: s.strict,
    catchExceptions: s.python.catchExceptions,
    fileWrapper: s.python.fileWrapper,
    needApp: s.needApp,
    // static-map and friends (docs/static-files.md): served by the worker on its uwsgi sockets; null when unset.
    static: s.static ?? null,
    // route, route-run, route-if, ... (docs/routing.md): run by the worker before static files and the app, on
    // every socket and the router's link; null when unset.
    routes: s.routes ?? null,
    finalRoutes: s.finalRoutes ?? null,
    errorRoutes: s.errorRoutes ?? null,
    responseRoutes: s.responseRoutes ?? null,
    collectHeaders: s.collectHeaders ?? null,
    pullHeaders: s.pullHeaders ?? null,
    zygote: spec.loader === true,
    // py-autoreload: worker 1 checks the modules' files every N seconds and sends SIGHUP to the master.
    autoreload: s.python.autoreload,
    masterPid: process.pid,
    // The uwsgi module apps import (docs/python-uwsgi-module.md).
    uwsgi: { opt: s.exportedOptions, startedOn: Math.floor(s.readAt / 1000), isReload: s.reloaded },
    env: s.env,
    pythonpath: s.python.pythonpath.map((p) => resolve(p)),
    imports: s.python.imports,
    app: { module: s.python.module, wsgiFile: s.python.wsgiFile, callable: s.python.callable },
    appName: appName(s),
    // mount / manage-script-name / no-default-app (docs/mount.md): null when none is set.
    mounts: mountedApps(s),
    manageScriptName: s.python.manageScriptName,
    noDefaultApp: s.python.noDefaultApp,
    // vhost / vhost-host, max-apps (docs/vhost.md).
    vhost: s.python.vhost !== null,
    maxApps: s.python.maxApps,
    // Process titles; {id} stands for the worker id (a loader forks workers of any id).
    titles: { worker: processTitle(s.procname, 'worker', '{id}'), loader: processTitle(s.procname, 'loader'), spooler: processTitle(s.procname, 'spooler'),
      mule: processTitle(s.procname, 'mule', '{id}') },
    // The mules (docs/mules.md): where uwsgi.mule_msg() sends; null when none is configured (mule_msg refuses).
    mules: s.mules ? { count: s.mules.mules.length, farms: s.mules.farms, runDir: s.mules.runDir ?? null } : null,
    // uWSGI's signal framework (docs/signals.md): the master's socket; null without a master-side hub.
    signals: s.signalSocket ?? null,
    muleRun: spec.muleId && s.mules ? { id: spec.muleId, script: s.mules.mules[spec.muleId - 1]?.script ?? null, harakiri: s.mules.harakiri } : null,
    // The spooler (docs/spooler.md): where uwsgi.spool() writes; null when none is configured.
    spooler: s.spooler ? { dirs: s.spooler.dirs, external: s.spooler.external, runDir: s.spooler.runDir ?? null, quiet: s.spooler.quiet } : null,
    spoolerRun: spec.spoolerDir && s.spooler
      ? { dir: spec.spoolerDir, frequency: s.spooler.frequency, chdir: s.spooler.chdir ?? null, maxTasks: s.spooler.maxTasks, harakiri: s.spooler.harakiri,
          ordered: s.spooler.ordered, quiet: s.spooler.quiet, imports: s.spooler.imports }
      : null,
    controlFd: CONTROL_FD,
    scoreboard: { fd: SCOREBOARD_FD, size: spec.scoreboardSize },
    socketFds: spec.socketFds.map((_, i) => FIRST_SOCKET_FD + i),
    linkFd: spec.linkFd === undefined ? null : FIRST_SOCKET_FD + spec.socketFds.length,
    // cache2 / cache (docs/cache.md): null when none is configured, so the worker opens nothing.
    caches: cacheConf(s, spec),
    // After the sockets, the link and the caches: the request-line pipe (req-logger); null when request lines go to the log.
    reqLogFd: spec.reqLogFd === undefined ? null
      : FIRST_SOCKET_FD + spec.socketFds.length + (spec.linkFd === undefined ? 0 : 1) + (spec.caches?.length ?? 0),
    // Last of all: the metrics' shared file (docs/metrics.md); null when metrics are off (uwsgi.metric_* answer as uWSGI's do then).
    metrics: spec.metrics
      ? { fd: FIRST_SOCKET_FD + spec.socketFds.length + (spec.linkFd === undefined ? 0 : 1) + (spec.caches?.length ?? 0) + (spec.reqLogFd === undefined ? 0 : 1),
          size: spec.metrics.size, table: spec.metrics.table }
      : null,
  };
  const env: NodeJS.ProcessEnv = { ...spec.env, TSGI_WORKER: JSON.stringify(conf) };
  if (!existsSync(WORKER_SCRIPT)) throw new InterpreterError(`tsgi's Python worker is missing (${WORKER_SCRIPT})`);
  return spawn(spec.interpreter, [WORKER_SCRIPT], {
    stdio: ['ignore', spec.logFd, spec.logFd, 'pipe', spec.scoreboardFd, ...spec.socketFds, ...(spec.linkFd === undefined ? [] : [spec.linkFd]),
      ...(spec.caches ?? []).map((c) => c.fd), ...(spec.reqLogFd === undefined ? [] : [spec.reqLogFd]), ...(spec.metrics ? [spec.metrics.fd] : [])],
    env,
  });
}
