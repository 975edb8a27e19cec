/**
 * `tsgi --emperor DIR|GLOB`: the emperor's start. It checks its own configuration (one line and exit 1 for
 * anything wrong, as for a single instance), opens its log, starts the stats server if asked, then watches the
 * folders and keeps one vassal per file until it is told to stop.
 */
import { ConfigError } from '../config/errors.js';
import type { Entry } from '../config/origin.js';
import type { Settings } from '../config/resolve.js';
import { ProcessLog } from '../master/log.js';
import { SystemdNotifier } from '../systemd/notify.js';
import { TSGI_VERSION } from '../version.js';
import { checkEmperorEntries, parseMonitor, type MonitorSpec } from './config.js';
import { Emperor } from './emperor.js';
import { vassalLink } from './link.js';
import { startStatsServer, statsOf, type StatsServer } from './stats.js';
import { FolderWatcher } from './watch.js';

export async function startEmperor(settings: Settings, entries: readonly Entry[], cwd: string): Promise<void> {
  const es = settings.emperor!;
  /** Set when this emperor is itself a vassal of another emperor. */
  const parent = vassalLink();
  let log: ProcessLog;
  let monitors: MonitorSpec[];
  let stats: StatsServer | undefined;
  try {
    checkEmperorEntries(entries);
    monitors = es.monitors.map((m) => parseMonitor(m.value, m.origin, cwd));
    try {
      log = new ProcessLog(settings.logto);
    } catch (err) {
      throw new Error(`logto ${settings.logto}: cannot open (${(err as NodeJS.ErrnoException).code})`);
    }
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    if (parent) return parent.fatal(err instanceof ConfigError ? 'config' : 'startup', message);
    process.stderr.write(`tsgi: ${message}\n`);
    process.exitCode = 1;
    return;
  }

  process.title = 'tsgi emperor';
  // Takes NOTIFY_SOCKET out of the environment: systemd's socket is the emperor's, never a vassal's.
  const systemd = new SystemdNotifier(process.env, (l) => log.info(l));
  const say = (line: string): void => log.info(`emperor: ${line}`);
  say(`tsgi ${TSGI_VERSION} emperor starting (pid ${process.pid}): vassals from ${monitors.map((m) => (m.kind === 'dir' ? m.dir : m.pattern)).join(', ')}${es.tyrant ? ', each run as its file\'s owner (emperor-tyrant)' : ''}`);

  let watcher: FolderWatcher | undefined;
  const emperor = new Emperor({
    settings: es,
    env: process.env,
    cwd,
    logFd: log.fd,
    mercy: settings.reloadMercy,
    log: say,
    finish: (status) => {
      watcher?.stop();
      stats?.close();
      say(status === 0 ? 'stopped: every vassal is gone' : `exiting with status ${status}`);
      process.exit(status);
    },
    milestone: (what, status) => {
      // Under systemd (Type=notify): READY=1 once every vassal found at start has started or failed, RELOADING=1
      // and READY=1 around an emperor reload, STOPPING=1; a parent emperor hears the same.
      systemd.milestone(what, status);
      parent?.milestone(what, status);
    },
  });
  watcher = new FolderWatcher(monitors, es.freq, (scan) => emperor.onScan(scan), say);

  if (es.stats) {
    const w = watcher;
    try {
      stats = await startStatsServer(es.stats.value, es.stats.origin, () => `${JSON.stringify(statsOf(emperor, monitors, es.tyrant, w.scans, cwd))}\n`);
      say(`stats server on ${stats.where}`);
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      if (parent) return parent.fatal('startup', message);
      process.stderr.write(`tsgi: ${message}\n`);
      process.exitCode = 1;
      return;
    }
  }

  for (const sig of ['SIGTERM', 'SIGINT', 'SIGQUIT', 'SIGHUP', 'SIGUSR1'] as const) {
    process.on(sig, () => {
      if (sig === 'SIGTERM' || sig === 'SIGINT' || sig === 'SIGQUIT') watcher?.stop();
      emperor.signal(sig);
      if (sig === 'SIGHUP') watcher?.scanNow();
    });
  }
  parent?.onStop(() => {
    watcher?.stop();
    emperor.signal('SIGTERM');
  });
  parent?.onLost(() => {
    say('lost the emperor above this one; stopping gracefully');
    watcher?.stop();
    emperor.signal('SIGTERM');
  });
  watcher.start();
}
