/**
 * gzip: when a response qualifies (gzip on, the client accepts gzip, status 200/403/404, a type in
 * gzip_types, long enough, not already encoded, not from a proxy unless gzip_proxied any), its headers are
 * adjusted (Content-Encoding, no Content-Length or Accept-Ranges, a weak ETag, Vary) and its body is sent
 * through zlib. Compression runs in libuv's thread pool; backpressure is passed through to the writer.
 */
import { createGzip, type Gzip } from 'node:zlib';
import type { ServerResponse } from 'node:http';
import type { Rq } from './request.js';

function acceptsGzip(h: string | undefined): boolean {
  if (!h) return false;
  for (const part of h.toLowerCase().split(',')) {
    const [coding, ...params] = part.trim().split(';');
    if (coding !== 'gzip' && coding !== '*') continue;
    const q = params.map((p) => p.trim()).find((p) => p.startsWith('q='));
    if (q && Number(q.slice(2)) === 0) continue;
    return true;
  }
  return false;
}

/** Decides on gzip for this response; when it applies, edits `headers` in place and wraps the response. */
export function applyGzip(r: Rq, status: number, headers: string[]): void {
  const c = r.conf;
  if (!c.gzip || (status !== 200 && status !== 403 && status !== 404)) return;
  const req = r.req;
  if (!acceptsGzip(req.headers['accept-encoding'] as string | undefined)) return;
  if (c.gzipHttpVersion === '1.1' && req.httpVersionMinor === 0 && req.httpVersionMajor === 1) return;
  if (req.headers.via !== undefined && c.gzipProxied !== 'any') return;
  const ua = req.headers['user-agent'];
  if (ua && c.gzipDisable!.some((re) => re.test(ua))) return;
  let type = '';
  let length = -1;
  for (let i = 0; i < headers.length; i += 2) {
    const k = headers[i]!.toLowerCase();
    if (k === 'content-encoding') return;
    if (k === 'content-type') type = headers[i + 1]!.split(';')[0]!.trim().toLowerCase();
    else if (k === 'content-length') length = Number(headers[i + 1]);
  }
  const types = c.gzipTypes!;
  if (!types.has('*') && !types.has(type)) return;
  if (length >= 0 && length < c.gzipMinLength!) return;
  // Rewrite the headers: the length is unknown once compressed, ranges no longer apply, the ETag is weak.
  const out: string[] = [];
  for (let i = 0; i < headers.length; i += 2) {
    const k = headers[i]!.toLowerCase();
    if (k === 'content-length' || k === 'accept-ranges') continue;
    let v = headers[i + 1]!;
    if (k === 'etag' && !v.startsWith('W/')) v = 'W/' + v;
    out.push(headers[i]!, v);
  }
  out.push('Content-Encoding', 'gzip');
  if (c.gzipVary) out.push('Vary', 'Accept-Encoding');
  headers.length = 0;
  headers.push(...out);
  wrap(r.res, createGzip({ level: c.gzipCompLevel }));
}

/** Routes the response's body writes through `gz`; the compressed bytes go out through the real methods. */
function wrap(res: ServerResponse, gz: Gzip): void {
  const write = res.write.bind(res) as (chunk: Buffer) => boolean;
  const end = res.end.bind(res) as (chunk?: Buffer) => ServerResponse;
  gz.on('data', (chunk: Buffer) => {
    if (!write(chunk)) {
      gz.pause();
      res.once('drain', () => gz.resume());
    }
  });
  gz.on('end', () => end());
  gz.on('drain', () => res.emit('drain'));
  res.on('close', () => gz.destroy());
  const toBuffer = (chunk: unknown): Buffer | undefined =>
    chunk === undefined || chunk === null || typeof chunk === 'function' ? undefined : Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk), 'latin1');
  (res as unknown as { write: (c: unknown) => boolean }).write = (chunk: unknown) => {
    const b = toBuffer(chunk);
    return b ? gz.write(b) && !res.writableNeedDrain : true;
  };
  (res as unknown as { end: (c?: unknown) => ServerResponse }).end = (chunk?: unknown) => {
    const b = toBuffer(chunk);
    if (b) gz.end(b);
    else gz.end();
    return res;
  };
}
