/**
 * The log master (uWSGI's log-master): when loggers, encoders, routes or log alarms are configured, every
 * worker, the router, daemons and alarm commands get the write end of a pipe as their stdout and stderr (and,
 * with req-logger, a second pipe for request lines only). The master reads the pipes, cuts the stream into
 * lines and sends each line to its loggers, through the encoders; it also checks the lines against the alarms.
 * Its own events take the same road without the pipe. A worker still writes each line once; only the master
 * routes. Without any of these options none of this exists and workers write to the log descriptor directly.
 *
 * Node has no pipe(): a FIFO in a private directory serves (the master opens it read-write, so it never sees
 * end-of-file while workers come and go, then unlinks it; the descriptors are an ordinary kernel pipe).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { constants, mkdtempSync, openSync, readSync, rmdirSync, unlinkSync, writeSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { StringDecoder } from 'node:string_decoder';
import zlib from 'node:zlib';
import { SYSLOG_FACILITIES, type AlarmSpec, type EncoderSpec, type LoggerSpec, type LoggingSpec } from '../config/logging.js';
import { strftime } from '../config/strftime.js';
import { nativeHelper } from '../systemd/native.js';
import type { ProcessLog } from './log.js';

/** Where syslog datagrams go: /dev/log, as libc's syslog() sends them; TSGI_SYSLOG_SOCKET overrides it (containers, tests). */
const syslogPath = (): string => process.env.TSGI_SYSLOG_SOCKET || '/dev/log';

/** Encoders work on text, except after gzip / compress, whose bytes the next encoders and the logger take as they are. */
type Data = string | Buffer;
type Encode = (data: Data) => Data;

const text = (d: Data): string => (typeof d === 'string' ? d : d.toString('utf8'));
const join2 = (a: Data, b: Data): Data => (typeof a === 'string' && typeof b === 'string' ? a + b : Buffer.concat([Buffer.from(a), Buffer.from(b)]));

/** CRC-32 for the gzip trailer (zlib.crc32 exists from Node 20.15 only). */
let crcTable: Uint32Array | undefined;
function crc32(buf: Buffer): number {
  const z = zlib as unknown as { crc32?: (b: Buffer) => number };
  if (z.crc32) return z.crc32(buf);
  if (!crcTable) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  let c = 0xffffffff;
  for (const b of buf) c = crcTable[(c ^ b) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/**
 * gzip as uWSGI's encoder writes it (same bytes): a header with no time and OS unix, the deflate stream
 * sync-flushed, an empty final block, then CRC-32 and size.
 */
function gzipLikeUwsgi(data: Data): Buffer {
  const input = Buffer.from(data);
  const body = zlib.deflateRawSync(input, { finishFlush: zlib.constants.Z_SYNC_FLUSH });
  const trailer = Buffer.alloc(8);
  trailer.writeUInt32LE(crc32(input), 0);
  trailer.writeUInt32LE(input.length >>> 0, 4);
  return Buffer.concat([GZIP_HEADER, body, FINAL_EMPTY_BLOCK, trailer]);
}
const GZIP_HEADER = Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3]);
const FINAL_EMPTY_BLOCK = Buffer.from([3, 0]);

