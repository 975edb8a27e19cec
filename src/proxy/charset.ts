/**
 * nginx's charset module: `charset` names the response's charset in its Content-Type (for the types in
 * `charset_types`), and when the body's own charset (`source_charset`, or the one a backend declared with
 * `override_charset on`) differs, the body is recoded through a `charset_map` table. Only 8-bit tables:
 * one byte in, one byte out, so lengths and byte ranges stay valid (maps with a utf-8 side are refused at
 * configuration time).
 */
import { Transform, type TransformCallback } from 'node:stream';
import type { Rq } from './request.js';
import type { Pipeline } from './pipeline.js';

const CHARSET_PARAM = /;\s*charset\s*=\s*"?([^";\s]*)"?/i;

/** The Content-Type to send for `type`; sets r.recode when the body must be recoded. Call only when r.conf.charset is set. */
export function charsetType(p: Pipeline, r: Rq, type: string): string {
  r.recode = null;
  const conf = r.conf;
  const dst = conf.charset!;
  const semi = type.indexOf(';');
  const base = semi < 0 ? type : type.slice(0, semi).trimEnd();
  const types = conf.charsetTypes!;
  // text/html is always one of them, as in nginx.
  const lower = base.toLowerCase();
  if (lower !== 'text/html' && !types.has('*') && !types.has(lower)) return type;
  let src = conf.sourceCharset ?? '';
  if (semi >= 0) {
    const m = CHARSET_PARAM.exec(type);
    if (m) {
      // A charset the response already names is kept, unless override_charset says to replace it.
      if (!conf.overrideCharset) return type;
      src = m[1]!;
    }
  }
  if (src !== '' && src.toLowerCase() !== dst.toLowerCase()) {
    const table = conf.charsetMaps?.get(`${src.toLowerCase()}\0${dst.toLowerCase()}`);
    if (table === undefined) {
      p.log(r, 'error', `no "charset_map" between the charsets "${src}" and "${dst}"`);
      return type;
    }
    r.recode = table;
  }
  return `${base}; charset=${dst}`;
}

/** A recoded copy (the source may be a cached file's buffer, never changed in place). */
export function recode(buf: Buffer, table: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(buf.length);
  for (let i = 0; i < buf.length; i++) out[i] = table[buf[i]!]!;
  return out;
}

/** The same, for a streamed file. */
export function recodeStream(table: Uint8Array): Transform {
  return new Transform({
    transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback) {
      cb(null, recode(chunk, table));
    },
  });
}
