/**
 * uWSGI's pluggable logging, read from the configuration: logger / req-logger, log-encoder / log-req-encoder,
 * log-route / log-req-route, log-master, and the log alarms (alarm, alarm-log, not-alarm-log, alarm-freq).
 * Everything is checked here, at start, so a bad value is one line naming the file, line and option; the
 * master (src/master/logmaster.ts) only runs what this returns. Undefined when none of them is set: then
 * nothing about logging changes (workers write to the log descriptor directly).
 */
import { ConfigError } from './errors.js';
import type { Origin } from './origin.js';
import type { OptionValues } from './resolve.js';

export type LoggerPlugin = 'file' | 'stdio' | 'syslog' | 'socket';

export interface LoggerSpec {
  /** Named loggers (`logger = NAME PLUGIN:ARGS`) only receive the lines a log-route sends them. */
  name: string | undefined;
  plugin: LoggerPlugin;
  /** What follows `PLUGIN:` (undefined when there is no colon). */
  arg: string | undefined;
  /** As written, for messages. */
  text: string;
  option: string;
  origin: Origin;
}

export type EncoderKind = 'format' | 'json' | 'prefix' | 'suffix' | 'nl' | 'gzip' | 'compress';

export interface EncoderSpec {
  kind: EncoderKind;
  /** `ENCODER:NAME`: applied by the logger NAME only; undefined: by every logger. */
  target: string | undefined;
  /** Everything after the first space (uWSGI keeps further spaces: `suffix  X` appends ' X'). */
  arg: string;
}

export interface RouteSpec {
  logger: string;
  pattern: RegExp;
}

export interface AlarmSpec {
  name: string;
  plugin: 'cmd' | 'log';
  arg: string;
}

export interface AlarmLogSpec {
  alarms: string[];
  pattern: RegExp;
  /** not-alarm-log: a matching line stops the check (no alarm-log after it fires for that line). */
  negate: boolean;
}

export interface LoggingSpec {
  loggers: LoggerSpec[];
  reqLoggers: LoggerSpec[];
  encoders: EncoderSpec[];
  reqEncoders: EncoderSpec[];
  routes: RouteSpec[];
  reqRoutes: RouteSpec[];
  alarms: AlarmSpec[];
  alarmLogs: AlarmLogSpec[];
  /** alarm-backlog: alarms raised when a TCP socket's listen queue is full (the master looks every second). */
  alarmBacklog: string[];
  /** alarm-freq: the same line raises the same alarm at most once in this many seconds (uWSGI: 3). */
  alarmFreq: number;
}

/** Logger plugins uWSGI has that tsgi does not: named in the refusal. */
const OTHER_LOGGERS = new Set(['redislog', 'mongodblog', 'zeromq', 'rsyslog', 'pipe', 'fd', 'systemd', 'crypto', 'graylog2', 'sentry',
  'msgpack', 'logpipe', 'zmq', 'socket-udp']);
const OTHER_ENCODERS = new Set(['msgpack']);
const OTHER_ALARMS = new Set(['signal', 'mule', 'curl', 'xmpp', 'speech', 'airbrake', 'raven', 'cmd', 'log']);

/** The master's line for a worker that died of a segmentation fault (src/master/arbiter.ts). */
const SEGFAULT_LINE = /tsgi: worker \d+ \(pid: \d+[^)]*\) killed by SIGSEGV/;

export const SYSLOG_FACILITIES: Readonly<Record<string, number>> = {
  kern: 0, user: 1, mail: 2, daemon: 3, auth: 4, syslog: 5, lpr: 6, news: 7, uucp: 8, cron: 9, authpriv: 10, ftp: 11,
  local0: 16, local1: 17, local2: 18, local3: 19, local4: 20, local5: 21, local6: 22, local7: 23,
};

const LOGGER_OPTIONS = ['logger', 'req-logger', 'log-encoder', 'log-req-encoder', 'log-route', 'log-req-route', 'log-master',
  'alarm', 'alarm-log', 'not-alarm-log', 'alarm-segfault', 'alarm-backlog'] as const;