/** JSON string escaping as uWSGI's json encoder does it: quote, backslash and the usual control characters. */
function jsonEscape(s: string): string {
  return s.replace(/["\\\n\r\t\b\f]/g, (c) =>
    c === '\n' ? '\\n' : c === '\r' ? '\\r' : c === '\t' ? '\\t' : c === '\b' ? '\\b' : c === '\f' ? '\\f' : `\\${c}`);
}

const nowMicros = (): number => Math.floor((performance.timeOrigin + performance.now()) * 1000);

/** format / json: the template with ${msg} (the text without its newline), ${msgnl}, ${unix}, ${micros}, ${millis}, ${strftime:FMT}. */
function templateEncoder(template: string, json: boolean): Encode {
  const parts: Array<string | ((msg: string, micros: number) => string)> = [];
  const re = /\$\{([^}]*)\}/g;
  let last = 0;
  for (let m = re.exec(template); m; m = re.exec(template)) {
    parts.push(template.slice(last, m.index));
    last = re.lastIndex;
    const v = m[1]!;
    const esc = json ? jsonEscape : (s: string) => s;
    if (v === 'msg') parts.push((msg) => esc(msg.endsWith('\n') ? msg.slice(0, -1) : msg));
    else if (v === 'msgnl') parts.push((msg) => esc(msg));
    else if (v === 'unix') parts.push((_m, us) => String(Math.floor(us / 1e6)));
    else if (v === 'micros') parts.push((_m, us) => String(us));
    else if (v === 'millis') parts.push((_m, us) => String(Math.floor(us / 1000)));
    else if (v.startsWith('strftime:')) {
      const fmt = v.slice('strftime:'.length);
      parts.push((_m, us) => strftime(fmt, Math.floor(us / 1000)));
    } else parts.push(''); // an unknown variable is empty, as in uWSGI
  }
  parts.push(template.slice(last));
  return (data) => {
    const msg = text(data);
    const us = nowMicros();
    let out = '';
    for (const p of parts) out += typeof p === 'string' ? p : p(msg, us);
    return out;
  };
}

function encoder(e: EncoderSpec): Encode {
  switch (e.kind) {
    case 'format':
      return templateEncoder(e.arg, false);
    case 'json':
      return templateEncoder(e.arg, true);
    case 'prefix':
      return (d) => join2(e.arg, d);
    case 'suffix':
      return (d) => join2(d, e.arg);
    case 'nl':
      return (d) => join2(d, '\n');
    case 'gzip':
      return gzipLikeUwsgi;
    case 'compress':
      return (d) => zlib.deflateSync(Buffer.from(d));
  }
}

/** The encoders a logger applies: those without a target and those naming it, in the order written. */
function chain(encoders: readonly EncoderSpec[], name: string | undefined): Encode[] {
  return encoders.filter((e) => e.target === undefined || e.target === name).map(encoder);
}

interface Output {
  write(data: Data): void;
}

class Sink {
  constructor(
    readonly name: string | undefined,
    private readonly out: Output,
    private readonly encoders: Encode[],
  ) {}

  emit(line: string): void {
    let data: Data = line;
    for (const e of this.encoders) data = e(data);
    this.out.write(data);
  }
}

/**
 * Outputs report trouble once, then once more when it clears: a syslog that goes away (or a full disk) is
 * a line in the base log, never an exception in the master.
 */
class Trouble {
  private down = false;
  constructor(private readonly what: string, private readonly note: (line: string) => void) {}
  failed(why: string): void {
    if (this.down) return;
    this.down = true;
    this.note(`logger ${this.what}: ${why}; its lines are lost until it works again`);
  }
  ok(): void {
    if (!this.down) return;
    this.down = false;
    this.note(`logger ${this.what}: working again`);
  }
}

function unixDatagramOutput(path: string, what: string, note: (line: string) => void, wrap: (text: string) => string): Output | undefined {
  // The native helper sends text: bytes from gzip / compress do not survive it (syslog takes text anyway).
  const native = nativeHelper();
  if (!native) return undefined;
  const trouble = new Trouble(what, note);
  return {
    write(data) {
      const rc = native.notify(path, wrap(typeof data === 'string' ? data : data.toString('utf8')));
      if (rc < 0) trouble.failed(`cannot send to ${path} (errno ${-rc})`);
      else trouble.ok();
    },
  };
}

export class LogMaster {
  /** The write end of the log pipe: workers' stdout and stderr. */
  readonly fd: number;
  /** The write end of the request-line pipe (req-logger), else undefined. */
  readonly reqFd: number | undefined;
  private readonly readFds: number[] = [];
  private readonly sinks: Sink[];
  private readonly reqSinks: Sink[];
  private readonly routes: Array<{ pattern: RegExp; sink: Sink }>;
  private readonly reqRoutes: Array<{ pattern: RegExp; sink: Sink }>;
  private readonly raw: Sink;
  private readonly reqRaw: Sink;
  private readonly alarms: Alarms | undefined;
  private readonly udp: UdpSocket[] = [];
  private readonly decoders = new Map<number, { decoder: StringDecoder; pending: string; req: boolean }>();

