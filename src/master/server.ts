/**
 * Start-up in uWSGI's order: chdir, open the log, bind the sockets, write the pidfile, drop privileges,
 * then hand over to the master loop. Any problem before the first worker starts is one line and exit 1.
 */
import { runExecHooks, type ExecPhase } from './exec-hooks.js';
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, writeFileSync, unlinkSync } from 'node:fs';
import { cacheStats, openCache, startStoreSync, type OpenCache } from '../cache/shared.js';
import type { CacheSpec } from '../cache/config.js';
import { resolve as resolvePath } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readCommandLine } from '../cli/tsgi.js';
import { ConfigError } from '../config/errors.js';
import type { Entry } from '../config/origin.js';
import { processTitle, type Settings, type SocketSpec } from '../config/resolve.js';
import { vassalLink } from '../emperor/link.js';
import { TSGI_VERSION } from '../version.js';
import { Master, type MasterHooks, type Milestone } from './arbiter.js';
import { MasterFifo } from './fifo.js';
import { tcpListenQueue } from './procinfo.js';
import { takeInheritedSockets } from './activation.js';
import { SystemdNotifier } from '../systemd/notify.js';
import { statsJson, type MasterSnapshot } from './stats.js';
import { StatsServer } from './stats-server.js';
import { Metrics } from './metrics.js';
import { ProcessLog } from './log.js';
import { LogMaster } from './logmaster.js';
import { loggingKey } from '../config/logging.js';
import { Scoreboard } from './scoreboard.js';
import { Daemons } from './daemons.js';
import { Spoolers } from './spoolers.js';
import { Mules } from './mules.js';
import { SignalHub } from './signals.js';
import { CronScheduler } from './cron.js';
import { loadTls, type TlsMaterial } from './tls.js';
import { bindLinkSocket, bindSockets, closeLinkSocket, closeSockets, enableKeepAlive, type BoundSocket, type LinkSocket } from './sockets.js';
import { resolveGroup, resolveUser } from './users.js';
import { appName, resolveInterpreter, spawnPythonWorker } from '../workers/python/launcher.js';
import { chooseApp, type AppChoice } from '../workers/app-kind.js';
import { spawnNodeWorker } from '../workers/node/launcher.js';

class StartupError extends Error {}

const ROUTER_SCRIPT = resolvePath(fileURLToPath(new URL('.', import.meta.url)), '../router/main.js');

/** The uid/gid workers will run as, for the ownership of private sockets created before the switch. */
function targetOwner(settings: Settings): { uid: number; gid: number } | undefined {
  if (settings.uid === undefined && settings.gid === undefined) return undefined;
  const user = settings.uid !== undefined ? resolveUser(settings.uid) : undefined;
  const gid = settings.gid !== undefined ? resolveGroup(settings.gid) : user?.gid;
  return { uid: user?.uid ?? process.getuid!(), gid: gid ?? process.getgid!() };
}

/** Starts the HTTP router on the HTTP sockets, with `links` links: one per core of every running worker. */
function spawnRouter(settings: Settings, http: readonly BoundSocket[], link: LinkSocket, logFd: number, links: number,
  tlsMaterial: ReadonlyArray<TlsMaterial | undefined>, reqLogFd: number | undefined) {
  const FIRST_FD = 4; // 0-2 standard streams, 3 the IPC channel with the master
  const config = {
    linkPath: link.path,
    links,
    // With a log master the router writes to its pipe, which is never reopened.
    logto: settings.logto && !settings.logging ? resolvePath(settings.logto) : undefined,
    reqLogFd: reqLogFd === undefined ? undefined : FIRST_FD + http.length,
    maxQueue: Math.max(1024, settings.listen),
    bufferSize: settings.bufferSize,
    limitPost: settings.limitPost,
    // With internal routing the workers serve the static files, after the rules (as uWSGI orders them).
    static: settings.routes ? undefined : settings.static,
    disableLogging: settings.disableLogging,
    logWhen: settings.logWhen,
    logMicros: settings.logMicros,
    logDate: settings.logDate,
    headers: settings.headers,
    title: processTitle(settings.procname, 'router'),
    listeners: http.map((b, i) => ({
      fd: FIRST_FD + i,
      name: b.name,
      port: b.path ? '' : b.name.slice(b.name.lastIndexOf(':') + 1),
      timeout: b.spec.timeout,
      tls: b.spec.tls !== undefined,
      redirectHttps: b.spec.redirectHttps === true,
    })),
    httpTo: settings.httpTo.map((t) => ({ address: t.address, text: t.text })),
    tlsSettings: tlsMaterial.some((m) => m !== undefined) ? settings.tls : undefined,
  };
  const child = spawn(process.execPath, [ROUTER_SCRIPT], {
    stdio: ['ignore', logFd, logFd, 'ipc', ...http.map((b) => b.fd), ...(reqLogFd === undefined ? [] : [reqLogFd])],
    env: { ...process.env, TSGI_ROUTER: JSON.stringify(config) },
  });
  // Certificates and keys over the IPC channel, not in the environment (readable in /proc): the router waits for them.
  if (config.tlsSettings) child.send({ type: 'tls', material: tlsMaterial });
  return child;
}