function readLogger(value: string, origin: Origin, option: string): LoggerSpec {
  const bad = (why: string, code: 'BAD_VALUE' | 'NOT_IMPLEMENTED' = 'BAD_VALUE'): ConfigError =>
    new ConfigError(code, `'${value}': ${why}`, origin, option);
  const text = value.trim();
  // `NAME PLUGIN[:ARGS]` when the first word has no colon and something follows it.
  const m = /^([^\s:]+)\s+(\S.*)$/.exec(text);
  const name = m ? m[1] : undefined;
  const body = m ? m[2]! : text;
  const colon = body.indexOf(':');
  const plugin = colon === -1 ? body : body.slice(0, colon);
  const arg = colon === -1 ? undefined : body.slice(colon + 1);
  if (!plugin) throw bad('expected [NAME ]PLUGIN[:ARGS] (file:PATH, stdio, syslog[:IDENT[,FACILITY]], socket:ADDR)');
  switch (plugin) {
    case 'file':
      if (!arg) throw bad('file needs a path: file:/var/log/app.log');
      break;
    case 'stdio':
      break;
    case 'syslog': {
      const facility = arg?.split(',')[1];
      if (facility !== undefined && !(facility in SYSLOG_FACILITIES)) {
        throw bad(`unknown syslog facility '${facility}' (${Object.keys(SYSLOG_FACILITIES).join(', ')})`);
      }
      break;
    }
    case 'socket':
      if (!arg || (!arg.startsWith('/') && !/^(\[[^\]]+\]|[^:]*):\d+$/.test(arg))) {
        throw bad('socket needs HOST:PORT (UDP) or a Unix datagram socket path: socket:127.0.0.1:1717');
      }
      break;
    default:
      throw bad(OTHER_LOGGERS.has(plugin)
        ? `the '${plugin}' logger plugin is not implemented in tsgi (file, stdio, syslog and socket are)`
        : `unknown logger plugin '${plugin}' (tsgi has file, stdio, syslog and socket)`, 'NOT_IMPLEMENTED');
  }
  return { name, plugin, arg, text, option, origin };
}

function readEncoder(value: string, origin: Origin, option: string): EncoderSpec {
  const space = value.indexOf(' ');
  const head = space === -1 ? value : value.slice(0, space);
  const arg = space === -1 ? '' : value.slice(space + 1);
  const colon = head.indexOf(':');
  const kind = colon === -1 ? head : head.slice(0, colon);
  const target = colon === -1 ? undefined : head.slice(colon + 1) || undefined;
  if (kind === 'format' || kind === 'json' || kind === 'prefix' || kind === 'suffix' || kind === 'nl' || kind === 'gzip' || kind === 'compress') {
    return { kind, target, arg };
  }
  throw new ConfigError('NOT_IMPLEMENTED', OTHER_ENCODERS.has(kind)
    ? `the '${kind}' log encoder is not implemented in tsgi (format, json, prefix, suffix, nl, gzip and compress are)`
    : `unknown log encoder '${kind}' (tsgi has format, json, prefix, suffix, nl, gzip and compress)`, origin, option);
}

function readRegexp(text: string, origin: Origin, option: string): RegExp {
  try {
    return new RegExp(text);
  } catch (err) {
    throw new ConfigError('BAD_VALUE', `bad regular expression '${text}': ${(err as Error).message}`, origin, option);
  }
}

/** `NAME REGEXP`: the first word, then the rest. */
function splitFirst(value: string, origin: Origin, option: string, what: string): [string, string] {
  const m = /^\s*(\S+)\s+(\S.*)$/.exec(value);
  if (!m) throw new ConfigError('BAD_VALUE', `'${value}': expected ${what} REGEXP`, origin, option);
  return [m[1]!, m[2]!];
}

function readRoutes(values: OptionValues, option: 'log-route' | 'log-req-route', loggers: LoggerSpec[]): RouteSpec[] {
  return values.all(option).map(({ value, origin }) => {
    const [logger, re] = splitFirst(value, origin, option, 'LOGGER');
    if (!loggers.some((l) => l.name === logger)) {
      const kind = option === 'log-route' ? 'logger' : 'req-logger';
      throw new ConfigError('BAD_VALUE', `no ${kind} is named '${logger}' (name one with ${kind} = ${logger} PLUGIN:ARGS)`, origin, option);
    }
    return { logger, pattern: readRegexp(re, origin, option) };
  });
}