  /** Opens every logger (a failure throws, with one line for the start-up error) and the pipes. */
  constructor(spec: LoggingSpec, base: ProcessLog) {
    const note = (line: string): void => base.writeRaw(`tsgi: ${line}\n`);
    const rawOut: Output = { write: (t) => base.writeRaw(t) };
    const open = (l: LoggerSpec, encoders: readonly EncoderSpec[]): Sink => new Sink(l.name, this.output(l, rawOut, note), chain(encoders, l.name));
    this.sinks = spec.loggers.map((l) => open(l, spec.encoders));
    this.reqSinks = spec.reqLoggers.map((l) => open(l, spec.reqEncoders));
    const named = (sinks: Sink[], name: string): Sink => sinks.find((s) => s.name === name)!;
    this.routes = spec.routes.map((r) => ({ pattern: r.pattern, sink: named(this.sinks, r.logger) }));
    this.reqRoutes = spec.reqRoutes.map((r) => ({ pattern: r.pattern, sink: named(this.reqSinks, r.logger) }));
    this.raw = new Sink(undefined, rawOut, chain(spec.encoders, undefined));
    this.reqRaw = new Sink(undefined, rawOut, chain(spec.reqEncoders, undefined));
    if (spec.alarms.length) this.alarms = new Alarms(spec, (line) => this.dispatch(line, false, false), () => this.fd);
    this.fd = this.pipe(false);
    this.reqFd = spec.reqLoggers.length ? this.pipe(true) : undefined;
  }

  private output(l: LoggerSpec, rawOut: Output, note: (line: string) => void): Output {
    const what = `'${l.text}'`;
    switch (l.plugin) {
      case 'file': {
        let fd: number;
        try {
          fd = openSync(l.arg!, 'a', 0o640);
        } catch (err) {
          throw new Error(`${l.option} ${l.text}: cannot open ${l.arg} (${(err as NodeJS.ErrnoException).code})`);
        }
        const trouble = new Trouble(what, note);
        return {
          write(text) {
            try {
              if (typeof text === 'string') writeSync(fd, text);
              else writeSync(fd, text);
              trouble.ok();
            } catch (err) {
              trouble.failed(`cannot write (${(err as NodeJS.ErrnoException).code})`);
            }
          },
        };
      }
      case 'stdio':
        return rawOut;
      case 'syslog': {
        const [identArg, facilityName] = (l.arg ?? '').split(',');
        const ident = identArg || 'uwsgi';
        // LOG_INFO of the facility (daemon by default, as uWSGI's syslog logger sends), in libc's syslog() format.
        const pri = (facilityName === undefined ? SYSLOG_FACILITIES.daemon! : SYSLOG_FACILITIES[facilityName]!) * 8 + 6;
        const path = syslogPath();
        const out = unixDatagramOutput(path, what, note, (text) => `<${pri}>${strftime('%b %e %T', Date.now())} ${ident}: ${text}`);
        if (out) return out;
        note(`${l.option} ${l.text}: the native helper was not built (no C compiler at install?), so syslog datagrams cannot be sent; its lines go to the log instead`);
        return rawOut;
      }
      case 'socket': {
        const addr = l.arg!;
        if (addr.startsWith('/')) {
          const out = unixDatagramOutput(addr, what, note, (t) => t);
          if (out) return out;
          note(`${l.option} ${l.text}: the native helper was not built, so Unix datagrams cannot be sent; its lines go to the log instead`);
          return rawOut;
        }
        const colon = addr.lastIndexOf(':');
        const host = addr.slice(0, colon).replace(/^\[|\]$/g, '') || '127.0.0.1';
        const port = Number(addr.slice(colon + 1));
        const sock = createSocket(net.isIPv6(host) ? 'udp6' : 'udp4');
        sock.unref();
        this.udp.push(sock);
        const trouble = new Trouble(what, note);
        sock.on('error', (err) => trouble.failed(err.message));
        return {
          write(text) {
            sock.send(text, port, host, (err) => (err ? trouble.failed(err.message) : trouble.ok()));
          },
        };
      }
    }
  }