/** Node's POSIX credential calls (always present on Linux, optional in the type definitions). */
const posix = process as unknown as {
  setuid(id: number): void;
  setgid(id: number): void;
  getuid(): number;
  initgroups(user: string, extraGroup: number): void;
};

function dropPrivileges(settings: Settings): void {
  if (settings.gid !== undefined) {
    const gid = resolveGroup(settings.gid);
    if (gid === undefined) throw new StartupError(`gid: no such group '${settings.gid}'`);
    try {
      posix.setgid(gid);
    } catch (err) {
      throw new StartupError(`gid ${settings.gid}: cannot switch group (${(err as NodeJS.ErrnoException).code})`);
    }
  }
  if (settings.uid !== undefined) {
    const user = resolveUser(settings.uid);
    if (!user) throw new StartupError(`uid: no such user '${settings.uid}'`);
    try {
      // Supplementary groups of the user (e.g. www-data membership), then its primary group unless gid chose one.
      if (posix.getuid() === 0) posix.initgroups(user.name, settings.gid !== undefined ? resolveGroup(settings.gid)! : user.gid);
      if (settings.gid === undefined) posix.setgid(user.gid);
      posix.setuid(user.uid);
    } catch (err) {
      throw new StartupError(`uid ${settings.uid}: cannot switch user (${(err as NodeJS.ErrnoException).code})`);
    }
  }
}

function writePidfile(path: string | undefined): void {
  if (!path) return;
  try {
    writeFileSync(path, `${process.pid}\n`);
  } catch (err) {
    throw new StartupError(`pidfile ${path}: cannot write (${(err as NodeJS.ErrnoException).code})`);
  }
}

/**
 * mount, manage-script-name and no-default-app choose among Python apps in a Python worker; a Node worker runs
 * one app, which routes paths itself: refused in one line naming where the option was given.
 */
function refuseMountsForNode(settings: Settings, file: string): void {
  const p = settings.python;
  if (p.vhost) {
    throw new ConfigError('NOT_IMPLEMENTED', `is for Python apps (it loads the Python app the web server names); ${file} is a Node app`,
      p.vhost.origin, p.vhost.option);
  }
  const option = p.mounts.length ? 'mount' : p.manageScriptName ? 'manage-script-name' : p.noDefaultApp ? 'no-default-app' : undefined;
  if (option === undefined) return;
  const origin = option === 'mount' ? p.mounts[0]!.origin : p.origins[option === 'manage-script-name' ? 'manageScriptName' : 'noDefaultApp'];
  throw new ConfigError('NOT_IMPLEMENTED', `is for Python apps; ${file} is a Node app, which serves one app: route its paths inside it ` +
    '(Express, Hono and friends mount sub-apps under a prefix)', origin, option);
}

/**
 * alarm-backlog: once a second, the accept queue of each TCP socket (from /proc/net/tcp, as the stats do); when it
 * is full, uWSGI's line (its words, which log-route and alarm-log rules in real configs match) and the alarms.
 * Unix sockets do not show their queue there and are not watched.
 */