export function readLogging(values: OptionValues): LoggingSpec | undefined {
  if (!LOGGER_OPTIONS.some((o) => (o === 'log-master' ? values.bool(o) : values.all(o).length))) return undefined;
  const loggers = values.all('logger').map(({ value, origin }) => readLogger(value, origin, 'logger'));
  const reqLoggers = values.all('req-logger').map(({ value, origin }) => readLogger(value, origin, 'req-logger'));
  const encoders = values.all('log-encoder').map(({ value, origin }) => readEncoder(value, origin, 'log-encoder'));
  const reqEncoders = values.all('log-req-encoder').map(({ value, origin }) => readEncoder(value, origin, 'log-req-encoder'));
  const alarms: AlarmSpec[] = [];
  for (const { value, origin } of values.all('alarm')) {
    const m = /^\s*(\S+)\s+([a-z0-9_-]+):(.*)$/.exec(value);
    if (!m) throw new ConfigError('BAD_VALUE', `'${value}': expected NAME PLUGIN:ARGS (cmd:COMMAND or log:MESSAGE)`, origin, 'alarm');
    const [, name, plugin, arg] = m as unknown as [string, string, string, string];
    if (plugin !== 'cmd' && plugin !== 'log') {
      throw new ConfigError('NOT_IMPLEMENTED', OTHER_ALARMS.has(plugin)
        ? `the '${plugin}' alarm plugin is not implemented in tsgi (cmd and log are; cmd:curl ... or cmd:mail ... can do what it does)`
        : `unknown alarm plugin '${plugin}' (tsgi has cmd and log)`, origin, 'alarm');
    }
    if (plugin === 'cmd' && !arg.trim()) throw new ConfigError('BAD_VALUE', `'${value}': cmd needs a command`, origin, 'alarm');
    if (alarms.some((a) => a.name === name)) throw new ConfigError('BAD_VALUE', `an alarm named '${name}' is already defined`, origin, 'alarm');
    alarms.push({ name, plugin, arg });
  }
  // alarm-log and not-alarm-log form one list, checked in the order written (as uWSGI does).
  const alarmLogs: AlarmLogSpec[] = [];
  const alarmEntries = [
    ...values.all('alarm-log').map((e) => ({ ...e, option: 'alarm-log', negate: false })),
    ...values.all('not-alarm-log').map((e) => ({ ...e, option: 'not-alarm-log', negate: true })),
  ].sort((a, b) => a.seq - b.seq);
  for (const { value, origin, option, negate } of alarmEntries) {
    const [names, re] = splitFirst(value, origin, option, 'ALARM[,ALARM...]');
    const list = names.split(',').filter(Boolean);
    for (const n of list) {
      if (!alarms.some((a) => a.name === n)) {
        throw new ConfigError('BAD_VALUE', `no alarm is named '${n}' (define it with alarm = ${n} cmd:COMMAND)`, origin, option);
      }
    }
    alarmLogs.push({ alarms: list, pattern: readRegexp(re, origin, option), negate });
  }
  // alarm-segfault: a worker killed by SIGSEGV, as the master reports it (checked first, so no not-alarm-log hides it).
  for (const { value, origin } of values.all('alarm-segfault').reverse()) {
    const list = value.split(',').map((n) => n.trim()).filter(Boolean);
    if (!list.length) throw new ConfigError('BAD_VALUE', 'expected ALARM[,ALARM...]', origin, 'alarm-segfault');
    for (const n of list) {
      if (!alarms.some((a) => a.name === n)) {
        throw new ConfigError('BAD_VALUE', `no alarm is named '${n}' (define it with alarm = ${n} cmd:COMMAND)`, origin, 'alarm-segfault');
      }
    }
    alarmLogs.unshift({ alarms: list, pattern: SEGFAULT_LINE, negate: false });
  }
  const alarmBacklog: string[] = [];
  for (const { value, origin } of values.all('alarm-backlog')) {
    const list = value.split(',').map((n) => n.trim()).filter(Boolean);
    if (!list.length) throw new ConfigError('BAD_VALUE', 'expected ALARM[,ALARM...]', origin, 'alarm-backlog');
    for (const n of list) {
      if (!alarms.some((a) => a.name === n)) {
        throw new ConfigError('BAD_VALUE', `no alarm is named '${n}' (define it with alarm = ${n} cmd:COMMAND)`, origin, 'alarm-backlog');
      }
    }
    alarmBacklog.push(...list.filter((n) => !alarmBacklog.includes(n)));
  }
  return {
    loggers,
    reqLoggers,
    encoders,
    reqEncoders,
    routes: readRoutes(values, 'log-route', loggers),
    reqRoutes: readRoutes(values, 'log-req-route', reqLoggers),
    alarms,
    alarmLogs,
    alarmBacklog,
    alarmFreq: values.int('alarm-freq'),
  };
}

/** What a reload compares: the settings without where they were written. */
export function loggingKey(spec: LoggingSpec | undefined): string {
  return JSON.stringify(spec ?? null, (k, v: unknown) => (k === 'origin' ? undefined : v instanceof RegExp ? v.source : v));
}
