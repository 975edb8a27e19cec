/**
 * The Fetch contract: `fetch(request: Request) => Response | Promise<Response>` (a Hono app, Cloudflare-style
 * `export default { fetch }`). The request body is node's request stream seen as a web stream; the response
 * body is pulled only as fast as the client takes it; `request.signal` aborts when the client leaves.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import { inspect } from 'node:util';
import type { AppHandler } from '../exchange.js';
import { requestUrl } from '../request-info.js';
import { send } from './body.js';

export interface FetchApp {
  fetch(request: Request, ...rest: unknown[]): Response | Promise<Response>;
}

const NO_BODY = new Set(['GET', 'HEAD']);

function toRequest(req: IncomingMessage, res: ServerResponse): Request {
  const headers = new Headers();
  const raw = req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) headers.append(raw[i]!, raw[i + 1]!);
  const method = req.method ?? 'GET';
  const controller = new AbortController();
  res.once('close', () => {
    if (!res.writableFinished) controller.abort(new Error('the client went away'));
  });
  const init: RequestInit & { duplex?: 'half' } = { method, headers, signal: controller.signal };
  if (!NO_BODY.has(method)) {
    init.body = Readable.toWeb(req) as ReadableStream<Uint8Array>;
    init.duplex = 'half';
  }
  return new Request(requestUrl(req), init);
}

/** Resolves on the next macrotask: used to tell a body that is already complete from one still coming. */
const nextTurn = (): Promise<'later'> => new Promise((resolve) => setImmediate(resolve, 'later'));

/**
 * undici keeps what a Response was made from (`new Response('text')`, a Uint8Array, an ArrayBuffer) beside
 * the body stream it builds. Sending that directly skips a stream reader and the turn of the event loop that
 * tells a complete body from one still coming: most of what the Fetch contract cost per request. The slot is
 * found by its description once; with another fetch implementation it is absent and the stream is read.
 */
const STATE = Object.getOwnPropertySymbols(new Response('')).find((s) => s.description === 'state');

function completeBody(response: Response): Uint8Array | string | undefined {
  if (STATE === undefined || response.bodyUsed) return undefined;
  const source: unknown = (response as unknown as Record<symbol, { body?: { source?: unknown } | null } | undefined>)[STATE]?.body?.source;
  if (typeof source !== 'string' && !(source instanceof Uint8Array) && !(source instanceof ArrayBuffer)) return undefined;
  if (response.body?.locked) return undefined;
  return source instanceof ArrayBuffer ? new Uint8Array(source) : source;
}

async function writeResponse(response: Response, res: ServerResponse): Promise<void> {
  const flat: string[] = [];
  for (const [name, value] of response.headers) flat.push(name, value);
  const whole = completeBody(response);
  if (whole !== undefined) {
    if (!response.headers.has('content-length')) flat.push('Content-Length', String(typeof whole === 'string' ? Buffer.byteLength(whole) : whole.byteLength));
    res.writeHead(response.status, response.statusText || undefined, flat);
    res.end(whole);
    return;
  }
  const body = response.body;
  if (body === null) {
    res.writeHead(response.status, response.statusText || undefined, flat);
    res.end();
    return;
  }
  const reader = body.getReader();
  try {
    const first = await reader.read();
    if (first.done) {
      res.writeHead(response.status, response.statusText || undefined, flat);
      res.end();
      return;
    }
    // A body that is already complete (new Response('text')) is sent with a Content-Length, in one write;
    // one still being produced gets its head out now and streams.
    const pending = reader.read();
    const second = await Promise.race([pending, nextTurn()]);
    if (second !== 'later' && second.done) {
      if (!response.headers.has('content-length')) flat.push('Content-Length', String(first.value.byteLength));
      res.writeHead(response.status, response.statusText || undefined, flat);
      res.end(first.value);
      return;
    }
    res.writeHead(response.status, response.statusText || undefined, flat);
    if (!(await send(res, first.value))) return;
    let next = second === 'later' ? await pending : second;
    while (!next.done) {
      if (!(await send(res, next.value))) return;
      next = await reader.read();
    }
    res.end();
  } finally {
    if (!res.writableEnded) reader.cancel().catch(() => {});
  }
}

export function fetchAdapter(app: FetchApp): AppHandler {
  return async (req, res) => {
    const response = await app.fetch(toRequest(req, res));
    if (!(response instanceof Response)) {
      throw new TypeError(`fetch() returned ${inspect(response, { depth: 0 }).slice(0, 80)}, not a Response`);
    }
    await writeResponse(response, res);
  };
}
