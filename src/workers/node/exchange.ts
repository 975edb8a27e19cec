/**
 * One place for what every request goes through, whatever its transport (uwsgi or HTTP) and its app
 * contract: counting, the request line in the log, and the app's failures (a 500 with the stack in the log,
 * or a cut response once the head is out). The transports hand node's (req, res) to `dispatch`.
 *
 * Hot path: one small record per request, listeners that are created once, nothing formatted when
 * request logging is off, and no syscall (the scoreboard is written in bulk, log lines are batched).
 */
import { ServerResponse, type IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { inspect } from 'node:util';
import { ctime, logWanted, type WorkerLog } from './log.js';
import { staticHead, type StaticFile, type StaticFiles } from '../../static/files.js';
import { compileLogFormat, type LogContext } from './logformat.js';
import { pathInfo, remoteAddr, uwsgiVars } from './request-info.js';
import type { WorkerCounters } from './scoreboard.js';
import type { HeaderEdit, LogWhen } from '../../config/resolve.js';

/** A loaded app, whatever its contract: called with node's request and response. May return a promise. */
export type AppHandler = (req: IncomingMessage, res: ServerResponse) => unknown;

class Record {
  done = false;
  constructor(
    readonly start: number,
    readonly written0: number,
  ) {}
}

type Tracked = ServerResponse & { _header?: string | null };

/** What a thrown value looks like in the log: the stack of an Error, else the value itself. */
export function describeError(err: unknown): string {
  if (err instanceof Error && typeof err.stack === 'string') return err.stack;
  return `thrown value: ${inspect(err)}`;
}

/**
 * A writeHead that applies add-header / del-header. node calls writeHead for every head, also the implicit one
 * of a first write() or end(): the headers given to it are set first (as node merges them), then the names to
 * remove are removed and the added headers appended.
 */
function editedWriteHead(edit: HeaderEdit): ServerResponse['writeHead'] {
  const original = ServerResponse.prototype.writeHead as (this: ServerResponse, statusCode: number, message?: string) => ServerResponse;
  return function (this: ServerResponse, statusCode: number, reason?: unknown, obj?: unknown) {
    let headers = obj;
    let message: string | undefined;
    if (typeof reason === 'string') message = reason;
    else headers = reason;
    if (Array.isArray(headers)) {
      if (headers.length > 0 && Array.isArray(headers[0])) for (const [k, v] of headers as Array<[string, string]>) this.appendHeader(k, v);
      else for (let i = 0; i + 1 < headers.length; i += 2) this.appendHeader(String(headers[i]), headers[i + 1] as string);
    } else if (headers !== undefined && headers !== null) {
      for (const [k, v] of Object.entries(headers as { [name: string]: string | string[] | number | undefined })) if (v !== undefined) this.setHeader(k, v);
    }
    for (const name of edit.del) this.removeHeader(name);
    for (const [k, v] of edit.add) this.appendHeader(k, v);
    return message === undefined ? original.call(this, statusCode) : original.call(this, statusCode, message);
  } as ServerResponse['writeHead'];
}

export interface ExchangeOptions {
  pid: number;
  logRequests: boolean;
  /** With disable-logging, only the requests these conditions name are logged (log-4xx and friends). */
  logWhen: LogWhen | undefined;
  /** log-micros: `in N micros` in the default line. */
  logMicros: boolean;
  /** %(ftime)'s strftime format (logformat-strftime); undefined: %(ftime) is %(ltime). */
  ftimeFormat?: string;
  /** add-header / del-header, applied to every response head (the app's, static files', the 500 of an app error). */
  headers: HeaderEdit | undefined;
  /** log-x-forwarded-for: the address in request lines is the first of X-Forwarded-For, when there is one. */
  logXForwardedFor: boolean;
  /** log-format: request lines from this template instead of uWSGI's default. */
  logFormat: string | undefined;
  /** static-map and friends: a request for a mapped file is answered from it, not by the app. */
  staticFiles: StaticFiles | undefined;
  workerId: number;
  /** Send the stack of an app error to the client (catch-exceptions; development only). */
  catchExceptions: boolean;
  /** max-requests for this worker (0: never), and what to do when it is reached. */
  maxRequests: number;
  onMaxRequests: () => void;
}

export class Exchanges implements WorkerCounters {
  requests = 0;
  exceptions = 0;
  tx = 0;
  rtTotalUs = 0;
  inFlight = 0;
  lastEndMs = 0;
  /** Requests of the other workers, as the scoreboard last told. */
  othersTotal = 0;
  /** Set by `stop()`: responses say Connection: close, and each finished one calls `onSettled`. */
  stopping = false;
  onSettled: (() => void) | undefined;
  /**
   * Responses in progress and their records, in start order (a stop tells those not yet started to close
   * their connection; the oldest is harakiri's). A Map rather than a property on node's response object:
   * adding one would give every ServerResponse a second shape in node's own hot code.
   */
  private readonly live = new Map<ServerResponse, Record>();

  private readonly onClose: (this: ServerResponse) => void;
  /** Set on each response when add-header / del-header are given (undefined, the common case, costs nothing). */
  private readonly writeHead: ServerResponse['writeHead'] | undefined;
  private readonly format: ((c: LogContext) => string) | undefined;

  constructor(
    private readonly app: AppHandler,
    private readonly log: WorkerLog,
    private readonly opts: ExchangeOptions,
  ) {
    this.format = opts.logFormat === undefined ? undefined : compileLogFormat(opts.logFormat, opts.ftimeFormat);
    const self = this;
    if (opts.headers !== undefined) this.writeHead = editedWriteHead(opts.headers);
    // node emits 'close' on every response, after 'finish' when it was complete: one listener tells both.
    this.onClose = function (this: ServerResponse) {
      self.complete(this as Tracked, this.writableFinished);
    };
  }

  /** The oldest request in progress (responses are kept in the order they started), for the scoreboard. */
  oldest(): { startMs: number; line: string } | undefined {
    for (const [res, rec] of this.live) {
      return { startMs: performance.timeOrigin + rec.start, line: `${res.req.method ?? ''} ${res.req.url ?? ''}` };
    }
    return undefined;
  }

  /** The worker stops: keep-alive connections close after the response each one is busy with. */
  stop(onSettled: () => void): void {
    this.stopping = true;
    this.onSettled = onSettled;
    for (const res of this.live.keys()) if (!res.headersSent) res.shouldKeepAlive = false;
  }

  /** Bytes sent are counted per connection, when it closes (not per request). */
  countConnection(socket: Socket): void {
    socket.once('close', () => {
      this.tx += socket.bytesWritten;
    });
  }

  dispatch(req: IncomingMessage, res: ServerResponse): void {
    // socket.bytesWritten walks the socket's write queue: read only when a request line will need it.
    this.live.set(res, new Record(performance.now(), this.opts.logRequests ? (req.socket?.bytesWritten ?? 0) : 0));
    this.inFlight++;
    res.on('close', this.onClose);
    if (this.writeHead !== undefined) res.writeHead = this.writeHead;
    if (this.stopping) res.shouldKeepAlive = false;
    const files = this.opts.staticFiles;
    if (files !== undefined) {
      const path = pathInfo(req);
      if (files.mayServe(req.method ?? 'GET', path)) {
        void this.serveStatic(files, path, req, res);
        return;
      }
    }
    this.callApp(req, res);
  }

  /** Answers from a static file when one is found (logged and counted like any response); else the app does. */
  private async serveStatic(files: StaticFiles, path: string, req: IncomingMessage, res: ServerResponse): Promise<void> {
    let file: StaticFile | undefined;
    try {
      file = await files.find(path, req.url ?? '', req.headers['accept-encoding']);
    } catch (err) {
      this.log.error(`static lookup of ${path} failed: ${(err as Error).message}; passed to the app`);
    }
    if (file === undefined) return this.callApp(req, res);
    const handle = file.handle;
    if (res.destroyed) {
      await handle.close();
      return;
    }
    const { status, headers } = staticHead(file, req.headers['if-modified-since']);
    res.writeHead(status, headers);
    if (status !== 200 || req.method === 'HEAD' || file.size === 0) {
      res.end();
      await handle.close();
      return;
    }
    const size = file.size;
    const stream = handle.createReadStream({ start: 0, end: size - 1 });
    let sent = 0;
    stream.on('data', (chunk) => {
      sent += chunk.length;
    });
    // A file that shrank ends early: the Content-Length already sent cannot be honoured, the response is cut.
    stream.on('end', () => {
      if (sent !== size) res.destroy();
    });
    stream.on('error', () => res.destroy());
    res.on('close', () => stream.destroy());
    stream.pipe(res);
  }

  private callApp(req: IncomingMessage, res: ServerResponse): void {
    try {
      const r = this.app(req, res) as PromiseLike<unknown> | undefined;
      if (r !== undefined && r !== null && typeof r.then === 'function') {
        r.then(undefined, (err: unknown) => this.appError(err, req, res));
      }
    } catch (err) {
      this.appError(err, req, res);
    }
  }

  /** An app error: 500 with the stack in the log, or, once the head is out, the response is cut. */
  appError(err: unknown, req: IncomingMessage, res: ServerResponse): void {
    this.exceptions++;
    const where = `${req.method ?? ''} ${req.url ?? ''}`;
    if (res.headersSent || res.destroyed || res.writableEnded) {
      this.log.error(`exception in the app after the response started (${where}); response cut:\n${describeError(err)}`);
      res.destroy();
      return;
    }
    this.log.error(`exception in the app (${where}), answered 500:\n${describeError(err)}`);
    for (const name of res.getHeaderNames()) res.removeHeader(name);
    const body = this.opts.catchExceptions ? `${describeError(err)}\n` : 'Internal Server Error\n';
    res.writeHead(500, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': Buffer.byteLength(body) });
    res.end(body);
  }

  private complete(res: Tracked, finished: boolean): void {
    const rec = this.live.get(res);
    if (rec === undefined || rec.done) return;
    rec.done = true;
    const req = res.req;
    const end = performance.now();
    const usec = (end - rec.start) * 1000;
    this.requests++;
    this.rtTotalUs += usec;
    this.live.delete(res);
    this.inFlight--;
    this.lastEndMs = performance.timeOrigin + end;
    if (!finished) {
      this.log.error(`client went away before the response was complete (${req.method ?? ''} ${req.url ?? ''})`);
    } else if (this.opts.logRequests) {
      const socket = req.socket;
      this.logRequest(req, res, rec, usec, socket ? socket.bytesWritten - rec.written0 : 0);
    }
    if (this.stopping) this.onSettled?.();
    else if (this.requests === this.opts.maxRequests) {
      this.log.error(`recycling after ${this.requests} requests (max-requests)`);
      this.opts.onMaxRequests();
    }
  }

  private logRequest(req: IncomingMessage, res: Tracked, rec: Record, usec: number, bytes: number): void {
    const head = res._header ?? '';
    let headers = 0;
    for (let i = head.indexOf('\r\n'); i !== -1; i = head.indexOf('\r\n', i + 2)) headers++;
    if (headers >= 2) headers -= 2; // the status line and the blank line
    const body = bytes > head.length ? bytes - head.length : 0;
    const when = this.opts.logWhen;
    if (when !== undefined && !logWanted(when, res.statusCode, usec, body)) return;
    let nvars = 0;
    let vbytes = 0;
    let proto = `HTTP/${req.httpVersion}`;
    const vars = uwsgiVars(req);
    if (vars) {
      nvars = vars.length;
      for (const [k, v] of vars) {
        vbytes += 4 + k.length + v.length;
        if (k === 'SERVER_PROTOCOL') proto = v;
      }
    } else {
      // What nginx would send for it: the request's CGI vars and one var per header.
      const raw = req.rawHeaders;
      nvars = 10 + raw.length / 2;
      vbytes = 4 * nvars + 140 + 2 * (req.url?.length ?? 0);
      for (let i = 0; i < raw.length; i += 2) vbytes += 5 + raw[i]!.length + raw[i + 1]!.length;
    }
    const total = this.othersTotal + this.requests;
    let addr = remoteAddr(req);
    if (this.opts.logXForwardedFor) {
      const xff = req.headers['x-forwarded-for'];
      if (typeof xff === 'string' && xff !== '') addr = xff.split(',')[0]!.trim();
    }
    if (this.format) {
      const c: LogContext = {
        req, res, addr, startMs: performance.timeOrigin + rec.start, usec, bodyBytes: body, headerBytes: head.length,
        headerCount: headers, nvars, vbytes, pid: this.opts.pid, wid: this.opts.workerId,
      };
      this.log.request(`${this.format(c)}\n`);
      return;
    }
    this.log.request(
      `[pid: ${this.opts.pid}|app: 0|req: ${this.requests}/${total}] ${addr} () {${nvars} vars in ${vbytes} bytes} ` +
        `[${ctime(performance.timeOrigin + rec.start)}] ${req.method ?? ''} ${req.url ?? ''} => generated ${body} bytes in ${this.opts.logMicros ? `${Math.floor(usec)} micros` : `${Math.floor(usec / 1000)} msecs`} ` +
        `(${proto} ${res.statusCode}) ${headers} headers in ${head.length} bytes (1 switches on core 0)\n`,
    );
  }
}
