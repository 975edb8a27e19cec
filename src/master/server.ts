/**
 * Start-up in uWSGI's order: chdir, open the log, bind the sockets, write the pidfile, drop privileges,
 * then hand over to the master loop. Any problem before the first worker starts is one line and exit 1.
 */
import { writeFileSync, unlinkSync } from 'node:fs';
import { readCommandLine } from '../cli/tsgi.js';
import type { Entry } from '../config/origin.js';
import type { Settings } from '../config/resolve.js';
import { TSGI_VERSION } from '../version.js';
import { Master } from './arbiter.js';
import { ProcessLog } from './log.js';
import { Scoreboard } from './scoreboard.js';
import { bindSockets, closeSockets, type BoundSocket } from './sockets.js';
import { resolveGroup, resolveUser } from './users.js';
import { appName, resolveInterpreter, spawnPythonWorker } from '../workers/python/launcher.js';

class StartupError extends Error {}

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

export async function startServer(settings: Settings, _entries: readonly Entry[], argv: readonly string[], startCwd: string): Promise<void> {
  let log: ProcessLog | undefined;
  let sockets: BoundSocket[] = [];
  try {
    if (settings.chdir) {
      try {
        process.chdir(settings.chdir);
      } catch (err) {
        throw new StartupError(`chdir ${settings.chdir}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such directory' : (err as Error).message}`);
      }
    }
    if (settings.sockets.length === 0) throw new StartupError('no socket to serve on: set socket = ADDR (e.g. socket = /run/tsgi/app.sock or :3031)');
    if (!settings.python.module && !settings.python.wsgiFile) throw new StartupError('no app to serve: set module = MODULE[:CALLABLE] or wsgi-file = FILE');
    const interpreter = resolveInterpreter(settings, process.env);
    try {
      log = new ProcessLog(settings.logto);
    } catch (err) {
      throw new StartupError(`logto ${settings.logto}: cannot open (${(err as NodeJS.ErrnoException).code})`);
    }
    sockets = await bindSockets(settings.sockets, { chmod: settings.chmodSocket, chown: settings.chownSocket });
    writePidfile(settings.pidfile);
    dropPrivileges(settings);
    writePidfile(settings.pidfile2);

    const processLog = log;
    const scoreboard = new Scoreboard(Math.max(256, settings.processes * 4));
    const boundSockets = sockets;
    process.title = 'tsgi master';
    processLog.info(`tsgi ${TSGI_VERSION} starting: master pid ${process.pid}, app ${appName(settings)}, python ${interpreter}`);
    for (const b of sockets) processLog.info(`uwsgi socket ${b.name} bound (fd ${b.fd})`);

    let finished = false;
    const master = new Master(
      settings,
      {
        spawn: (s, id, slot) =>
          spawnPythonWorker({
            interpreter: resolveInterpreter(s, process.env),
            settings: s,
            id,
            slot,
            logFd: processLog.fd,
            scoreboardFd: scoreboard.fd,
            scoreboardSize: scoreboard.size,
            socketFds: boundSockets.map((b) => b.fd),
            env: process.env,
          }),
        reloadSettings: () => {
          let errors = '';
          const outcome = readCommandLine(argv, { env: process.env, cwd: startCwd, stdout: () => {}, stderr: (t) => (errors += t) });
          if ('exit' in outcome) return errors.trim().replace(/^tsgi: /, '') || `configuration exited with status ${outcome.exit}`;
          const next = outcome.start;
          if (next.sockets.map((x) => x.text).join(' ') !== settings.sockets.map((x) => x.text).join(' ')) {
            processLog.info('note: socket changes take effect at the next restart; the reload keeps the bound sockets');
          }
          if (next.processes * 2 > scoreboard.slots) return `processes = ${next.processes} needs a restart (at most ${scoreboard.slots / 2} on reload)`;
          return next;
        },
        finish: (status) => {
          if (finished) return;
          finished = true;
          closeSockets(boundSockets, settings.vacuum);
          if (settings.vacuum) {
            for (const p of [settings.pidfile, settings.pidfile2]) {
              if (!p) continue;
              try {
                unlinkSync(p);
              } catch {
                /* already gone, or not ours to remove any more */
              }
            }
          }
          processLog.info(status === 0 ? 'stopped' : `exiting with status ${status}`);
          process.exit(status);
        },
      },
      processLog,
      scoreboard,
    );
    for (const sig of ['SIGHUP', 'SIGTERM', 'SIGINT', 'SIGQUIT'] as const) process.on(sig, () => master.signal(sig));
    master.start();
  } catch (err) {
    closeSockets(sockets, true);
    const message = err instanceof Error ? err.message : String(err);
    if (err instanceof StartupError || (err as Error).name === 'SocketError' || (err as Error).name === 'InterpreterError' || err instanceof Error) {
      process.stderr.write(`tsgi: ${message}\n`);
      process.exit(1);
    }
    throw err;
  }
}
