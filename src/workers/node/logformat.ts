/**
 * `log-format` for Node workers: uWSGI's request variables (%(addr) %(method) %(uri) %(status) %(msecs)
 * ...), the same set the Python worker knows. Any other name is a logvar, as in uWSGI: Node apps cannot set
 * one, so it prints '-'. The template is compiled once into pieces; a template that starts with `{` is a JSON
 * log, every value JSON-escaped.
 */
import { readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ctime } from './log.js';
import { strftime } from '../../config/strftime.js';
import { cgiVars } from './request-info.js';

export interface LogContext {
  req: IncomingMessage;
  res: ServerResponse;
  addr: string;
  /** Start of the request, ms since the epoch. */
  startMs: number;
  usec: number;
  bodyBytes: number;
  headerBytes: number;
  headerCount: number;
  nvars: number;
  vbytes: number;
  pid: number;
  wid: number;
  /** The request's CGI vars, computed on first use. */
  vars?: Record<string, string>;
}

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
const two = (n: number): string => (n < 10 ? `0${n}` : String(n));

/** strftime('%d/%b/%Y:%H:%M:%S %z'), in local time. */
function ltime(ms: number): string {
  const d = new Date(ms);
  const off = -d.getTimezoneOffset();
  const abs = Math.abs(off);
  return `${two(d.getDate())}/${MONTHS[d.getMonth()]}/${d.getFullYear()}:${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())} ` +
    `${off < 0 ? '-' : '+'}${two(Math.floor(abs / 60))}${two(abs % 60)}`;
}

function memory(): [number, number] {
  const statm = readFileSync('/proc/self/statm', 'latin1').split(' ');
  return [Number(statm[1]) * 4096, Number(statm[0]) * 4096];
}

const env = (key: string) => (c: LogContext): string => {
  c.vars ??= cgiVars(c.req);
  return c.vars[key] ?? '';
};

const VARIABLES: Record<string, (c: LogContext) => string> = {
  uri: (c) => c.req.url ?? '',
  method: (c) => c.req.method ?? '',
  user: env('REMOTE_USER'),
  host: env('HTTP_HOST'),
  proto: env('SERVER_PROTOCOL'),
  uagent: env('HTTP_USER_AGENT'),
  referer: env('HTTP_REFERER'),
  addr: (c) => c.addr,
  status: (c) => String(c.res.statusCode),
  micros: (c) => String(Math.floor(c.usec)),
  msecs: (c) => String(Math.floor(c.usec / 1000)),
  secs: (c) => (c.usec / 1e6).toFixed(6),
  time: (c) => String(Math.floor(c.startMs / 1000)),
  ctime: (c) => ctime(c.startMs),
  ltime: (c) => ltime(c.startMs),
  epoch: () => String(Math.floor(Date.now() / 1000)),
  size: (c) => String(c.bodyBytes + c.headerBytes),
  rsize: (c) => String(c.bodyBytes),
  hsize: (c) => String(c.headerBytes),
  headers: (c) => String(c.headerCount),
  cl: (c) => env('CONTENT_LENGTH')(c) || '0',
  pid: (c) => String(c.pid),
  wid: (c) => String(c.wid),
  core: () => '0',
  switches: () => '1',
  vars: (c) => String(c.nvars),
  pktsize: (c) => String(c.vbytes),
  modifier1: () => '0',
  modifier2: () => '0',
  rss: () => String(memory()[0]),
  vsz: () => String(memory()[1]),
  rssM: () => String(Math.floor(memory()[0] / (1024 * 1024))),
  vszM: () => String(Math.floor(memory()[1] / (1024 * 1024))),
};

const jsonEscape = (v: string): string => JSON.stringify(v).slice(1, -1);

/** Compiles a log-format template into a function from a request's context to its line (no newline). */
export function compileLogFormat(template: string, ftimeFormat?: string): (c: LogContext) => string {
  const escape = template.trimStart().startsWith('{');
  const pieces: Array<string | ((c: LogContext) => string)> = [];
  let i = 0;
  while (i < template.length) {
    const start = template.indexOf('%(', i);
    const close = start === -1 ? -1 : template.indexOf(')', start);
    if (start === -1 || close === -1) {
      pieces.push(template.slice(i));
      break;
    }
    pieces.push(template.slice(i, start));
    const name = template.slice(start + 2, close);
    const get =
      name === 'ftime'
        ? ftimeFormat === undefined
          ? VARIABLES.ltime!
          : (c: LogContext) => strftime(ftimeFormat, c.startMs)
        : name.startsWith('var.')
          ? env(name.slice(4))
          : (VARIABLES[name] ?? (() => '-'));
    pieces.push(escape ? (c: LogContext) => jsonEscape(get(c)) : get);
    i = close + 1;
  }
  return (c) => {
    let out = '';
    for (const p of pieces) out += typeof p === 'string' ? p : p(c);
    return out;
  };
}
