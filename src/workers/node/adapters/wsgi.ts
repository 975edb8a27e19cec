/**
 * The WSGI contract, in JavaScript: `application(environ, start_response)`, the guide's app translated.
 *
 * - `environ` has PEP 3333's CGI keys (the uwsgi vars from nginx, or derived from the HTTP request) and
 *   `wsgi.version`, `wsgi.url_scheme`, `wsgi.input` (the request body: a node Readable, async-iterable),
 *   `wsgi.errors` (write(text) goes to the log), `wsgi.multithread`, `wsgi.multiprocess`, `wsgi.run_once`.
 * - `start_response(status, headers, exc_info?)` takes `'200 OK'` and `[[name, value], ...]` and returns
 *   `write(chunk)`.
 * - The app returns an iterable or async iterable of `string | Uint8Array` (strings are sent as UTF-8), or a
 *   Promise of one. A one-chunk array goes out in one write with a Content-Length. An iterable's `close()`
 *   is called at the end, as PEP 3333 says.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { inspect } from 'node:util';
import type { AppHandler } from '../exchange.js';
import type { WorkerLog } from '../log.js';
import { cgiVars, urlScheme } from '../request-info.js';
import { send } from './body.js';

export type Chunk = string | Uint8Array;
export type StartResponse = (status: string, headers: Array<[string, string]>, excInfo?: unknown) => (chunk: Chunk) => boolean;
export type WsgiApp = (environ: Record<string, unknown>, startResponse: StartResponse) => unknown;

const short = (v: unknown): string => {
  const t = inspect(v, { depth: 1, breakLength: Infinity });
  return t.length <= 80 ? t : `${t.slice(0, 77)}...`;
};

function isChunk(c: unknown): c is Chunk {
  return typeof c === 'string' || c instanceof Uint8Array;
}

function badChunk(c: unknown): TypeError {
  return new TypeError(`the app yielded ${short(c)} in its response body; bodies are strings or Uint8Arrays`);
}

export interface WsgiOptions {
  multiprocess: boolean;
  log: WorkerLog;
}

export function wsgiAdapter(app: WsgiApp, opts: WsgiOptions): AppHandler {
  const errors = {
    write: (text: string): void => opts.log.line(text.endsWith('\n') ? text : `${text}\n`),
    writelines: (lines: Iterable<string>): void => {
      for (const l of lines) errors.write(l);
    },
    flush: (): void => opts.log.flush(),
  };

  return async (req: IncomingMessage, res: ServerResponse) => {
    const environ: Record<string, unknown> = cgiVars(req);
    environ['wsgi.version'] = [1, 0];
    environ['wsgi.url_scheme'] = urlScheme(req);
    environ['wsgi.input'] = req;
    environ['wsgi.errors'] = errors;
    environ['wsgi.multithread'] = false;
    environ['wsgi.multiprocess'] = opts.multiprocess;
    environ['wsgi.run_once'] = false;

    let status: string | undefined;
    let headers: Array<[string, string]> = [];
    // Body bytes the app's Content-Length still allows (-1: it gave none). What goes beyond is cut, as nginx
    // cuts an upstream's: sent, it would be read as the start of the next response on a kept connection.
    let remaining = -1;
    let excess = 0;
    const head = (extra?: [string, string]): void => {
      if (res.headersSent) return;
      const flat: string[] = [];
      for (const h of headers) {
        if (!Array.isArray(h) || h.length !== 2) throw new TypeError(`response header ${short(h)} is not a [name, value] pair`);
        const name = String(h[0]);
        const value = String(h[1]);
        if (name.length === 14 && name.toLowerCase() === 'content-length' && /^\d+$/.test(value)) remaining = Number(value);
        flat.push(name, value);
      }
      if (extra) flat.push(extra[0], extra[1]);
      const code = Number(status!.slice(0, 3));
      if (code < 200 || code === 204 || code === 304 || req.method === 'HEAD') remaining = -1;
      res.writeHead(code, status!.slice(4), flat);
    };
    /** The part of `chunk` the Content-Length allows (undefined: none of it). */
    const fit = (chunk: Chunk): Chunk | undefined => {
      if (remaining < 0) return chunk;
      const n = typeof chunk === 'string' ? Buffer.byteLength(chunk) : chunk.byteLength;
      if (n <= remaining) {
        remaining -= n;
        return chunk;
      }
      const kept = remaining;
      excess += n - kept;
      remaining = 0;
      if (kept === 0) return undefined;
      return (typeof chunk === 'string' ? Buffer.from(chunk) : chunk).subarray(0, kept);
    };
    const write = (chunk: Chunk): boolean => {
      if (status === undefined) throw new Error('write() called before start_response()');
      if (!isChunk(chunk)) throw badChunk(chunk);
      head();
      const part = fit(chunk);
      return part === undefined ? true : res.write(part);
    };
    const reportExcess = (): void => {
      if (excess > 0) opts.log.error(`the app gave ${excess} body bytes more than its Content-Length (${req.method} ${req.url}); they were not sent`);
    };
    const startResponse: StartResponse = (s, h, excInfo) => {
      if (excInfo !== undefined && excInfo !== null) {
        if (res.headersSent) throw excInfo;
      } else if (status !== undefined) {
        throw new Error('start_response() called a second time without exc_info');
      }
      if (typeof s !== 'string' || !/^\d{3} /.test(s)) throw new TypeError(`status must look like "200 OK", got ${short(s)}`);
      if (!Array.isArray(h)) throw new TypeError(`response headers must be an array of [name, value] pairs, got ${short(h)}`);
      status = s;
      headers = h;
      return write;
    };

    let result = app(environ, startResponse);
    if (result !== null && typeof result === 'object' && typeof (result as PromiseLike<unknown>).then === 'function') result = await result;
    try {
      if (Array.isArray(result) && result.length <= 1 && status !== undefined && !res.headersSent) {
        // The common case: the whole body at once, with a Content-Length unless the app gave one.
        const chunk: unknown = result.length === 1 ? result[0] : '';
        if (!isChunk(chunk)) throw badChunk(chunk);
        const hasLength = headers.some((h) => Array.isArray(h) && String(h[0]).toLowerCase() === 'content-length');
        head(hasLength ? undefined : ['Content-Length', String(typeof chunk === 'string' ? Buffer.byteLength(chunk) : chunk.byteLength)]);
        const part = hasLength ? fit(chunk) : chunk;
        if (part === undefined) res.end();
        else res.end(part);
        reportExcess();
        return;
      }
      const iterable = result as (AsyncIterable<unknown> & Iterable<unknown>) | null | undefined;
      if (iterable === null || iterable === undefined || (typeof iterable[Symbol.asyncIterator] !== 'function' && typeof iterable[Symbol.iterator] !== 'function') || typeof iterable === 'string') {
        throw new TypeError(`the app returned ${short(result)}, which is not an iterable of strings or Uint8Arrays (return ["..."])`);
      }
      for await (const chunk of iterable) {
        if (!isChunk(chunk)) throw badChunk(chunk);
        if (status === undefined) throw new Error('the app yielded a body chunk before calling start_response()');
        if (chunk.length === 0) continue;
        head();
        const part = fit(chunk);
        if (part === undefined) continue;
        if (!(await send(res, part))) return; // the client went away: the loop's exit closes the iterator
      }
      if (status === undefined) throw new Error('the app returned without calling start_response()');
      head();
      res.end();
      reportExcess();
    } finally {
      const close = (result as { close?: unknown } | null | undefined)?.close;
      if (typeof close === 'function') await close.call(result);
    }
  };
}
