/**
 * From entries to typed settings: every entry is checked against the option table (unknown → error with the
 * nearest name, not implemented → error saying so, bad value → error saying what was expected), then the
 * settings the server runs with are built in one place.
 */
import { readMetrics, type MetricsSettings } from './metrics.js';
import { EXEC_PHASES, type ExecHooks } from '../master/exec-hooks.js';
import { ConfigError } from './errors.js';
import { CONFIG_SOURCE_KEYS } from './ini.js';
import { isLogicKey } from './logic.js';
import type { Entry, Origin } from './origin.js';
import { findOption, isKnownUnimplemented, OPTIONS, unknownOptionError, type OptionDef } from './options.js';
import { readStaticSettings, type StaticSettings } from '../static/config.js';
import { checkCacheRoutes, readCacheSettings, type CacheSettings } from '../cache/config.js';
import { ERROR_ROUTE_OPTION_NAMES, FINAL_ROUTE_OPTION_NAMES, readHeaderVars, readRoutes, RESPONSE_ROUTE_OPTION_NAMES, ROUTE_OPTION_NAMES, type RouteRule } from './routing.js';
import { resolve as resolvePath } from 'node:path';
import { accessSync, constants as fsConstants, mkdirSync, realpathSync } from 'node:fs';
import { readLogging, type LoggingSpec } from './logging.js';
import { parseCron, parseCron2, type CronJob } from '../master/cron.js';
import type { DaemonExtra, DaemonSpec } from '../master/daemons.js';
import { resolveGroup, resolveUser } from '../master/users.js';
import { constants as osConstants } from 'node:os';
import { parseHttpsValue, type HttpToTarget, type TlsSettings, type TlsSpec } from './https.js';

export type SocketAddress =
  | { kind: 'unix'; path: string }
  | { kind: 'tcp'; host: string; port: number };

export interface SocketSpec {
  address: SocketAddress;
  /** As written, for messages and logs. */
  text: string;
  protocol: 'uwsgi' | 'http';
  /** The option that declared it (socket, http-socket, ...), for messages. */
  option: string;
  /** Idle limit for HTTP clients on this socket (seconds). */
  timeout: number;
  origin: Origin;
  /** https, https-socket: the router speaks TLS on it (docs/https.md). */
  tls?: TlsSpec;
  /** http-to-https: every request is redirected to https. */
  redirectHttps?: boolean;
}

/** The app (module, wsgi-file, callable: read for Python and Node apps alike) and Python's own settings. */
export interface PythonSettings {
  module: string | undefined;
  wsgiFile: string | undefined;
  callable: string;
  home: string | undefined;
  pythonpath: string[];
  /** import: modules imported before the app, in the process that loads it. */
  imports: string[];
  fileWrapper: boolean;
  catchExceptions: boolean;
  /** py-autoreload: seconds between checks of the loaded modules' files (0: off). */
  autoreload: number;
  /** mount = MOUNTPOINT=APP, in order (docs/mount.md). */
  mounts: MountSpec[];
  manageScriptName: boolean;
  noDefaultApp: boolean;
  /** Where manage-script-name and no-default-app were set, for messages. */
  origins: { manageScriptName?: Origin; noDefaultApp?: Origin };
  /** vhost / vhost-host (docs/vhost.md): apps keyed by HOST|SCRIPT_NAME; the option's name and origin when set. */
  vhost: { option: string; origin: Origin | undefined } | null;
  /** max-apps: most apps per worker (configured and dynamic). */
  maxApps: number;
}

/** One `mount`: a Python app loaded beside the main one, chosen per request by SCRIPT_NAME. */
export interface MountSpec {
  /** As written (/blog, /blog/ or /). */
  mountpoint: string;
  /** A file (.py, .wsgi) run like wsgi-file, or a module imported like module. */
  wsgiFile: string | undefined;
  module: string | undefined;
  callable: string;
  /** The APP part as written, for log lines. */
  app: string;
  origin: Origin;
}

/** Extensions a Node app's file has: such a file cannot be mounted (mount is for Python apps). */
const NODE_APP_FILE = /\.(ts|mts|cts|js|mjs|cjs)$/i;

/**
 * `mount` values as uWSGI reads them: MOUNTPOINT=APP, APP a file when it ends in .py or .wsgi, else
 * module[:callable] (uWSGI 2.0 mounts nothing for a bare module name; tsgi imports it with `callable`).
 */
