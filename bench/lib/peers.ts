/**
 * The servers compared and how each is started, for either front:
 * - `nginx`: the way its documentation deploys it behind nginx on a Unix socket: tsgi and uWSGI speak the
 *   uwsgi protocol to nginx's uwsgi_pass; Debian's gunicorn speaks only HTTP, so nginx reaches it with
 *   proxy_pass.
 * - `http`: the server's own HTTP port on 127.0.0.1, which wrk hits directly: tsgi's router
 *   (--http-socket, or --http), `uwsgi --http-socket`, gunicorn's `-b HOST:PORT`.
 */
import { resolve } from 'node:path';

export type PeerName = 'tsgi' | 'uwsgi' | 'gunicorn';
export const PEER_NAMES: readonly PeerName[] = ['tsgi', 'uwsgi', 'gunicorn'];

export type AppName = 'hello' | 'flask';
export const APP_NAMES: readonly AppName[] = ['hello', 'flask'];

export interface App {
  name: AppName;
  /** The app file (for --wsgi-file). */
  file: string;
  /** The directory and module name of the same file (for gunicorn's MODULE:CALLABLE). */
  dir: string;
  module: string;
  /** The exact body every peer must answer with: checked before any load. */
  body: string;
}

export function apps(repoRoot: string): Record<AppName, App> {
  const dir = resolve(repoRoot, 'bench/apps');
  return {
    hello: { name: 'hello', file: resolve(dir, 'hello.py'), dir, module: 'hello', body: 'Hello World' },
    flask: { name: 'flask', file: resolve(dir, 'flask_hello.py'), dir, module: 'flask_hello', body: 'Hello World' },
  };
}

export interface PeerLaunch {
  cmd: string;
  args: string[];
  env: NodeJS.ProcessEnv;
  cwd: string;
}

/** What stands between wrk and the servers. */
export type Front = 'nginx' | 'http';
export const FRONTS: readonly Front[] = ['nginx', 'http'];

/** tsgi's option for its HTTP port in the `http` front: both run the same router in tsgi. */
export type TsgiHttpOption = 'http-socket' | 'http';
export const TSGI_HTTP_OPTIONS: readonly TsgiHttpOption[] = ['http-socket', 'http'];

/** Where a peer listens: a Unix socket that nginx forwards to, or its own HTTP port. */
export type Listen = { front: 'nginx'; socket: string } | { front: 'http'; port: number; tsgiOption: TsgiHttpOption };

export interface PeerContext {
  app: App;
  listen: Listen;
  processes: number;
  /** Request logging on (to the server's stderr/stdout, which the benchmark sends to a file) or off. */
  logging: boolean;
  repoRoot: string;
  /** The Python every peer runs: Debian's /usr/bin/python3 (uWSGI embeds the same libpython3.11). */
  python: string;
}

export interface Peer {
  name: PeerName;
  /** How nginx talks to it. */
  upstream: 'uwsgi' | 'http';
  /**
   * Whether its own HTTP port closes the client's connection after every response (no keep-alive): wrk
   * then reconnects, and counts a read error for each response that ends at the close instead of at a
   * Content-Length, which is expected and not a failure.
   */
  closesHttpConnections: boolean;
  /** The signal that stops it at once (the benchmark then SIGKILLs its process group anyway). */
  stopSignal: NodeJS.Signals;
  launch(ctx: PeerContext): PeerLaunch;
}

/** The environment without anything that would change how a peer reads its options or picks its Python. */
export function cleanEnv(python: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const k of Object.keys(env)) {
    if (k.startsWith('UWSGI_') || k.startsWith('TSGI_') || k.startsWith('PYTHON') || k === 'VIRTUAL_ENV' || k.startsWith('PYENV')) delete env[k];
  }
  // tsgi runs `python3` from PATH when no virtualenv is set: put the chosen interpreter's directory first.
  env.PATH = `${resolve(python, '..')}:${env.PATH ?? ''}`;
  return env;
}

export const PEERS: Record<PeerName, Peer> = {
  tsgi: {
    name: 'tsgi',
    upstream: 'uwsgi',
    // The router keeps client connections alive (HTTP/1.1).
    closesHttpConnections: false,
    stopSignal: 'SIGINT',
    launch: (c) => ({
      cmd: process.execPath,
      args: [
        resolve(c.repoRoot, 'bin/tsgi'),
        ...(c.listen.front === 'nginx'
          ? ['--socket', c.listen.socket, '--chmod-socket=666']
          : [`--${c.listen.tsgiOption}`, `127.0.0.1:${c.listen.port}`]),
        '--processes', String(c.processes),
        '--wsgi-file', c.app.file,
        ...(c.logging ? [] : ['--disable-logging']),
      ],
      env: cleanEnv(c.python),
      cwd: c.app.dir,
    }),
  },
  uwsgi: {
    name: 'uwsgi',
    upstream: 'uwsgi',
    // --http-socket answers HTTP/1.1 without keep-alive, as uWSGI runs by default. (--http11-socket would
    // keep connections, but a sync worker then belongs to one client until it goes away: with wrk's 50
    // connections and 2 workers, 48 wait for the socket timeout, and a response without Content-Length,
    // the hello app's, never ends. See bench/README.md.)
    closesHttpConnections: true,
    // SIGTERM is a brutal reload in uWSGI 2.0; SIGINT stops it.
    stopSignal: 'SIGINT',
    launch: (c) => ({
      cmd: '/usr/bin/uwsgi',
      args: [
        '--plugin', 'python3',
        '--master',
        '--processes', String(c.processes),
        ...(c.listen.front === 'nginx'
          ? ['--socket', c.listen.socket, '--chmod-socket=666']
          : ['--http-socket', `127.0.0.1:${c.listen.port}`]),
        '--wsgi-file', c.app.file,
        ...(c.logging ? [] : ['--disable-logging']),
      ],
      env: cleanEnv(c.python),
      cwd: c.app.dir,
    }),
  },
  gunicorn: {
    name: 'gunicorn',
    upstream: 'http',
    // Sync workers answer with Connection: close.
    closesHttpConnections: true,
    stopSignal: 'SIGINT',
    launch: (c) => ({
      cmd: c.python,
      args: [
        '-m', 'gunicorn',
        '-w', String(c.processes),
        '-b', c.listen.front === 'nginx' ? `unix:${c.listen.socket}` : `127.0.0.1:${c.listen.port}`,
        '--chdir', c.app.dir,
        // gunicorn writes no access log unless asked; with logging on it writes one to stdout.
        ...(c.logging ? ['--access-logfile', '-'] : []),
        `${c.app.module}:application`,
      ],
      env: cleanEnv(c.python),
      cwd: c.app.dir,
    }),
  },
};