function watchListenQueues(settings: Settings, sockets: readonly BoundSocket[], log: ProcessLog, logMaster: LogMaster, alarms: readonly string[]): void {
  const tcp = sockets.filter((b) => !b.path);
  if (!tcp.length) {
    log.info('alarm-backlog: no TCP socket to watch (the listen queue of Unix sockets is not visible)');
    return;
  }
  const max = settings.listen;
  const timer = setInterval(() => {
    for (const b of tcp) {
      const queue = tcpListenQueue(Number(b.name.slice(b.name.lastIndexOf(':') + 1)));
      if (queue === undefined || queue < max) continue;
      const message = `listen queue of socket "${b.name}" (fd: ${b.fd}) full !!! (${queue}/${max})`;
      log.info(`*** uWSGI ${message} ***`);
      logMaster.raise(alarms, message);
    }
  }, 1000);
  timer.unref();
}

export async function startServer(settings: Settings, _entries: readonly Entry[], argv: readonly string[], startCwd: string): Promise<void> {
  /** Set when this master is a vassal: its emperor hears of its lifecycle and of a failed start. */
  const emperor = vassalLink();
  let log: ProcessLog | undefined;
  let logMaster: LogMaster | undefined;
  let sockets: BoundSocket[] = [];
  let link: LinkSocket | undefined;
  try {
    if (settings.chdir) {
      try {
        process.chdir(settings.chdir);
      } catch (err) {
        throw new StartupError(`chdir ${settings.chdir}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such directory' : (err as Error).message}`);
      }
    }
    const inherited = takeInheritedSockets(process.env);
    if (settings.sockets.length === 0 && inherited.length) {
      // Socket activation with nothing configured: serve every socket systemd passed (named http → HTTP).
      settings.sockets = inherited.map((s) => ({
        address: s.address ?? { kind: 'unix', path: `fd${s.fd}` },
        text: s.name,
        protocol: s.name === 'http' ? 'http' : 'uwsgi',
        option: 'LISTEN_FDS',
        timeout: settings.socketTimeout,
        origin: { kind: 'env', name: 'LISTEN_FDS' },
      }));
    }
    if (settings.sockets.length === 0) throw new StartupError('no socket to serve on: set socket = ADDR (e.g. socket = /run/tsgi/app.sock or :3031)');
    if (!settings.routerOnly && !settings.python.module && !settings.python.wsgiFile && !settings.python.mounts.length
      && !settings.python.vhost && !settings.python.noDefaultApp) {
      // Without an app, uWSGI serves only what the web server names per request (UWSGI_SCRIPT): tsgi asks for that
      // to be said (vhost or no-default-app), so that a config that lost its module line does not start answering 500s.
      throw new StartupError('no app to serve: set module = MODULE[:CALLABLE], wsgi-file = FILE or mount = /PATH=APP ' +
        '(or vhost / no-default-app to load apps as the web server names them: UWSGI_SCRIPT, docs/vhost.md)');
    }
    const cwd = process.cwd();
    let choice: AppChoice;
    try {
      choice = chooseApp(settings, cwd);
    } catch (err) {
      throw new StartupError((err as Error).message);
    }
    const kind = choice.kind;
    if (kind === 'node') refuseMountsForNode(settings, choice.file!);
    if (kind === 'node' && settings.spooler) {
      throw new StartupError(`spooler: the spooler (docs/spooler.md) is implemented for Python apps only; ${choice.file} is a Node app`);
    }
    if (kind === 'node' && settings.mules) {
      throw new StartupError(`mule: mules (docs/mules.md) are implemented for Python apps only; ${choice.file} is a Node app`);
    }
    if (kind === 'node' && (settings.routes || settings.finalRoutes || settings.errorRoutes || settings.responseRoutes)) {
      const first = (settings.routes ?? settings.finalRoutes ?? settings.errorRoutes ?? settings.responseRoutes)![0]!.where;
      throw new StartupError(`${first}: internal routing (route, route-run, route-if, ...) is implemented for Python apps only; ${choice.file} is a Node app`);
    }
    if (kind === 'node' && (settings.collectHeaders || settings.pullHeaders)) {
      throw new StartupError(`collect-header, pull-header: implemented for Python apps only; ${choice.file} is a Node app`);
    }
    if (kind === 'node' && settings.caches) {
      throw new StartupError(`${settings.caches.caches[0]!.where}: the caches (cache2, cache, ...) are implemented for Python apps only; ${choice.file} is a Node app`);
    }
    if (kind === 'node' && settings.python.autoreload) {
      // A Node app's imports are not known to the master; touch-reload names the files to watch instead.
      throw new StartupError(`py-autoreload watches the modules of a Python app; ${choice.file} is a Node app (use touch-reload = FILE to reload when a file changes)`);
    }
    // https, http-to-https and http-to live in the router, which Python apps have (docs/https.md).
    // Node workers serve https themselves (node:https); forwarding to other instances is the router's, which
    // only Python apps have.
    if (kind === 'node' && settings.httpTo.length) {
      throw new ConfigError('NOT_IMPLEMENTED', `is done by tsgi's HTTP router, which runs for Python apps; ${choice.file} is a Node app (its workers serve HTTP themselves)`, settings.httpTo[0]!.origin, 'http-to');
    }
    if (settings.httpTo.length && !settings.sockets.some((x) => x.protocol === 'http' && !x.redirectHttps)) {
      throw new ConfigError('BAD_VALUE', 'forwards the requests of the HTTP router; add http = ADDR or https = ADDR,CERT,KEY for it to listen on', settings.httpTo[0]!.origin, 'http-to');
    }
    // Read as root, before the privileges go (a key readable by root only is the usual setup).
    const tlsBySpec = new Map<SocketSpec, TlsMaterial>();
    for (const spec of settings.sockets) if (spec.tls) tlsBySpec.set(spec, loadTls(spec));
    const interpreter = kind === 'python' && !settings.routerOnly ? resolveInterpreter(settings, process.env) : undefined;
    // As uWSGI: the umask applies to everything the master creates (log, sockets, pidfiles) and its children.
    if (settings.umask !== undefined) process.umask(settings.umask);
    try {
      log = new ProcessLog(settings.logto);
      log.logDate = settings.logDate;
    } catch (err) {
      throw new StartupError(`logto ${settings.logto}: cannot open (${(err as NodeJS.ErrnoException).code})`);
    }
    if (settings.logging) {
      try {
        logMaster = new LogMaster(settings.logging, log);
      } catch (err) {
        throw new StartupError((err as Error).message);
      }
      log.attach(logMaster);
    }
    const reqLogFd = logMaster?.reqFd;
    // exec-* hooks up to as-root: before the sockets are bound and privileges dropped, as uWSGI runs them.
    const execHook = (s: Settings, phase: ExecPhase): string | undefined =>
      s.exec[phase].length
        ? runExecHooks(s.exec, phase, (l) => log!.info(l), log!.fd, logMaster && ((text) => logMaster!.take(text)))
        : undefined;
    for (const phase of ['asap', 'pre-jail', 'in-jail', 'as-root'] as const) {
      const failed = execHook(settings, phase);
      if (failed) throw new StartupError(failed);
    }
    sockets = await bindSockets(settings.sockets, { chmod: settings.chmodSocket, chown: settings.chownSocket }, inherited);
    if (settings.soKeepalive) enableKeepAlive(sockets);
    for (const s of inherited) if (!s.used) log.info(`socket activation: ${s.name} (fd ${s.fd}) matches no configured socket; not served`);
    const uwsgiSockets = sockets.filter((b) => b.spec.protocol === 'uwsgi');
    // Python workers take the uwsgi sockets and leave HTTP to the router; Node workers take every socket.
    const httpSockets = kind === 'python' ? sockets.filter((b) => b.spec.protocol === 'http') : [];
    if (httpSockets.length) link = bindLinkSocket(targetOwner(settings));
    const linkSocket = link;
    writePidfile(settings.pidfile);
    dropPrivileges(settings);
    writePidfile(settings.pidfile2);
    for (const phase of ['as-user', 'pre-app'] as const) {
      const failed = execHook(settings, phase);
      if (failed) throw new StartupError(failed);
    }

    const processLog = log;
    const scoreboard = new Scoreboard(Math.max(256, settings.processes * 4), settings.threads);
    // The caches (docs/cache.md): created once, before any worker, and kept across reloads (the master stays).
    let caches: OpenCache[] = [];
    try {
      for (const spec of settings.caches?.caches ?? []) caches.push(openCache(spec, (l) => log!.info(l)));
    } catch (err) {
      for (const c of caches) closeSync(c.fd);
      caches = [];
      throw new StartupError((err as Error).message);
    }
    const cacheFds = caches.map((c) => ({ name: c.spec.name, fd: c.fd, size: c.size }));
    // enable-metrics (docs/metrics.md): the shared values, made once like the scoreboard; collected once a second.
    let metrics: Metrics | undefined;
    try {
      metrics = settings.metrics ? new Metrics(settings.metrics, settings.processes, settings.threads, sockets.length) : undefined;
    } catch (err) {
      throw new StartupError((err as Error).message);
    }
    const metricsFd = metrics && { fd: metrics.fd, size: metrics.size, table: metrics.table() };
    const metricsKey = JSON.stringify(settings.metrics);
    const stopStoreSync = caches.length ? startStoreSync(caches) : undefined;
    const cacheGeometry = (list: CacheSpec[] | undefined): string => JSON.stringify((list ?? []).map(({ where: _where, ...c }) => c));
    const cacheKey = cacheGeometry(settings.caches?.caches);
    const boundSockets = sockets;
    process.title = processTitle(settings.procname, 'master');
    processLog.info(`tsgi ${TSGI_VERSION} starting: master pid ${process.pid}, ` + (settings.routerOnly
      ? `no app: the HTTP router forwards to ${settings.httpTo.map((t) => t.text).join(', ')} (http-to)`
      : `app ${appName(settings)}, ` + (kind === 'python' ? `python ${interpreter}` : `node ${process.version} (${choice.file})`)));
    for (const b of sockets) processLog.info(`${b.spec.protocol} socket ${b.name} ${b.inherited ? 'passed by systemd' : 'bound'} (fd ${b.fd})`);
    const systemd = new SystemdNotifier(process.env, (l) => processLog.info(l));

    let finished = false;
    /** The configuration in effect (a reload replaces it): its as-user-atexit hooks run when it goes. */
    let current = settings;
    // attach-daemon & co. and cron: created only when configured, so nothing runs for them otherwise.
    const daemons = settings.daemons.length ? new Daemons(settings.daemons, (l) => processLog.info(l), () => processLog.fd, () => stopGracefully()) : undefined;
    const cron = settings.cron.length ? new CronScheduler(settings.cron, (l) => processLog.info(l), () => processLog.fd, settings.cronHarakiri) : undefined;
    // Spoolers and mules are Python processes beside the workers: no socket, no link, no slot of their own.
    const sideProcess = (s: Settings, role: { spoolerDir: string } | { muleId: number }) => spawnPythonWorker({
      interpreter: resolveInterpreter(s, process.env), settings: s, id: 0, slot: 0, logFd: processLog.fd,
      scoreboardFd: scoreboard.fd, scoreboardSize: scoreboard.size, socketFds: [], linkFd: undefined, metrics: metricsFd, env: process.env, ...role,
    });
    // The spooler processes (docs/spooler.md): created only when a spooler directory is configured.
    const spoolers = kind === 'python' && settings.spooler?.dirs.length
      ? new Spoolers(settings, (s, dir) => sideProcess(s, { spoolerDir: dir }), (l) => processLog.info(l))
      : undefined;
    if (spoolers) settings.spooler!.runDir = spoolers.runDir;
    // uWSGI's signal framework (docs/signals.md): the master routes signals for Python apps. Its socket costs
    // nothing until a process uses a signal.
    const signalHub = kind === 'python' ? new SignalHub((l) => processLog.info(l)) : undefined;
    if (signalHub) settings.signalSocket = signalHub.path;
    // The mules (docs/mules.md): created only when a mule is configured.
    const mules = kind === 'python' && settings.mules
      ? new Mules(settings, (s, id) => sideProcess(s, { muleId: id }), (l) => processLog.info(l))
      : undefined;
    if (mules) settings.mules!.runDir = mules.runDir;
    let daemonsStopped: Promise<void> | undefined;
    const stopDaemons = (): Promise<void> => {
      cron?.stop();
      return (daemonsStopped ??= Promise.all([daemons ? daemons.stop() : undefined, spoolers?.stop(current.reloadMercy), mules?.stop(current.reloadMercy)]).then(() => undefined));
    };
    let vacuum = settings.vacuum;
    let stats: StatsServer | undefined;
    const fifos: MasterFifo[] = [];
    const workerSpec = (s: Settings, id: number, slot: number, loader: boolean) =>
      spawnPythonWorker({
        interpreter: resolveInterpreter(s, process.env),
        settings: s,
        id,
        slot,
        logFd: processLog.fd,
        reqLogFd,
        scoreboardFd: scoreboard.fd,
        scoreboardSize: scoreboard.size,
        socketFds: uwsgiSockets.map((b) => b.fd),
        linkFd: linkSocket?.fd,
        caches: cacheFds,
        metrics: metricsFd,
        env: process.env,
        loader,
      });
    // A graceful reload re-reads the https certificates (docs/https.md), so a renewed one needs no restart: the
    // same files (a socket's change waits for a restart like the socket itself), read with the privileges the
    // master has now. One that cannot be read or checked keeps the old one, with one line; the server goes on.
    let routerChild: ChildProcess | undefined;
    const reloadCertificates = (): void => {
      let changed = false;
      for (const b of sockets!) {
        if (!b.spec.tls) continue;
        const old = tlsBySpec.get(b.spec)!;
        let fresh: TlsMaterial;
        try {
          fresh = loadTls(b.spec);
        } catch (err) {
          const why = err instanceof ConfigError ? err.detail : (err as Error).message;
          const root = settings.uid !== undefined || settings.gid !== undefined ? ' (read after privileges were dropped: a file only root can read needs a restart)' : '';
          processLog.info(`https ${b.name}: certificate not reloaded, the old one stays: ${why}${root}`);
          continue;
        }
        if (fresh.cert === old.cert && fresh.key === old.key && fresh.ca === old.ca) continue;
        tlsBySpec.set(b.spec, fresh);
        changed = true;
        processLog.info(`https ${b.name}: certificate reloaded from ${b.spec.tls.cert}`);
      }
      // The router serves on; Node workers get the new ones as the reload spawns them (tlsFor reads tlsBySpec).
      if (changed && routerChild?.connected) routerChild.send({ type: 'tls', reload: true, material: httpSockets.map((b) => tlsBySpec.get(b.spec)) });
    };
    const hooks: MasterHooks = {
      spawn: (s, id, slot) =>
        kind === 'node'
          ? spawnNodeWorker({
            settings: s,
            appFile: chooseApp(s, cwd).file!,
            appName: appName(s),
            id,
            slot,
            logFd: processLog.fd,
            reqLogFd,
            scoreboardFd: scoreboard.fd,
            scoreboardSize: scoreboard.size,
            sockets: boundSockets,
            env: process.env,
            tlsFor: (b) => {
              const m = tlsBySpec.get(b.spec);
              return m && { ...m, ...s.tls };
            },
          })
          : workerSpec(s, id, slot, false),
      // Node cannot fork a loaded app: every Node worker loads it (lazy-apps, always).
      spawnLoader: settings.lazyApps || kind === 'node' ? undefined : (s) => workerSpec(s, 0, 0, true),
      spawnRouter: linkSocket
        ? (s, links) => (routerChild = spawnRouter(s, httpSockets, linkSocket, processLog.fd, links, httpSockets.map((b) => tlsBySpec.get(b.spec)), reqLogFd))
        : undefined,
      reloadSettings: () => {
        let errors = '';
        const outcome = readCommandLine(argv, { env: process.env, cwd: startCwd, stdout: () => {}, stderr: (t) => (errors += t) });
        if ('exit' in outcome) return errors.trim().replace(/^tsgi: /, '') || `configuration exited with status ${outcome.exit}`;
        const next = outcome.start;
        next.reloaded = true;
        try {
          const nextKind = chooseApp(next, cwd).kind;
          if (nextKind !== kind) return `the app is now a ${nextKind} app (it was ${kind}): that needs a restart`;
        } catch (err) {
          return (err as Error).message;
        }
        if (next.sockets.map((x) => x.text).join(' ') !== settings.sockets.map((x) => x.text).join(' ')) {
          processLog.info('note: socket changes take effect at the next restart; the reload keeps the bound sockets');
        }
        if (next.httpTo.map((x) => x.text).join(' ') !== settings.httpTo.map((x) => x.text).join(' ') || next.routerOnly !== settings.routerOnly) {
          return 'http-to changed: the router keeps its backends until the next restart';
        }
        if (loggingKey(next.logging) !== loggingKey(settings.logging)) {
          processLog.info('note: logger, req-logger, log-encoder, log-route and alarm changes take effect at the next restart; the reload keeps the running ones');
        }
        if (next.processes * 2 > scoreboard.slots) return `processes = ${next.processes} needs a restart (at most ${scoreboard.slots / 2} on reload)`;
        if (cacheGeometry(next.caches?.caches) !== cacheKey) return 'cache changes (cache2, cache, cache-*) need a restart: a reload keeps the caches';
        // The metric list (built-in per worker id and core, then the user ones) is laid out once, in the shared file.
        if (JSON.stringify(next.metrics) !== metricsKey) return 'metrics changes (enable-metrics, metric, metrics-dir) need a restart: a reload keeps the metrics';
        if (metrics && (next.processes !== settings.processes || next.threads !== settings.threads)) {
          return 'with metrics, processes and threads changes need a restart: the metric list has one entry per worker and core';
        }
        if (next.threads > scoreboard.cores) return `threads = ${next.threads} needs a restart (more than the ${scoreboard.cores} the server started with)`;
        if ((next.daemons.length && !daemons) || (next.cron.length && !cron)) {
          processLog.info('note: daemons and cron jobs added to a configuration that had none take effect at the next restart');
        }
        // As a uWSGI reload: the exit hooks of the configuration that goes, the user and pre-app hooks of the
        // one that comes (a failure refuses the reload; the running workers stay).
        const exitFailed = execHook(current, 'as-user-atexit');
        if (exitFailed) processLog.info(exitFailed);
        for (const phase of ['as-user', 'pre-app'] as const) {
          const failed = execHook(next, phase);
          if (failed) return failed;
        }
        current = next;
        daemons?.reload(next.daemons);
        if (next.spooler && spoolers) next.spooler.runDir = spoolers.runDir;
        else if (next.spooler?.dirs.length) processLog.info('note: a spooler added to a configuration that had none takes effect at the next restart');
        spoolers?.reload(next);
        if (signalHub) {
          next.signalSocket = signalHub.path;
          signalHub.reset();
        }
        if (next.mules && mules) next.mules.runDir = mules.runDir;
        else if (next.mules) processLog.info('note: a mule added to a configuration that had none takes effect at the next restart');
        mules?.reload(next);
        cron?.replace(next.cron, next.cronHarakiri);
        reloadCertificates();
        return next;
      },
      releaseListeners: () => closeSockets(boundSockets, vacuum),
      finish: (status) => {
        if (finished) return;
        finished = true;
        stats?.close();
        stopStoreSync?.();
        for (const f of fifos) f.close();
        closeSockets(boundSockets, vacuum);
        if (linkSocket) closeLinkSocket(linkSocket);
        if (vacuum) {
          for (const p of [settings.pidfile, settings.pidfile2]) {
            if (!p) continue;
            try {
              unlinkSync(p);
            } catch {
              /* already gone, or not ours to remove any more */
            }
          }
        }
        const exitFailed = execHook(current, 'as-user-atexit');
        if (exitFailed) processLog.info(exitFailed);
        const exit = (): void => {
          // The last lines of the workers may still sit in the log master's pipe.
          logMaster?.drain();
          signalHub?.close();
          processLog.info(status === 0 ? 'stopped' : `exiting with status ${status}`);
          process.exit(status);
        };
        // An immediate stop (or a fatal error) kills the spoolers at once, as uWSGI kills its own, instead of letting
        // their task finish: the task stays spooled and runs at the next start.
        if (status !== 0) {
          spoolers?.killNow();
          mules?.killNow();
        }
        if (daemons || spoolers || mules) void stopDaemons().then(exit, exit);
        else exit();
      },
    };
    const master = new Master(
      settings,
      hooks,
      processLog,
      scoreboard,
    );
    const baseSnapshot = (): MasterSnapshot => ({
      version: TSGI_VERSION,
      pid: process.pid,
      uid: process.getuid!(),
      gid: process.getgid!(),
      cwd: process.cwd(),
      sockets: boundSockets.map((b) => ({
        name: b.name,
        proto: b.spec.protocol,
        queue: (b.path ? undefined : tcpListenQueue(Number(b.name.slice(b.name.lastIndexOf(':') + 1)))) ?? 0,
        maxQueue: settings.listen,
      })),
      workers: master.snapshotWorkers(),
      ...(spoolers ? { spoolers: spoolers.stats() } : {}),
      ...(mules ? { mules: mules.stats() } : {}),
      ...(caches.length ? { caches: caches.map(cacheStats) } : {}),
    });
    const snapshot = (): MasterSnapshot => (metrics ? { ...baseSnapshot(), metrics: metrics.json() } : baseSnapshot());
    const metricsTimer = metrics && setInterval(() => metrics.collect(baseSnapshot()), 1000);
    metricsTimer?.unref();
    Object.assign(hooks, {
      reopenLog: () => processLog.reopen(),
      logSize: () => processLog.size(),
      rotateLog: () => processLog.rotate(),
      statsText: () => statsJson(snapshot(), true),
      milestone: (what: Milestone, status: string) => {
        if (what === 'stopping') void stopDaemons();
        systemd.milestone(what, status);
        emperor?.milestone(what, status, what === 'ready' ? boundSockets.map((b) => b.name) : undefined);
      },
    });
    if (settings.stats) {
      stats = new StatsServer(settings.stats, { http: settings.statsHttp, minified: settings.statsMinified }, snapshot);
      try {
        await stats.ready();
      } catch (err) {
        throw new StartupError(`stats ${settings.stats}: cannot listen (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
      }
      processLog.info(`stats server on ${settings.stats}${settings.statsHttp ? ' (HTTP: / JSON, /metrics Prometheus)' : ''}`);
    }
    for (const path of settings.masterFifo) {
      try {
        fifos.push(new MasterFifo(path, (letter) => master.command(letter)));
      } catch (err) {
        throw new StartupError((err as Error).message);
      }
    }
    // A vassal's graceful stop can be asked several times at once (systemd signals every process of the unit, and
    // the emperor passes its own SIGTERM on): for a vassal, only the first counts; its emperor escalates (SIGINT,
    // then SIGKILL after the mercy), never a repeated SIGTERM.
    let stopAsked = false;
    const stopGracefully = (): void => {
      if (emperor && stopAsked) return;
      stopAsked = true;
      master.signal('SIGTERM');
    };
    for (const sig of ['SIGHUP', 'SIGINT', 'SIGQUIT', 'SIGUSR1'] as const) {
      process.on(sig, () => {
        if (sig === 'SIGINT' || sig === 'SIGQUIT') {
          spoolers?.killNow();
          mules?.killNow();
        }
        master.signal(sig);
      });
    }
    process.on('SIGTERM', stopGracefully);
    emperor?.onStop((force) => {
      // The vassal's file was removed: nothing will serve on its sockets again, so they go too.
      if (force) vacuum = true;
      stopGracefully();
    });
    emperor?.onLost(() => {
      processLog.info('lost the emperor (its link closed); stopping gracefully');
      stopGracefully();
    });
    master.start();
    if (settings.logging?.alarmBacklog.length) watchListenQueues(settings, boundSockets, processLog, logMaster!, settings.logging.alarmBacklog);
    daemons?.start();
    spoolers?.start();
    mules?.start();
    cron?.start();
  } catch (err) {
    closeSockets(sockets, true);
    if (link) closeLinkSocket(link);
    const message = err instanceof Error ? err.message : String(err);
    if (err instanceof StartupError || (err as Error).name === 'SocketError' || (err as Error).name === 'InterpreterError' || err instanceof Error) {
      if (emperor) return emperor.fatal('startup', message);
      process.stderr.write(`tsgi: ${message}\n`);
      process.exit(1);
    }
    throw err;
  }
}