  /** A FIFO opened at both ends, then unlinked: an anonymous pipe. Returns the write end; the master reads the other. */
  private pipe(req: boolean): number {
    const dir = mkdtempSync(join(tmpdir(), 'tsgi-log-'));
    const path = join(dir, req ? 'req' : 'log');
    try {
      const made = spawnSync('mkfifo', ['-m', '600', path]);
      if (made.status !== 0) throw new Error(`cannot create the log pipe (mkfifo: ${made.error?.message ?? made.stderr.toString().trim()})`);
      const rfd = openSync(path, constants.O_RDWR | constants.O_NONBLOCK);
      const wfd = openSync(path, constants.O_WRONLY);
      this.readFds.push(rfd);
      this.decoders.set(rfd, { decoder: new StringDecoder('utf8'), pending: '', req });
      const reader = new net.Socket({ fd: rfd, readable: true, writable: false });
      reader.on('data', (chunk: Buffer) => this.read(rfd, chunk));
      reader.on('error', () => {
        /* the pipe cannot fail while the master holds both ends */
      });
      return wfd;
    } finally {
      try {
        unlinkSync(path);
      } catch {
        /* not created */
      }
      rmdirSync(dir);
    }
  }

  private read(rfd: number, chunk: Buffer): void {
    const s = this.decoders.get(rfd)!;
    let text = s.pending + s.decoder.write(chunk);
    let nl = text.indexOf('\n');
    let start = 0;
    while (nl !== -1) {
      this.dispatch(text.slice(start, nl + 1), s.req, true);
      start = nl + 1;
      nl = text.indexOf('\n', start);
    }
    text = text.slice(start);
    // A very long line without a newline is passed on in pieces rather than held forever.
    if (text.length > 65536) {
      this.dispatch(text, s.req, true);
      text = '';
    }
    s.pending = text;
  }

  /** Raises alarms directly (alarm-backlog), with their own message, throttled as the others. */
  raise(alarms: readonly string[], message: string): void {
    for (const name of alarms) this.alarms?.raise(name, message);
  }

  /** Output the master collected itself (exec hooks, which it waits for): passed on line by line. */
  take(text: string): void {
    for (const line of text.split(/(?<=\n)/)) if (line) this.dispatch(line, false, true);
  }

  /** Reads what is left in the pipes (the master is about to exit) and passes any unfinished line on. */
  drain(): void {
    const buf = Buffer.allocUnsafe(65536);
    for (const rfd of this.readFds) {
      for (;;) {
        let n: number;
        try {
          n = readSync(rfd, buf, 0, buf.length, null);
        } catch {
          break;
        }
        if (n <= 0) break;
        this.read(rfd, buf.subarray(0, n));
      }
      const s = this.decoders.get(rfd)!;
      if (s.pending) this.dispatch(s.pending, s.req, true);
      s.pending = '';
    }
  }

  /** One line (with its newline): to the routes' loggers when one matches, else to every unnamed logger, else to the log. */
  dispatch(line: string, req: boolean, alarms: boolean): void {
    const bare = line.endsWith('\n') ? line.slice(0, -1) : line;
    if (alarms && !req) this.alarms?.check(bare, line);
    const routes = req ? this.reqRoutes : this.routes;
    let routed = false;
    for (const r of routes) {
      if (r.pattern.test(bare)) {
        r.sink.emit(line);
        routed = true;
      }
    }
    if (routed) return;
    let written = false;
    for (const s of req ? this.reqSinks : this.sinks) {
      if (s.name !== undefined) continue;
      s.emit(line);
      written = true;
    }
    if (!written) (req ? this.reqRaw : this.raw).emit(line);
  }
}