export function readMounts(values: OptionValues, callable: string): MountSpec[] {
  const mounts: MountSpec[] = [];
  const seen = new Map<string, string>();
  for (const { value, origin } of values.all('mount')) {
    const bad = (why: string): ConfigError => new ConfigError('BAD_VALUE', `'${value}': ${why}`, origin, 'mount');
    const eq = value.indexOf('=');
    if (eq === -1) throw bad('expected MOUNTPOINT=APP (e.g. /blog=blog.py or /blog=blog:application)');
    const mountpoint = value.slice(0, eq).trim();
    const app = value.slice(eq + 1).trim();
    if (!mountpoint.startsWith('/')) throw bad(`the mountpoint '${mountpoint}' must start with / (tsgi mounts by path only)`);
    if (/[\s?#]/.test(mountpoint)) throw bad(`the mountpoint '${mountpoint}' must be a plain path`);
    if (!app) throw bad('no app after =');
    const key = mountpoint.length > 1 ? mountpoint.replace(/\/+$/, '') : mountpoint;
    const twice = seen.get(key);
    if (twice !== undefined) throw bad(`the mountpoint ${mountpoint} is already given to ${twice}`);
    seen.set(key, app);
    if (NODE_APP_FILE.test(app)) throw bad(`${app} is a Node app: mount loads Python apps only (a Node app routes paths itself)`);
    if (/\.ini$/i.test(app)) throw new ConfigError('NOT_IMPLEMENTED', `'${value}': PasteDeploy apps (.ini) are not implemented in tsgi`, origin, 'mount');
    if (/\.(py|wsgi)$/i.test(app)) {
      mounts.push({ mountpoint, wsgiFile: app, module: undefined, callable, app, origin });
      continue;
    }
    const colon = app.indexOf(':');
    const module = colon === -1 ? app : app.slice(0, colon);
    const name = colon === -1 ? callable : app.slice(colon + 1);
    if (!/^[A-Za-z_][\w.]*$/.test(module) || !/^[A-Za-z_]\w*$/.test(name)) {
      throw bad('APP must be a file ending in .py or .wsgi, or module[:callable]');
    }
    mounts.push({ mountpoint, wsgiFile: undefined, module, callable: name, app, origin });
  }
  return mounts;
}

/** Emperor mode (src/emperor): set when `emperor` is given. */
export interface EmperorSettings {
  /** Each `emperor` value: a directory or a glob of vassal files. */
  monitors: Array<{ value: string; origin: Origin }>;
  tyrant: boolean;
  /** Ini files every vassal reads after its own (vassals-inherit). */
  inherit: string[];
  /** KEY=VALUE options for every vassal (vassal-set), magic variables still unexpanded. */
  set: Array<{ value: string; origin: Origin }>;
  stats: { value: string; origin: Origin } | undefined;
  /** Seconds between rescans of the monitors. */
  freq: number;
}

/** procname, procname-master, procname-prefix(-spaced), procname-append. */
export interface ProcnameSettings {
  name: string | undefined;
  master: string | undefined;
  prefix: string;
  append: string;
}

/**
 * A process's title as uWSGI composes it: prefix + name + append, where the name is procname (procname-master
 * for the master) or tsgi's own (tsgi master, tsgi worker N, tsgi router, tsgi loader).
 */
export function processTitle(p: ProcnameSettings, role: 'master' | 'worker' | 'router' | 'loader' | 'spooler' | 'mule', id: number | string = 0): string {
  const own = role === 'worker' || role === 'mule' ? `tsgi ${role} ${id}` : `tsgi ${role}`;
  const name = (role === 'master' ? p.master ?? p.name : p.name) ?? own;
  return `${p.prefix}${name}${p.append}`;
}

/** uWSGI's cheaper subsystem: between `min` and `processes` workers run, as the algorithm decides. */
export interface CheaperSettings {
  /** The fewest workers that run (`cheaper`, at least 1 and below processes). */
  min: number;
  /** Workers started at boot and on a graceful reload, within [min, processes]. */
  initial: number;
  /** Set when cheaper-initial was out of range and was brought into it: the master logs it. */
  initialNote: string | undefined;
  step: number;
  /** spare: seconds (checks) of every worker busy before more start, and between two stops. */
  overload: number;
  algo: CheaperAlgo;
}

/** The cheaper algorithms tsgi has. */
export const CHEAPER_ALGOS = ['spare', 'manual'] as const;
export type CheaperAlgo = (typeof CHEAPER_ALGOS)[number];
/** uWSGI's other algorithms (plugins), refused by name. */
const UWSGI_CHEAPER_ALGOS = new Set(['backlog', 'busyness', 'spare2', 'backlog2']);

function readCheaper(values: OptionValues): CheaperSettings | undefined {
  const min = values.int('cheaper');
  const algo = values.get('cheaper-algo') ?? 'spare';
  const algoOrigin = values.origin('cheaper-algo');
  if (!(CHEAPER_ALGOS as readonly string[]).includes(algo)) {
    const has = `tsgi has ${CHEAPER_ALGOS.join(' and ')}`;
    throw UWSGI_CHEAPER_ALGOS.has(algo)
      ? new ConfigError('NOT_IMPLEMENTED', `the '${algo}' cheaper algorithm is not implemented in tsgi (${has})`, algoOrigin, 'cheaper-algo')
      : new ConfigError('BAD_VALUE', `unknown cheaper algorithm '${algo}' (${has})`, algoOrigin, 'cheaper-algo');
  }
  if (min === 0) return undefined; // as uWSGI: cheaper = 0 is off, and the other cheaper options have no effect
  const processes = values.int('processes');
  if (min >= processes) {
    throw new ConfigError('BAD_VALUE', `${min} must be lower than processes (${processes}): cheaper is the fewest workers that run, processes the most`,
      values.origin('cheaper'), 'cheaper');
  }
  const given = values.get('cheaper-initial');
  const asked = given === undefined ? 0 : Number(given);
  let initial = asked === 0 ? min : asked;
  let initialNote: string | undefined;
  if (initial < min || initial > processes) {
    initial = initial < min ? min : processes;
    initialNote = `cheaper-initial ${asked} is ${asked < min ? `below cheaper (${min})` : `above processes (${processes})`}; starting ${initial} worker(s)`;
  }
  return { min, initial, initialNote, step: values.int('cheaper-step'), overload: values.int('cheaper-overload'), algo: algo as CheaperAlgo };
}

/** The spooler options (docs/spooler.md). */
export interface SpoolerSettings {
  /** Directories with spooler processes here (real paths, in the order given). */
  dirs: string[];
  /** spooler-external: directories uwsgi.spool() may write to, run by another instance. */
  external: string[];
  processes: number;
  frequency: number;
  imports: string[];
  chdir: string | undefined;
  maxTasks: number;
  harakiri: number;
  ordered: boolean;
  quiet: boolean;
  /** The master's private directory for the spoolers' pids (set by the master, src/master/spoolers.ts). */
  runDir?: string;
}

/** uWSGI creates a missing spooler directory (mode 0750; not its parents) and keeps its real path; one it cannot use stops the start. */
function spoolerDir(value: string, origin: Origin, option: string): string {
  const dir = resolvePath(value.trim());
  if (!value.trim()) throw new ConfigError('BAD_VALUE', 'a directory is required', origin, option);
  try {
    // One level, as uWSGI's mkdir() (and node's recursive mkdir spins on some paths under /proc).
    try {
      mkdirSync(dir, { mode: 0o750 });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    accessSync(dir, fsConstants.R_OK | fsConstants.W_OK | fsConstants.X_OK);
    return realpathSync(dir);
  } catch (err) {
    throw new ConfigError('BAD_VALUE', `'${value}': cannot use it as a spooler directory (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, origin, option);
  }
}

function readSpooler(values: OptionValues): SpoolerSettings | undefined {
  const dirs = values.all('spooler').map(({ value, origin }) => spoolerDir(value, origin, 'spooler'));
  const external = values.all('spooler-external').map(({ value, origin }) => spoolerDir(value, origin, 'spooler-external'));
  if (!dirs.length && !external.length) {
    // A spooler option without a spooler would silently do nothing.
    for (const name of ['spooler-processes', 'spooler-frequency', 'spooler-import', 'spooler-chdir', 'spooler-max-tasks', 'spooler-harakiri', 'spooler-ordered', 'spooler-quiet']) {
      const origin = values.origin(name);
      if (origin) throw new ConfigError('BAD_VALUE', 'has no effect without a spooler directory (spooler = DIR)', origin, name);
    }
    return undefined;
  }
  const imports = values.all('spooler-import').map(({ value, origin }) => {
    if (!/^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$/.test(value.trim())) throw new ConfigError('BAD_VALUE', `'${value}' is not a Python module name`, origin, 'spooler-import');
    return value.trim();
  });
  const chdir = values.get('spooler-chdir');
  return {
    dirs, external, imports,
    processes: values.int('spooler-processes'),
    frequency: values.int('spooler-frequency'),
    chdir: chdir === undefined ? undefined : resolvePath(chdir),
    maxTasks: values.int('spooler-max-tasks'),
    harakiri: values.int('spooler-harakiri'),
    ordered: values.bool('spooler-ordered'),
    quiet: values.bool('spooler-quiet'),
  };
}

/** The mules (docs/mules.md, src/master/mules.ts). */
export interface MuleSettings {
  /** One entry per mule, in id order (mule 1 first): what it runs, or undefined for a generic mule (messages). */
  mules: Array<{ script: string | undefined }>;
  /** mule-harakiri: seconds a generic mule may spend on one message (0: no limit). */
  harakiri: number;
  /** farm = NAME:ids */
  farms: Array<{ name: string; mules: number[] }>;
  /** The master's private directory for the mules' message sockets (set by the master). */
  runDir?: string;
}

/** mule (may repeat; no value: a generic mule), mules = N, mule-harakiri, farm = NAME:ID[,ID...]. */
function readMules(values: OptionValues): MuleSettings | undefined {
  const mules: MuleSettings['mules'] = [];
  // mule and mules add mules in the order they are written, as uWSGI numbers them.
  const entries = [...values.all('mule').map((e) => ({ ...e, key: 'mule' })), ...values.all('mules').map((e) => ({ ...e, key: 'mules' }))]
    .sort((a, b) => a.seq - b.seq);
  for (const { key, value, origin } of entries) {
    const v = value.trim();
    if (key === 'mules') {
      if (!/^\d+$/.test(v) || Number(v) < 1 || Number(v) > 256) throw new ConfigError('BAD_VALUE', `'${value}' is not a number of mules (1..256)`, origin, key);
      for (let i = 0; i < Number(v); i++) mules.push({ script: undefined });
    } else if (!v || v === '1' || v === 'true') {
      mules.push({ script: undefined });
    } else if (v.endsWith('.py')) {
      mules.push({ script: resolvePath(v) });
    } else if (/^[A-Za-z_][\w.]*:[A-Za-z_]\w*$/.test(v)) {
      mules.push({ script: v });
    } else {
      throw new ConfigError('BAD_VALUE', `'${value}': a mule runs a Python file (FILE.py), a function (MODULE:FUNC) or nothing (a generic mule); tsgi runs no other kind`, origin, key);
    }
  }
  if (!mules.length) {
    for (const name of ['mule-harakiri', 'farm']) {
      const origin = values.origin(name);
      if (origin) throw new ConfigError('BAD_VALUE', 'has no effect without a mule (mule, mules = N)', origin, name);
    }
    return undefined;
  }
  const farms = values.all('farm').map(({ value, origin }) => {
    const m = /^([^:\s]+):(\d+(?:,\d+)*)$/.exec(value.trim());
    if (!m) throw new ConfigError('BAD_VALUE', `'${value}' is not NAME:MULE_ID[,MULE_ID...]`, origin, 'farm');
    const ids = m[2]!.split(',').map(Number);
    for (const id of ids) if (id < 1 || id > mules.length) throw new ConfigError('BAD_VALUE', `'${value}': mule ${id} does not exist (there are ${mules.length})`, origin, 'farm');
    return { name: m[1]!, mules: ids };
  });
  return { mules, farms, harakiri: values.int('mule-harakiri') };
}

export interface Settings {
  /** The master's signal socket (docs/signals.md, src/master/signals.ts), set by the master for Python apps. */
  signalSocket?: string;
  /** mule, mules, farm (docs/mules.md); undefined when no mule is configured. */
  mules: MuleSettings | undefined;
  sockets: SocketSpec[];
  /** http-to: the router sends requests to these uwsgi servers, round robin, instead of this instance's workers. */
  httpTo: HttpToTarget[];
  /** http-to and no app: no workers, the router alone. */
  routerOnly: boolean;
  /** Settings of every https listener. */
  tls: TlsSettings;
  limitPost: number;
  chmodSocket: number | undefined;
  chownSocket: string | undefined;
  listen: number;
  vacuum: boolean;
  bufferSize: number;
  socketTimeout: number;
  processes: number;
  /** cheaper (adaptive process spawning): undefined when off, and then all `processes` workers run. */
  cheaper: CheaperSettings | undefined;
  threads: number;
  harakiri: number;
  harakiriVerbose: boolean;
  maxRequests: number;
  maxRequestsDelta: number;
  maxWorkerLifetime: number;
  maxWorkerLifetimeDelta: number;
  reloadOnRss: number;
  evilReloadOnRss: number;
  touchReload: string[];
  touchChainReload: string[];
  touchLogreopen: string[];
  masterFifo: string[];
  logReopen: boolean;
  logMaxsize: number;
  stats: string | undefined;
  statsHttp: boolean;
  statsMinified: boolean;
  reloadMercy: number;
  workerReloadMercy: number;
  pidfile: string | undefined;
  pidfile2: string | undefined;
  uid: string | undefined;
  gid: string | undefined;
  chdir: string | undefined;
  env: Array<[string, string]>;
  needApp: boolean;
  /** Load the app in each worker instead of once in an app loader that forks them. */
  lazyApps: boolean;
  python: PythonSettings;
  /** The worker kind asked for with `plugins` (undefined: told by the app's file, see workers/app-kind.ts). */
  plugin: 'python' | 'node' | undefined;
  /** How a Node app is called (undefined: told by what the module exports). */
  appContract: 'wsgi' | 'fetch' | 'listener' | undefined;
  logto: string | undefined;
  logFormat: string | undefined;
  logXForwardedFor: boolean;
  disableLogging: boolean;
  /** log-4xx, log-5xx, log-slow, log-big, log-zero; undefined when none is set. */
  logWhen: LogWhen | undefined;
  /** add-header and del-header/rem-header; undefined when neither is given. */
  headers: HeaderEdit | undefined;
  /** so-keepalive: SO_KEEPALIVE on TCP listeners (inherited by accepted connections). */
  soKeepalive: boolean;
  /** log-date: 'true' (ctime) or a strftime format; undefined when off. */
  logDate: string | undefined;
  /** %(ftime)'s strftime format (logformat-strftime with a log-date format); undefined: %(ftime) is %(ltime). */
  ftimeFormat: string | undefined;
  /** log-micros: the default request line says `in N micros`. */
  logMicros: boolean;
  /** logger, req-logger, log-encoder, log-route, log-master, alarm...: the log master's work; undefined when none is set. */
  logging: LoggingSpec | undefined;
  strict: boolean;
  showConfig: boolean;
  emperor: EmperorSettings | undefined;
  /** attach-daemon, smart-attach-daemon(2), in order (src/master/daemons.ts). */
  daemons: DaemonSpec[];
  /** cron, unique-cron and cron2 jobs (src/master/cron.ts). */
  cron: CronJob[];
  /** cron-harakiri: seconds (0: none). */
  cronHarakiri: number;
  /** spooler and friends (docs/spooler.md); undefined when no spooler directory is configured. */
  spooler: SpoolerSettings | undefined;
  /** exec-* hooks, per point of the master's life (src/master/exec-hooks.ts). */
  exec: ExecHooks;
  /** The master's umask (umask option), undefined: left as inherited. */
  umask: number | undefined;
  /** Process titles (procname and friends); see processTitle. */
  procname: ProcnameSettings;
  /** static-map and friends (src/static); undefined when no file is mapped. */
  static: StaticSettings | undefined;
  /** route, route-run, route-if, ... in the order given (docs/routing.md); undefined when none is set. */
  routes: RouteRule[] | undefined;
  /** final-route*: run by the Python worker after the response, before the request's log line. */
  finalRoutes: RouteRule[] | undefined;
  /** error-route*, response-route* (run when the status is set / the headers are written), collect-header, pull-header. */
  errorRoutes: RouteRule[] | undefined;
  responseRoutes: RouteRule[] | undefined;
  collectHeaders: Array<[string, string]> | undefined;
  pullHeaders: Array<[string, string]> | undefined;
  /** cache2, cache and friends (src/cache, docs/cache.md); undefined when no cache is configured. */
  caches: CacheSettings | undefined;
  /** enable-metrics, metric, metrics-dir (src/config/metrics.ts, docs/metrics.md); undefined when off. */
  metrics: MetricsSettings | undefined;
  /**
   * Python's uwsgi.opt (docs/python-uwsgi-module.md): every entry as given, in order, a repeated key keeping its
   * first place and its last value (as uWSGI 2.0 shows them); `true` for a flag given without a value.
   */
  exportedOptions: Array<[string, string | true]>;
  /** When this configuration was read (ms since the epoch): the start, or the reload that read it again. */
  readAt: number;
  /** Read again for a reload (Python's uwsgi.is_a_reload); set by the master. */
  reloaded: boolean;
}

/**
 * Requests logged even with disable-logging (uWSGI's conditional logging): any one condition is enough. With
 * request logging on, every request is logged anyway.
 */
export interface LogWhen {
  status4xx: boolean;
  status5xx: boolean;
  /** Slower than this many milliseconds (0: off). */
  slowMs: number;
  /** A response body of this many bytes or more (0: off). */
  bigBytes: number;
  /** A response without a body. */
  zero: boolean;
}

function readLogWhen(values: OptionValues): LogWhen | undefined {
  const w: LogWhen = {
    status4xx: values.bool('log-4xx'),
    status5xx: values.bool('log-5xx'),
    slowMs: values.int('log-slow'),
    bigBytes: values.int('log-big'),
    zero: values.bool('log-zero'),
  };
  return w.status4xx || w.status5xx || w.slowMs > 0 || w.bigBytes > 0 || w.zero ? w : undefined;
}

/** Response headers every response gets (add-header) or loses (del-header, names in lower case). */
export interface HeaderEdit {
  add: Array<[string, string]>;
  del: string[];
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

function readHeaderEdit(values: OptionValues): HeaderEdit | undefined {
  const add: Array<[string, string]> = [];
  for (const { value, origin } of values.all('add-header')) {
    const colon = value.indexOf(':');
    const name = colon === -1 ? '' : value.slice(0, colon).trim();
    const v = colon === -1 ? '' : value.slice(colon + 1).trim();
    if (colon === -1 || !TOKEN.test(name)) throw new ConfigError('BAD_VALUE', `'${value}': expected 'Name: value'`, origin, 'add-header');
    if (/[\r\n\0]/.test(v)) throw new ConfigError('BAD_VALUE', `'${value}': a header value cannot hold a line break`, origin, 'add-header');
    add.push([name, v]);
  }
  const del: string[] = [];
  for (const { value, origin } of values.all('del-header')) {
    const name = value.trim();
    if (!TOKEN.test(name)) throw new ConfigError('BAD_VALUE', `'${value}': expected a header name`, origin, 'del-header');
    del.push(name.toLowerCase());
  }
  return add.length || del.length ? { add, del } : undefined;
}

/** Keys handled while the configuration is read, never options of the running server. */
const READ_TIME_KEYS = new Set(['print', 'set', 'S', 'set-placeholder', 'set-ph', 'get', 'exit', ...CONFIG_SOURCE_KEYS]);

/** Parses `/path`, `host:port`, `:port`, `[::]:port`, `0.0.0.0:port` (uWSGI's socket syntax). */
export function parseSocketAddress(text: string, origin: Origin, option: string): SocketAddress {
  const bad = (why: string): ConfigError => new ConfigError('BAD_VALUE', `'${text}': ${why}`, origin, option);
  if (text === '') throw bad('an address is required (/path/to.sock, host:port or :port)');
  if (text.startsWith('@')) throw new ConfigError('NOT_IMPLEMENTED', `'${text}': abstract Unix sockets are not implemented in tsgi yet`, origin, option);
  const colon = text.lastIndexOf(':');
  if (colon === -1 || text.includes('/')) {
    if (colon !== -1 && !text.includes('/')) throw bad('expected host:port or a socket path');
    return { kind: 'unix', path: text };
  }
  const portText = text.slice(colon + 1);
  let host = text.slice(0, colon);
  if (!/^\d+$/.test(portText)) throw bad(`port '${portText}' is not a number`);
  const port = Number(portText);
  if (port > 65535) throw bad(`port ${port} is out of range (0-65535)`);
  if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
  if (host === '' || host === '*') host = '0.0.0.0';
  return { kind: 'tcp', host, port };
}

/** Names used as `%(name)` anywhere in the configuration as written (before expansion). */
export function placeholderNames(entries: readonly Entry[]): Set<string> {
  const names = new Set<string>();
  const re = /%\(([^)]+)\)/g;
  for (const e of entries) for (const m of e.value.matchAll(re)) names.add(m[1]!);
  return names;
}

function checkValue(def: OptionDef, value: string, origin: Origin): string {
  const bad = (expected: string): ConfigError => new ConfigError('BAD_VALUE', `bad value '${value}': expected ${expected}`, origin, def.name);
  switch (def.kind) {
    case 'bool':
      if (value === '' || /^(true|yes|on|1)$/i.test(value)) return 'true';
      if (/^(false|no|off|0)$/i.test(value)) return 'false';
      throw bad('true or false');
    case 'int': {
      if (!/^-?\d+$/.test(value)) throw bad('a whole number');
      const n = Number(value);
      if (def.min !== undefined && n < def.min) throw bad(`at least ${def.min}`);
      if (def.max !== undefined && n > def.max) throw bad(`at most ${def.max}`);
      return String(n);
    }
    case 'mode':
      if (value === '' && def.implicit !== undefined) return def.implicit;
      if (!/^[0-7]{3,4}$/.test(value)) throw bad('an octal mode such as 660');
      return value;
    case 'string':
      if (def.choices && !def.choices.includes(value)) {
        throw bad(`one of ${def.choices.join(', ')}`);
      }
      return value;
  }
}

/** Checked option values: for each canonical name, every value in order with where it came from. */
export class OptionValues {
  private readonly values = new Map<string, Array<{ value: string; origin: Origin; seq: number }>>();
  /** Reading order across options (alarm-log and not-alarm-log are one list, in the order written). */
  private seq = 0;

  add(def: OptionDef, value: string, origin: Origin): void {
    let list = this.values.get(def.name);
    if (!list) this.values.set(def.name, (list = []));
    if (def.repeat) list.push({ value, origin, seq: this.seq++ });
    else list.splice(0, list.length, { value, origin, seq: this.seq++ });
  }

  has(name: string): boolean {
    return this.values.has(name);
  }

  /** The effective value of a single-valued option (the last one given), else its default. */
  get(name: string): string | undefined {
    const list = this.values.get(name);
    if (list && list.length) return list[list.length - 1]!.value;
    return OPTIONS.find((o) => o.name === name)?.default;
  }

  origin(name: string): Origin | undefined {
    const list = this.values.get(name);
    return list && list.length ? list[list.length - 1]!.origin : undefined;
  }

  all(name: string): Array<{ value: string; origin: Origin; seq: number }> {
    return this.values.get(name) ?? [];
  }

  bool(name: string): boolean {
    return this.get(name) === 'true';
  }

  int(name: string): number {
    return Number(this.get(name));
  }
}

/**
 * Checks every entry against the option table. `placeholders` are the names the configuration uses as
 * `%(name)` (see placeholderNames, computed before expansion): such keys are variables, not typos.
 */
export function checkEntries(entries: readonly Entry[], placeholders: ReadonlySet<string>): OptionValues {
  const values = new OptionValues();
  for (const e of entries) {
    if (READ_TIME_KEYS.has(e.key) || isLogicKey(e.key)) continue;
    const def = findOption(e.key);
    if (!def) {
      if (isKnownUnimplemented(e.key)) {
        throw new ConfigError('NOT_IMPLEMENTED', 'is a uWSGI option that tsgi does not implement yet', e.origin, e.key);
      }
      // uWSGI lets any key serve as a %(placeholder); a key used that way is not a typo.
      if (placeholders.has(e.key) && e.origin.kind === 'file') continue;
      throw unknownOptionError(e.key, e.origin);
    }
    values.add(def, checkValue(def, e.value, e.origin), e.origin);
  }
  return values;
}

/**
 * uwsgi.opt's pairs from the configuration entries (after placeholders and logic): names as written, the
 * configuration logic's own keys left out, a repeated key keeping its first place and its last value, as uWSGI
 * 2.0.21 shows them.
 */
export function exportedOptions(entries: readonly Entry[]): Array<[string, string | true]> {
  const opt = new Map<string, string | true>();
  for (const e of entries) {
    if (isLogicKey(e.key)) continue;
    opt.set(e.written ?? e.key, e.flag ? true : e.value);
  }
  return [...opt];
}

/** The request variables `log-format` knows (uWSGI's names), besides %(var.NAME). */
export const LOG_FORMAT_VARIABLES = new Set(['uri', 'method', 'user', 'host', 'proto', 'uagent', 'referer', 'addr', 'status', 'micros', 'msecs',
  'secs', 'time', 'ctime', 'ltime', 'epoch', 'size', 'rsize', 'hsize', 'headers', 'cl', 'pid', 'wid', 'core', 'switches', 'vars', 'pktsize',
  'modifier1', 'modifier2', 'rss', 'vsz', 'rssM', 'vszM', 'ftime']);

/**
 * The names in a log-format that are not request variables: as in uWSGI, each is a logvar the app sets per
 * request (Python's uwsgi.set_logvar), printed as '-' when unset. The CLI says which, so a typo is seen.
 */
export function logFormatLogvars(format: string | undefined): string[] {
  if (format === undefined) return [];
  const names: string[] = [];
  for (const m of format.matchAll(/%\(([^)]*)\)/g)) {
    const name = m[1]!;
    if (!LOG_FORMAT_VARIABLES.has(name) && !name.startsWith('var.') && !names.includes(name)) names.push(name);
  }
  return names;
}

const PYTHON_PLUGIN = /^python(3(\d+)?)?$/;
const NODE_PLUGIN = /^(node|nodejs)$/;
/** uWSGI's logger plugins tsgi has built in (logger = file:..., socket:..., syslog): naming them loads nothing. */
const LOGGER_PLUGIN = /^(logfile|logsocket|syslog)(_plugin)?$/;

/** The worker kind the plugins name: python, node, or undefined when none (or both) are named. */
function checkPlugins(values: OptionValues): 'python' | 'node' | undefined {
  const kinds = new Set<'python' | 'node'>();
  for (const { value, origin } of values.all('plugins')) {
    for (const name of value.split(/[\s,]+/).filter(Boolean)) {
      if (PYTHON_PLUGIN.test(name)) kinds.add('python');
      else if (NODE_PLUGIN.test(name)) kinds.add('node');
      // uWSGI's router_cache: tsgi's routing runs the cache actions itself (docs/cache.md)
      else if (name === 'router_cache') continue;
      else if (LOGGER_PLUGIN.test(name)) continue;
      else throw new ConfigError('NOT_IMPLEMENTED', `plugin '${name}' is not available in tsgi (python and node are built in)`, origin, 'plugins');
    }
  }
  return kinds.size === 1 ? [...kinds][0] : undefined;
}

function readDaemons(values: OptionValues): DaemonSpec[] {
  const specs: Array<{ spec: DaemonSpec; origin: Origin }> = [];
  for (const kind of ['attach-daemon', 'smart-attach-daemon', 'smart-attach-daemon2'] as const) {
    for (const { value, origin } of values.all(kind)) {
      const text = value.trim();
      if (kind === 'attach-daemon') {
        if (!text) throw new ConfigError('BAD_VALUE', 'a command is required', origin, kind);
        specs.push({ spec: { kind, command: text, pidfile: undefined }, origin });
        continue;
      }
      const m = /^(\S+)\s+(\S.*)$/s.exec(text);
      if (!m) throw new ConfigError('BAD_VALUE', `bad value '${value}': expected PIDFILE COMMAND`, origin, kind);
      specs.push({ spec: { kind, command: m[2]!.trim(), pidfile: resolvePath(m[1]!) }, origin });
    }
  }
  for (const { value, origin } of values.all('attach-control-daemon')) {
    if (!value.trim()) throw new ConfigError('BAD_VALUE', 'a command is required', origin, 'attach-control-daemon');
    specs.push({ spec: { kind: 'attach-daemon', command: value.trim(), pidfile: undefined, extra: { ...NO_EXTRA, control: true, text: value } }, origin });
  }
  for (const { value, origin } of values.all('attach-daemon2')) specs.push({ spec: parseDaemon2(value, origin), origin });
  return specs.map((s) => s.spec);
}

const NO_EXTRA: DaemonExtra = {
  control: false, stopSignal: 'SIGTERM', reloadSignal: undefined, touch: [], stdin: false, uid: undefined, gid: undefined,
  chdir: undefined, maxThrottle: undefined, notifyPid: false, text: '',
};

/** A signal given by number (as uWSGI reads it) or by name (SIGQUIT, QUIT). */
function parseSignal(raw: string): NodeJS.Signals | number | undefined {
  if (/^\d+$/.test(raw)) {
    const n = Number(raw);
    return n >= 1 && n <= 64 ? n : undefined;
  }
  const name = (raw.toUpperCase().startsWith('SIG') ? raw.toUpperCase() : `SIG${raw.toUpperCase()}`) as NodeJS.Signals;
  return name in osConstants.signals ? name : undefined;
}

/**
 * attach-daemon2 = KEY=VAL,...: the keys uWSGI 2.0 reads. Which of tsgi's daemon kinds it is follows from them:
 * no pidfile, a dumb daemon (attach-daemon); a pidfile, a daemon that daemonizes itself and writes it
 * (smart-attach-daemon); a pidfile and daemonize, one the master keeps in the foreground and whose pid it writes
 * (smart-attach-daemon2). Unknown keys are named (uWSGI ignores them).
 */
function parseDaemon2(value: string, origin: Origin): DaemonSpec {
  const option = 'attach-daemon2';
  const bad = (why: string): ConfigError => new ConfigError('BAD_VALUE', `bad value '${value}': ${why}`, origin, option);
  const kv = new Map<string, string>();
  // A comma inside a value is written \, (a command with commas).
  for (const item of value.split(/(?<!\\),/).map((i) => i.replace(/\\,/g, ','))) {
    if (!item.trim()) continue;
    const eq = item.indexOf('=');
    const key = (eq < 0 ? item : item.slice(0, eq)).trim();
    kv.set(key, eq < 0 ? '' : item.slice(eq + 1));
  }
  const KNOWN = ['command', 'cmd', 'exec', 'freq', 'pidfile', 'control', 'daemonize', 'daemon', 'touch', 'stopsignal', 'stop_signal',
    'reloadsignal', 'reload_signal', 'stdin', 'uid', 'gid', 'chdir', 'max_throttle', 'notifypid'];
  for (const key of kv.keys()) {
    if (key === 'legion') throw new ConfigError('NOT_IMPLEMENTED', `bad value '${value}': legion= needs uWSGI's legion subsystem, which tsgi does not implement`, origin, option);
    if (key === 'ns_pid') throw new ConfigError('NOT_IMPLEMENTED', `bad value '${value}': ns_pid (a PID namespace per daemon) is not implemented by tsgi`, origin, option);
    if (!KNOWN.includes(key)) throw bad(`unknown key '${key}' (attach-daemon2 knows ${KNOWN.join(', ')})`);
  }
  const get = (...keys: string[]): string | undefined => {
    for (const k of keys) if (kv.has(k)) return kv.get(k);
    return undefined;
  };
  const command = get('command', 'cmd', 'exec')?.trim();
  if (!command) throw bad("a 'cmd' key is required (attach-daemon2 = cmd=COMMAND,...)");
  const flag = (k: string): boolean => kv.has(k) && !['0', 'false', 'no', 'off'].includes(kv.get(k)!.trim().toLowerCase());
  const num = (k: string): number | undefined => {
    const raw = kv.get(k);
    if (raw === undefined) return undefined;
    if (!/^\d+$/.test(raw.trim())) throw bad(`${k} must be a whole number, not '${raw}'`);
    return Number(raw.trim());
  };
  const sig = (...keys: string[]): NodeJS.Signals | number | undefined => {
    const raw = get(...keys);
    if (raw === undefined) return undefined;
    const s = parseSignal(raw.trim());
    if (s === undefined) throw bad(`${keys[0]} '${raw}' is not a signal (a number or a name such as SIGQUIT)`);
    return s;
  };
  const id = (k: string, resolveId: (v: string) => number | undefined): number | undefined => {
    const raw = kv.get(k)?.trim();
    if (raw === undefined) return undefined;
    const n = resolveId(raw);
    if (n === undefined) throw bad(`${k} '${raw}': no such ${k === 'uid' ? 'user' : 'group'}`);
    return n;
  };
  const pidfileRaw = get('pidfile')?.trim();
  const daemonize = flag('daemonize') || flag('daemon');
  if (daemonize && !pidfileRaw) throw bad('daemonize needs a pidfile (the master writes the daemon\'s pid there)');
  num('freq'); // checked; tsgi watches pidfiles every second whatever its value (docs/daemons.md)
  const extra: DaemonExtra = {
    control: flag('control'),
    stopSignal: sig('stopsignal', 'stop_signal') ?? 'SIGTERM',
    reloadSignal: sig('reloadsignal', 'reload_signal'),
    touch: (get('touch') ?? '').split(';').map((t) => t.trim()).filter(Boolean).map((t) => resolvePath(t)),
    stdin: flag('stdin'),
    uid: id('uid', (v) => resolveUser(v)?.uid),
    gid: id('gid', resolveGroup),
    chdir: get('chdir')?.trim() || undefined,
    maxThrottle: num('max_throttle'),
    notifyPid: flag('notifypid'),
    text: value,
  };
  if (extra.control && pidfileRaw) throw bad('control applies to a daemon without a pidfile (one the master runs as its child)');
  const kind: DaemonSpec['kind'] = !pidfileRaw ? 'attach-daemon' : daemonize ? 'smart-attach-daemon2' : 'smart-attach-daemon';
  return { kind, command, pidfile: pidfileRaw ? resolvePath(pidfileRaw) : undefined, extra };
}

/**
 * The routing options in the order they were given, across all of them (uWSGI keeps one table): taken from the
 * entries when they are at hand, else option by option.
 */
function routeEntries(values: OptionValues, entries: readonly Entry[], table: readonly string[] = ROUTE_OPTION_NAMES): Array<{ option: string; value: string; origin: Origin }> {
  const names = new Set(table);
  if (!table.some((n) => values.all(n).length)) return [];
  const ordered: Array<{ option: string; value: string; origin: Origin }> = [];
  for (const e of entries) {
    const def = findOption(e.key);
    if (def && names.has(def.name)) ordered.push({ option: def.name, value: e.value, origin: e.origin });
  }
  if (ordered.length) return ordered;
  return table.flatMap((n) => values.all(n).map((v) => ({ option: n, ...v })));
}

/** Builds the settings the server runs with. */
export function buildSettings(values: OptionValues, entries: readonly Entry[] = []): Settings {
  const plugin = checkPlugins(values);
  const defaultProtocol = values.get('protocol') === 'http' ? 'http' : 'uwsgi';
  const socketTimeout = values.int('socket-timeout');
  const sockets: SocketSpec[] = [];
  const add = (option: string, protocol: 'uwsgi' | 'http', timeout: number): void => {
    for (const { value, origin } of values.all(option)) {
      sockets.push({ address: parseSocketAddress(value, origin, option), text: value, protocol, option, timeout, origin });
    }
  };
  add('socket', defaultProtocol, socketTimeout);
  add('uwsgi-socket', 'uwsgi', socketTimeout);
  add('http-socket', 'http', socketTimeout);
  add('http', 'http', values.int('http-timeout'));
  // HTTPS and the router in front of other instances (src/config/https.ts, docs/https.md).
  const addTls = (option: string, timeout: number): void => {
    for (const { value, origin } of values.all(option)) {
      const { addr, tls } = parseHttpsValue(value, origin, option);
      sockets.push({ address: parseSocketAddress(addr, origin, option), text: addr, protocol: 'http', option, timeout, origin, tls });
    }
  };
  addTls('https', values.int('http-timeout'));
  addTls('https-socket', socketTimeout);
  for (const { value, origin } of values.all('http-to-https')) {
    sockets.push({ address: parseSocketAddress(value, origin, 'http-to-https'), text: value, protocol: 'http', option: 'http-to-https', timeout: values.int('http-timeout'), origin, redirectHttps: true });
  }
  const httpTo = values.all('http-to').map(({ value, origin }) => ({ address: parseSocketAddress(value, origin, 'http-to'), text: value, origin }));
  if (values.int('http-processes') !== 1) {
    throw new ConfigError('NOT_IMPLEMENTED', `${values.int('http-processes')}: tsgi runs one HTTP router process (Node's event loop holds every client; it is not the bottleneck, the workers are); set 1 or remove it`, values.origin('http-processes'), 'http-processes');
  }

  let module = values.get('module');
  let callable = values.get('callable') ?? 'application';
  if (module?.includes(':')) {
    const [m, c] = module.split(':', 2) as [string, string];
    module = m;
    if (c) callable = c;
  }
  const wsgiFile = values.get('wsgi-file');
  if (module !== undefined && wsgiFile !== undefined) {
    throw new ConfigError('CONFLICT', `both module and wsgi-file are set (${wsgiFile}); keep one`, values.origin('module'), 'module');
  }
  const env: Array<[string, string]> = values.all('env').map(({ value, origin }) => {
    const eq = value.indexOf('=');
    if (eq <= 0) throw new ConfigError('BAD_VALUE', `bad value '${value}': expected KEY=VALUE`, origin, 'env');
    return [value.slice(0, eq), value.slice(eq + 1)];
  });
  const chmod = values.get('chmod-socket');
  for (const { value, origin } of values.all('vassal-set')) {
    if (value.indexOf('=') <= 0) throw new ConfigError('BAD_VALUE', `bad value '${value}': expected KEY=VALUE`, origin, 'vassal-set');
  }
  const statsAt = values.all('emperor-stats').at(-1);
  const umask = values.get('umask');
  if (umask !== undefined && !/^[0-7]{1,4}$/.test(umask)) {
    throw new ConfigError('BAD_VALUE', `bad value '${umask}': expected an octal mask such as 022`, values.origin('umask'), 'umask');
  }
  const spaced = values.get('procname-prefix-spaced');
  const routes = readRoutes(routeEntries(values, entries));
  const finalRoutes = readRoutes(routeEntries(values, entries, FINAL_ROUTE_OPTION_NAMES), 'final');
  const errorRoutes = readRoutes(routeEntries(values, entries, ERROR_ROUTE_OPTION_NAMES), 'error');
  const responseRoutes = readRoutes(routeEntries(values, entries, RESPONSE_ROUTE_OPTION_NAMES), 'response');
  const collectHeaders = readHeaderVars(values.all('collect-header'), 'collect-header');
  const pullHeaders = readHeaderVars(values.all('pull-header'), 'pull-header');
  const caches = readCacheSettings(values, resolvePath(values.get('chdir') ?? '.'));
  checkCacheRoutes(routes, caches);
  return {
    sockets,
    httpTo,
    routerOnly: httpTo.length > 0 && module === undefined && wsgiFile === undefined && values.all('mount').length === 0,
    tls: {
      exportCert: values.bool('https-export-cert'),
      sessionContext: values.get('https-session-context'),
      sessionTimeout: values.int('ssl-sessions-timeout'),
      verifyDepth: values.int('ssl-verify-depth'),
    },
    limitPost: values.int('limit-post'),
    chmodSocket: chmod === undefined ? undefined : Number.parseInt(chmod, 8),
    chownSocket: values.get('chown-socket'),
    listen: values.int('listen'),
    vacuum: values.bool('vacuum'),
    bufferSize: values.int('buffer-size'),
    socketTimeout,
    processes: values.int('processes'),
    cheaper: readCheaper(values),
    threads: values.int('threads'),
    harakiri: values.int('harakiri'),
    harakiriVerbose: values.bool('harakiri-verbose'),
    maxRequests: values.int('max-requests'),
    maxRequestsDelta: values.int('max-requests-delta'),
    maxWorkerLifetime: values.int('max-worker-lifetime'),
    maxWorkerLifetimeDelta: values.int('max-worker-lifetime-delta'),
    reloadOnRss: values.int('reload-on-rss'),
    evilReloadOnRss: values.int('evil-reload-on-rss'),
    touchReload: values.all('touch-reload').map((v) => v.value),
    touchChainReload: values.all('touch-chain-reload').map((v) => v.value),
    touchLogreopen: values.all('touch-logreopen').map((v) => v.value),
    masterFifo: values.all('master-fifo').map((v) => v.value),
    logReopen: values.bool('log-reopen'),
    logMaxsize: values.int('log-maxsize'),
    stats: values.get('stats'),
    statsHttp: values.bool('stats-http'),
    statsMinified: values.bool('stats-minified'),
    reloadMercy: values.int('reload-mercy'),
    workerReloadMercy: values.int('worker-reload-mercy'),
    pidfile: values.get('pidfile'),
    pidfile2: values.get('pidfile2'),
    uid: values.get('uid'),
    gid: values.get('gid'),
    chdir: values.get('chdir'),
    env,
    needApp: values.bool('need-app'),
    lazyApps: values.bool('lazy-apps'),
    python: {
      module,
      wsgiFile,
      callable,
      home: values.get('home'),
      pythonpath: values.all('pythonpath').map((v) => v.value),
      imports: values.all('import').map(({ value, origin }) => {
        if (!/^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$/.test(value.trim())) throw new ConfigError('BAD_VALUE', `'${value}' is not a Python module name`, origin, 'import');
        return value.trim();
      }),
      fileWrapper: !values.bool('wsgi-disable-file-wrapper'),
      catchExceptions: values.bool('catch-exceptions'),
      autoreload: values.int('py-autoreload'),
      mounts: readMounts(values, values.get('callable') ?? 'application'),
      manageScriptName: values.bool('manage-script-name'),
      noDefaultApp: values.bool('no-default-app'),
      origins: { manageScriptName: values.origin('manage-script-name'), noDefaultApp: values.origin('no-default-app') },
      vhost: values.bool('vhost') ? { option: 'vhost', origin: values.origin('vhost') }
        : values.bool('vhost-host') ? { option: 'vhost-host', origin: values.origin('vhost-host') } : null,
      maxApps: values.int('max-apps'),
    },
    daemons: readDaemons(values),
    exec: Object.fromEntries(EXEC_PHASES.map((phase) => [phase, values.all(`exec-${phase}`).map(({ value, origin }) => {
      if (!value.trim()) throw new ConfigError('BAD_VALUE', 'a command is required', origin, `exec-${phase}`);
      return value.trim();
    })])) as unknown as ExecHooks,
    cron: [
      ...values.all('cron').map(({ value, origin }) => parseCron(value, origin, 'cron')),
      ...values.all('unique-cron').map(({ value, origin }) => parseCron(value, origin, 'unique-cron')),
      ...values.all('cron2').map(({ value, origin }) => parseCron2(value, origin, 'cron2')),
    ],
    cronHarakiri: values.int('cron-harakiri'),
    spooler: readSpooler(values),
    mules: readMules(values),
    plugin,
    appContract: values.get('app-contract') as Settings['appContract'],
    logto: values.get('logto'),
    logging: readLogging(values),
    logFormat: values.get('log-format'),
    logXForwardedFor: values.bool('log-x-forwarded-for'),
    disableLogging: values.bool('disable-logging'),
    logWhen: readLogWhen(values),
    logMicros: values.bool('log-micros'),
    logDate: values.get('log-date'),
    ftimeFormat: values.bool('logformat-strftime') && values.get('log-date') !== undefined && !['true', '1'].includes(values.get('log-date')!) ? values.get('log-date') : undefined,
    headers: readHeaderEdit(values),
    soKeepalive: values.bool('so-keepalive'),
    strict: values.bool('strict'),
    showConfig: values.bool('show-config'),
    umask: umask === undefined ? undefined : Number.parseInt(umask, 8),
    procname: {
      name: values.get('procname'),
      master: values.get('procname-master'),
      prefix: spaced !== undefined ? `${spaced} ` : values.get('procname-prefix') ?? '',
      append: values.get('procname-append') ?? '',
    },
    static: readStaticSettings(values, resolvePath(values.get('chdir') ?? '.')),
    routes,
    finalRoutes,
    errorRoutes,
    responseRoutes,
    collectHeaders,
    pullHeaders,
    caches,
    metrics: readMetrics(values),
    exportedOptions: exportedOptions(entries),
    readAt: Date.now(),
    reloaded: false,
    emperor: values.all('emperor').length
      ? {
          monitors: values.all('emperor'),
          tyrant: values.bool('emperor-tyrant'),
          inherit: values.all('vassals-inherit').map((v) => v.value),
          set: values.all('vassal-set'),
          stats: statsAt,
          freq: values.int('emperor-freq'),
        }
      : undefined,
  };
}