const ctime = (ms: number): string => strftime('%a %b %e %T %Y', ms);

/**
 * Log alarms: alarm-log / not-alarm-log lines checked in order against every log line (a matching
 * not-alarm-log ends the check); an alarm raised again by the same line within alarm-freq seconds is skipped,
 * as uWSGI does. Commands run through /bin/sh with the line on their stdin, never waited for: a command still
 * running when its alarm is raised again is not started twice, and its end (or failure) is a line in the log.
 */
const MAX_QUEUED = 100;

interface AlarmState {
  spec: AlarmSpec;
  lastLine: string;
  lastRun: number;
  child: ChildProcess | undefined;
  /** Lines raised while the command ran: run one after another. */
  queue: string[];
}

class Alarms {
  private readonly state = new Map<string, AlarmState>();

  constructor(
    private readonly spec: LoggingSpec,
    /** Writes a line to the log without checking it against the alarms again (no alarm loops). */
    private readonly log: (line: string) => void,
    private readonly logFd: () => number,
  ) {
    for (const a of spec.alarms) this.state.set(a.name, { spec: a, lastLine: '', lastRun: 0, child: undefined, queue: [] });
  }

  check(bare: string, line: string): void {
    for (const al of this.spec.alarmLogs) {
      if (!al.pattern.test(bare)) continue;
      if (al.negate) return;
      for (const name of al.alarms) this.raise(name, line);
    }
  }

  private note(text: string): void {
    this.log(`tsgi: ${text}\n`);
  }

  raise(name: string, line: string): void {
    const a = this.state.get(name)!;
    const now = Math.floor(Date.now() / 1000);
    if (a.lastLine === line && now - a.lastRun < this.spec.alarmFreq) return;
    a.lastLine = line;
    a.lastRun = now;
    if (a.spec.plugin === 'log') {
      this.log(`${ctime(Date.now())} - ALARM: ${a.spec.arg} ${line}`);
      return;
    }
    if (a.child) {
      // One command at a time per alarm, the others wait their turn (as in uWSGI's alarm thread), up to a bound.
      if (a.queue.length < MAX_QUEUED) a.queue.push(line);
      else this.note(`alarm '${name}': ${MAX_QUEUED} alarms already wait for its command (pid ${a.child.pid}) to end; dropped: ${line.trimEnd()}`);
      return;
    }
    this.run(name, a, line);
  }

  private run(name: string, a: AlarmState, line: string): void {
    let child: ChildProcess;
    try {
      child = spawn('/bin/sh', ['-c', a.spec.arg], { stdio: ['pipe', this.logFd(), this.logFd()] });
    } catch (err) {
      this.note(`alarm '${name}': cannot run its command: ${(err as Error).message}`);
      return;
    }
    a.child = child;
    const slow = setTimeout(() => this.note(`alarm '${name}': its command (pid ${child.pid}) still runs after 60 s`), 60_000);
    slow.unref();
    let ended = false;
    const next = (): void => {
      if (ended) return; // 'error' and 'exit' can both come for one command
      ended = true;
      clearTimeout(slow);
      a.child = undefined;
      const waiting = a.queue.shift();
      if (waiting !== undefined) this.run(name, a, waiting);
    };
    child.on('error', (err) => {
      this.note(`alarm '${name}': cannot run its command: ${err.message}`);
      next();
    });
    child.on('exit', (code, signal) => {
      if (code === 0) this.note(`alarm '${name}': command (pid ${child.pid}) done`);
      else this.note(`alarm '${name}': command (pid ${child.pid}) failed (${signal ? `killed by ${signal}` : `exit status ${code}`})`);
      next();
    });
    // A command that does not read its stdin must not break the master (EPIPE).
    child.stdin!.on('error', () => {});
    child.stdin!.end(line);
  }
}
