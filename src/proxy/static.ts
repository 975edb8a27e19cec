/**
 * Static files: root/alias to a path, index files, autoindex, conditional requests (ETag, Last-Modified,
 * 304/412), byte ranges (206/416) and HEAD. The URI was normalised before location search (no "..", no
 * encoded NUL), so a path built here cannot leave the root. Files are opened once and read from the open
 * descriptor (no stat-then-open race); small files go out in one write, large ones as a stream.
 */
import { createReadStream, type Stats } from 'node:fs';
import { open, readdir, stat, type FileHandle } from 'node:fs/promises';
import { FileCache, fileInfo, type FileInfo } from './filecache.js';
import type { Pipeline } from './pipeline.js';
import type { Rq } from './request.js';
import { escapeUri } from './uri.js';
import { charsetType, recode, recodeStream } from './charset.js';
import { gzipOk } from './gzipstatic.js';
import { subFilterApplies } from './subfilter.js';

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

export function mimeType(r: Rq, path: string): string {
  const slash = path.lastIndexOf('/');
  const dot = path.lastIndexOf('.');
  if (dot > slash + 0 && dot > 0) {
    const ext = path.slice(dot + 1).toLowerCase();
    const t = r.conf.types!.get(ext);
    if (t) return t;
  }
  return r.conf.defaultType!;
}

/** The file system path for the request URI under root or alias. */
export function mapPath(r: Rq, uri: string): string {
  const root = r.conf.root!;
  const base = root.path.eval(r);
  if (root.alias) {
    // In a regex location an alias with variables (captures) is the whole path; a literal one prefixes the URI.
    if (root.aliasOf === '') return root.path.hasVars ? base : base + uri;
    if (uri.startsWith(root.aliasOf)) return base + uri.slice(root.aliasOf.length);
  }
  return base + uri;
}

function errnoStatus(e: NodeJS.ErrnoException): number {
  if (e.code === 'ENOENT' || e.code === 'ENOTDIR' || e.code === 'ENAMETOOLONG' || e.code === 'ELOOP') return 404;
  if (e.code === 'EACCES' || e.code === 'EPERM') return 403;
  return 500;
}

/**
 * A Range header the way nginx's range filter reads it: not "bytes=" is ignored (the whole file); a syntax
 * error or no satisfiable range is 416; more than max_ranges ranges, or ranges adding up to more than the
 * file (overlapping requests), are ignored. Ends are inclusive.
 */
export function parseRanges(h: string, size: number, maxRanges: number | undefined): Array<[number, number]> | 'ignore' | 'unsatisfiable' {
  if (h.length < 6 || h.slice(0, 6).toLowerCase() !== 'bytes=') return 'ignore';
  const out: Array<[number, number]> = [];
  let left = maxRanges ?? Number.POSITIVE_INFINITY;
  let total = 0;
  let p = 6;
  const n = h.length;
  const spaces = (): void => {
    while (p < n && h.charCodeAt(p) === 32) p++;
  };
  const digits = (): number => {
    let v = 0;
    const from = p;
    while (p < n && h.charCodeAt(p) >= 48 && h.charCodeAt(p) <= 57) v = v * 10 + (h.charCodeAt(p++) - 48);
    return p === from ? -1 : v;
  };
  for (;;) {
    let start = 0;
    let end = 0;
    let suffix = false;
    spaces();
    let open = false;
    if (h[p] !== '-') {
      start = digits();
      if (start < 0) return 'unsatisfiable';
      spaces();
      if (h[p] !== '-') return 'unsatisfiable';
      p++;
      spaces();
      if (p >= n || h[p] === ',') {
        end = size;
        open = true;
      }
    } else {
      suffix = true;
      p++;
    }
    if (!open) {
      end = digits();
      if (end < 0) return 'unsatisfiable';
      spaces();
      if (p < n && h[p] !== ',') return 'unsatisfiable';
      if (suffix) {
        start = end < size ? size - end : 0;
        end = size - 1;
      }
      end = end >= size ? size : end + 1;
    }
    if (start < end) {
      out.push([start, end - 1]);
      total += end - start;
      if (left-- === 0) return 'ignore';
    } else if (start === 0) return 'ignore';
    if (h[p++] !== ',') break;
  }
  if (out.length === 0) return 'unsatisfiable';
  if (total > size) return 'ignore';
  return out;
}

export class StaticFiles {
  private readonly cache = new FileCache();

  constructor(private readonly p: Pipeline) {}

  serve(r: Rq): void {
    const method = r.method;
    // POST looks the file up first (404 for a missing one), then is refused, as nginx's static module does.
    if (method !== 'GET' && method !== 'HEAD' && method !== 'POST') {
      this.p.finalize(r, 405);
      return;
    }
    const uri = r.uri;
    if (uri.endsWith('/')) {
      void this.directory(r).catch((e: unknown) => this.failed(r, e));
      return;
    }
    const path = r.filename || mapPath(r, uri);
    const gs = r.conf.gzipStatic;
    if (gs !== undefined && gs !== 'off' && method !== 'POST') {
      this.gzipStatic(r, path, gs);
      return;
    }
    this.lookup(r, path);
  }

  /** gzip_static (gzipstatic.ts): FILE.gz when the client may have it, else FILE as usual. */
  private gzipStatic(r: Rq, path: string, mode: 'on' | 'always'): void {
    const ok = mode === 'always' || gzipOk(r);
    if (!ok && !r.conf.gzipVary) {
      this.lookup(r, path);
      return;
    }
    const gz = path + '.gz';
    this.cache.lookup(gz, r.conf.openFileCacheOn ? r.conf.openFileCacheValidMs! : 0, r.method === 'GET', (e, found) => {
      try {
        if (e || !found) {
          // Anything but "there is none" is worth a line; the plain file is served either way, as nginx does.
          if (e && e.code !== 'ENOENT' && e.code !== 'ENOTDIR' && e.code !== 'ENAMETOOLONG') this.p.log(r, 'error', `open() "${gz}" failed (${e.message})`);
          this.lookup(r, path);
          return;
        }
        if (mode === 'on') r.gzipVary = true;
        if (!ok || found.stats.isDirectory()) {
          this.lookup(r, path);
          return;
        }
        if (!found.stats.isFile()) {
          this.p.log(r, 'error', `"${gz}" is not a regular file`);
          this.p.finalize(r, 404);
          return;
        }
        if (found.content) this.file(r, found.content, found, path, true);
        else void this.openAndServe(r, gz, path).catch((err: unknown) => this.failed(r, err));
      } catch (err) {
        this.failed(r, err);
      }
    });
  }

  private lookup(r: Rq, path: string): void {
    const method = r.method;
    // Only a GET for the whole file reads it into the cache; a HEAD or a Range opens the file (see filecache.ts).
    const wholeBody = method === 'GET' && r.req.headers.range === undefined;
    this.cache.lookup(path, r.conf.openFileCacheOn ? r.conf.openFileCacheValidMs! : 0, wholeBody, (e, found) => {
      // A callback from the file cache: a bug here must end this request, not the worker.
      try {
        this.found(r, path, e, found);
      } catch (err) {
        this.failed(r, err);
      }
    });
  }

  private failed(r: Rq, e: unknown): void {
    this.p.log(r, 'error', `static: ${(e as Error).message}`);
    if (!r.res.headersSent) this.p.finalize(r, 500);
    else r.res.destroy();
  }

  private found(r: Rq, path: string, e: NodeJS.ErrnoException | null, found: FileInfo | undefined): void {
    if (e || !found) {
      const status = e ? errnoStatus(e) : 500;
      if (status !== 404 || r.conf.logNotFound) this.p.log(r, 'error', `open() "${path}" failed (${e?.message})`);
      this.p.finalize(r, status);
      return;
    }
    if (found.stats.isDirectory()) {
      this.p.redirect(r, 301, escapeUri(r.uri + '/') + (r.args ? '?' + r.args : ''));
      return;
    }
    if (r.method === 'POST') {
      this.p.finalize(r, 405);
      return;
    }
    if (found.content) {
      this.file(r, found.content, found, path);
      return;
    }
    void this.openAndServe(r, path).catch((err: unknown) => this.failed(r, err));
  }

  /** A large file: opened now and streamed from the descriptor. */
  private async openAndServe(r: Rq, path: string, gzOf?: string): Promise<void> {
    let fh: FileHandle;
    try {
      fh = await open(Buffer.from(path, 'latin1'), 'r');
    } catch (e) {
      const status = errnoStatus(e as NodeJS.ErrnoException);
      this.p.log(r, 'error', `open() "${path}" failed (${(e as Error).message})`);
      this.p.finalize(r, status);
      return;
    }
    let st: Stats;
    try {
      st = await fh.stat();
    } catch (e) {
      await fh.close();
      throw e;
    }
    if (r.res.destroyed) {
      // The client left while the file was opened: nothing will read the stream.
      await fh.close();
      return;
    }
    if (gzOf !== undefined) this.file(r, fh, fileInfo(st, undefined), gzOf, true);
    else this.file(r, fh, fileInfo(st, undefined), path);
  }

  private async directory(r: Rq): Promise<void> {
    const dir = mapPath(r, r.uri);
    const list = r.conf.index!;
    for (let i = 0; i < list.length; i++) {
      const name = list[i]!.eval(r);
      // The last index may be an absolute URI: nginx redirects to it without looking on disk.
      if (i === list.length - 1 && name.startsWith('/')) {
        this.p.internalRedirect(r, name);
        return;
      }
      const full = name.startsWith('/') ? mapPath(r, name) : dir + name;
      try {
        const st = await stat(Buffer.from(full, 'latin1'));
        if (st.isDirectory() && !name.startsWith('/')) continue;
        this.p.internalRedirect(r, name.startsWith('/') ? name : r.uri + name + (r.args ? '?' + r.args : ''));
        return;
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === 'ENOENT') continue;
        if (code === 'ENOTDIR') {
          this.p.finalize(r, 404);
          return;
        }
        this.p.log(r, 'error', `"${full}" is forbidden (${(e as Error).message})`);
        this.p.finalize(r, 403);
        return;
      }
    }
    let st: Stats;
    try {
      st = await stat(Buffer.from(dir, 'latin1'));
    } catch (e) {
      const status = errnoStatus(e as NodeJS.ErrnoException);
      this.p.log(r, 'error', `"${dir}" is not found (${(e as Error).message})`);
      this.p.finalize(r, status);
      return;
    }
    if (!st.isDirectory()) {
      this.p.finalize(r, 404);
      return;
    }
    if (r.conf.autoindex && r.method !== 'POST') {
      await this.autoindex(r, dir);
      return;
    }
    this.p.log(r, 'error', `directory index of "${dir}" is forbidden`);
    this.p.finalize(r, 403);
  }

  /**
   * Answers with the file: 412/304 for preconditions, 206/416 for ranges, else 200. Headers in nginx's
   * order: Content-Type, Content-Length, Last-Modified, ETag, then Content-Range (206) or Accept-Ranges (a
   * whole 200: only such a response advertises ranges).
   */
  /** `gz`: the body is `path`.gz (gzip_static): its type is path's, it is sent whole, with Content-Encoding. */
  private file(r: Rq, src: FileHandle | Buffer, info: FileInfo, path: string, gz = false): void {
    const fh = Buffer.isBuffer(src) ? undefined : (src as FileHandle);
    const close = (): void => void fh?.close();
    const req = r.req;
    const size = info.stats.size;
    const mtimeMs = info.mtimeMs;
    const etag = r.conf.etag ? info.etag : undefined;

    // Preconditions: If-Match / If-Unmodified-Since → 412; If-None-Match / If-Modified-Since → 304.
    const ifMatch = req.headers['if-match'];
    const ifUnmod = req.headers['if-unmodified-since'];
    if ((ifMatch !== undefined && !etagListMatch(ifMatch, etag, true)) || (ifMatch === undefined && ifUnmod !== undefined && !(Date.parse(ifUnmod) >= mtimeMs))) {
      close();
      this.p.finalize(r, 412);
      return;
    }
    const inm = req.headers['if-none-match'];
    const ims = req.headers['if-modified-since'];
    let notModified = false;
    if (inm !== undefined) notModified = etagListMatch(inm, etag, false);
    else if (ims !== undefined && r.conf.ifModifiedSince !== 'off') {
      const t = Date.parse(ims);
      notModified = r.conf.ifModifiedSince === 'exact' ? t === mtimeMs : t >= mtimeMs;
    }
    if (notModified) {
      // The validators only: a 304 has no body, so no type, length or ranges (as nginx sends it).
      close();
      this.p.sendHead(r, 304, etag ? ['Last-Modified', info.lastModified, 'ETag', etag] : ['Last-Modified', info.lastModified]);
      r.res.end();
      return;
    }

    let type = mimeType(r, path);
    if (r.conf.charset) type = charsetType(this.p, r, type);
    let start = 0;
    let end = size - 1;
    let contentRange: string | undefined;
    const range = req.headers.range;
    // max_ranges 0 turns ranges off before the header is even read.
    // sub_filter drops the length, so nginx's range filter leaves such a response whole.
    const filtered = r.conf.subFilters !== undefined && subFilterApplies(r.conf, type, r);
    if (range !== undefined && !r.forceStatus && r.conf.maxRanges !== 0 && !gz && !filtered) {
      const ifRange = req.headers['if-range'] as string | undefined;
      // An empty If-Range is no condition; a date compares with the Last-Modified the response will carry
      // (an add_header Last-Modified replaces the file's, an empty one removes it), as nginx compares.
      let rangeApplies = ifRange === undefined || ifRange === '';
      if (!rangeApplies) {
        if (ifRange!.startsWith('"') || ifRange!.startsWith('W/')) rangeApplies = ifRange === etag;
        else {
          let lm = mtimeMs;
          const set = r.conf.addHeaders!.find((h) => h.single === 'last-modified');
          if (set !== undefined) {
            const v = set.value.eval(r);
            lm = v === '' ? Number.NaN : Date.parse(v);
          }
          rangeApplies = Date.parse(ifRange!) === lm;
        }
      }
      if (rangeApplies) {
        const ranges = parseRanges(range, size, r.conf.maxRanges);
        if (ranges === 'unsatisfiable') {
          close();
          this.p.finalize(r, 416, undefined, ['Content-Range', `bytes */${size}`]);
          return;
        }
        if (ranges !== 'ignore') {
          if (ranges.length > 1) {
            this.multipart(r, src, type, info, etag, ranges, size);
            return;
          }
          [start, end] = ranges[0]!;
          contentRange = `bytes ${start}-${end}/${size}`;
        }
      }
    }
    const length = end - start + 1;
    // A file sent as an error page (error_page with another status) has no Last-Modified and offers no ranges.
    const whole200 = !r.forceStatus || r.forceStatus === 200;
    const headers: string[] = whole200 ? ['Content-Type', type, 'Content-Length', String(length), 'Last-Modified', info.lastModified] : ['Content-Type', type, 'Content-Length', String(length)];
    if (r.gzipVary && r.conf.gzipVary) headers.push('Vary', 'Accept-Encoding');
    if (etag) headers.push('ETag', etag);
    if (gz) headers.push('Content-Encoding', 'gzip');
    else if (contentRange !== undefined) headers.push('Content-Range', contentRange);
    else if (whole200 && !filtered) headers.push('Accept-Ranges', 'bytes');
    this.p.sendHead(r, contentRange !== undefined ? 206 : 200, headers);
    const res = r.res;
    if (r.method === 'HEAD' || length <= 0) {
      close();
      res.end();
      return;
    }
    r.bodyBytesSent = length;
    if (!fh) {
      const buf = src as Buffer;
      const part = start === 0 && length === buf.length ? buf : buf.subarray(start, end + 1);
      res.end(r.recode ? recode(part, r.recode) : part);
      return;
    }
    const stream = createReadStream('', { fd: fh, start, end, highWaterMark: 256 * 1024, autoClose: true });
    stream.on('error', () => res.destroy());
    res.on('close', () => stream.destroy());
    if (r.recode) stream.pipe(recodeStream(r.recode)).pipe(res);
    else stream.pipe(res);
  }

  private multipart(r: Rq, src: FileHandle | Buffer, type: string, info: FileInfo, etag: string | undefined, ranges: Array<[number, number]>, size: number): void {
    const fh = Buffer.isBuffer(src) ? undefined : (src as FileHandle);
    const boundary = String(Date.now()).padStart(20, '0');
    const parts: Buffer[] = [];
    const heads = ranges.map(([s, e]) => Buffer.from(`\r\n--${boundary}\r\nContent-Type: ${type}\r\nContent-Range: bytes ${s}-${e}/${size}\r\n\r\n`));
    const tail = Buffer.from(`\r\n--${boundary}--\r\n`);
    let total = tail.length;
    ranges.forEach(([s, e], i) => (total += heads[i]!.length + (e - s + 1)));
    const h = ['Content-Type', `multipart/byteranges; boundary=${boundary}`, 'Content-Length', String(total), 'Last-Modified', info.lastModified];
    if (etag) h.push('ETag', etag);
    this.p.sendHead(r, 206, h);
    if (r.method === 'HEAD') {
      void fh?.close();
      r.res.end();
      return;
    }
    r.bodyBytesSent = total;
    void (async () => {
      try {
        for (let i = 0; i < ranges.length; i++) {
          const [s, e] = ranges[i]!;
          let buf: Buffer;
          if (fh) {
            buf = Buffer.allocUnsafe(e - s + 1);
            await fh.read(buf, 0, buf.length, s);
          } else buf = (src as Buffer).subarray(s, e + 1);
          parts.push(heads[i]!, r.recode ? recode(buf, r.recode) : buf);
        }
        parts.push(tail);
        r.res.end(Buffer.concat(parts));
      } catch {
        r.res.destroy();
      } finally {
        await fh?.close();
      }
    })();
  }

  private async autoindex(r: Rq, dir: string): Promise<void> {
    const names = await readdir(Buffer.from(dir, 'latin1'), { encoding: 'buffer' });
    const entries: Array<{ name: string; dir: boolean; size: number; mtime: Date }> = [];
    for (const nb of names) {
      const name = nb.toString('latin1');
      if (name.startsWith('.')) continue;
      try {
        const st = await stat(Buffer.concat([Buffer.from(dir, 'latin1'), nb]));
        entries.push({ name, dir: st.isDirectory(), size: st.size, mtime: st.mtime });
      } catch {
        // vanished or unreadable: left out, as nginx does
      }
    }
    entries.sort((a, b) => (a.dir === b.dir ? (a.name < b.name ? -1 : a.name > b.name ? 1 : 0) : a.dir ? -1 : 1));
    let body: string;
    let type: string;
    const format = r.conf.autoindexFormat;
    if (format === 'json' || format === 'jsonp') {
      // jsonp: wrapped in the function $arg_callback names (nginx refuses a name that is not [A-Za-z0-9_.]).
      const callback = format === 'jsonp' ? argValue(r.args, 'callback') : '';
      if (!/^[A-Za-z0-9_.]*$/.test(callback)) {
        this.p.log(r, 'error', `client sent invalid callback "${callback}"`);
        this.p.finalize(r, 400);
        return;
      }
      type = callback ? 'application/javascript' : 'application/json';
      body = '[\r\n' + entries.map((e) => `{ "name":${JSON.stringify(e.name)}, "type":"${e.dir ? 'directory' : 'file'}", "mtime":"${e.mtime.toUTCString()}"${e.dir ? '' : `, "size":${e.size}`} }`).join(',\r\n') + '\r\n]';
      if (callback) body = `/* callback */\r\n${callback}(${body});`;
    } else if (format === 'xml') {
      type = 'text/xml; charset=utf-8';
      const iso = (d: Date): string => d.toISOString().replace(/\.\d+Z$/, 'Z');
      body = '<?xml version="1.0"?>\r\n<list>\r\n' + entries.map((e) => (e.dir
        ? `<directory mtime="${iso(e.mtime)}">${xmlEscape(e.name)}</directory>\r\n`
        : `<file mtime="${iso(e.mtime)}" size="${e.size}">${xmlEscape(e.name)}</file>\r\n`)).join('') + '</list>\r\n';
    } else {
      type = 'text/html';
      const title = htmlEscape(r.uri);
      const rows = entries.map((e) => {
        const n = e.name + (e.dir ? '/' : '');
        const href = hrefEscape(e.name) + (e.dir ? '/' : '');
        const shown = n.length > 50 ? n.slice(0, 47) + '..>' : n;
        const pad = ' '.repeat(Math.max(1, 51 - shown.length));
        const size = e.dir ? '-' : r.conf.autoindexExactSize ? String(e.size) : humanSize(e.size);
        return `<a href="${href}">${htmlEscape(shown)}</a>${pad}${dateStr(e.mtime, r.conf.autoindexLocaltime === true)} ${size.padStart(19)}`;
      });
      body = `<html>\r\n<head><title>Index of ${title}</title></head>\r\n<body>\r\n<h1>Index of ${title}</h1><hr><pre><a href="../">../</a>\r\n${rows.map((x) => x + '\r\n').join('')}</pre><hr></body>\r\n</html>\r\n`;
    }
    if (r.conf.charset) type = charsetType(this.p, r, type);
    let buf: Buffer = Buffer.from(body, 'latin1');
    if (r.recode) buf = recode(buf, r.recode);
    this.p.sendHead(r, 200, ['Content-Type', type, 'Content-Length', String(buf.length)]);
    r.bodyBytesSent = buf.length;
    r.res.end(r.method === 'HEAD' ? undefined : buf);
  }
}

function etagListMatch(header: string, etag: string | undefined, strong: boolean): boolean {
  if (header.trim() === '*') return true;
  if (!etag) return false;
  for (let t of header.split(',')) {
    t = t.trim();
    if (!strong && t.startsWith('W/')) t = t.slice(2);
    if (t === etag) return true;
  }
  return false;
}

/** A name in a link of the html index: every byte but letters, digits and -._~ as %XX, as nginx 1.22. */
function hrefEscape(name: string): string {
  let out = '';
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    const plain = (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 45 || c === 46 || c === 95 || c === 126;
    out += plain ? name[i] : '%' + (c < 16 ? '0' : '') + c.toString(16).toUpperCase();
  }
  return out;
}

function xmlEscape(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** The raw (not decoded) value of the first query argument `name`, as nginx's $arg_ gives it. */
function argValue(args: string, name: string): string {
  for (const part of args.split('&')) {
    const eq = part.indexOf('=');
    if ((eq < 0 ? part : part.slice(0, eq)).toLowerCase() === name) return eq < 0 ? '' : part.slice(eq + 1);
  }
  return '';
}

function htmlEscape(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

function humanSize(n: number): string {
  if (n < 1024) return String(n);
  if (n < 1024 * 1024) return Math.round(n / 1024) + 'K';
  if (n < 1024 * 1024 * 1024) return Math.round(n / 1024 / 1024) + 'M';
  return Math.round(n / 1024 / 1024 / 1024) + 'G';
}

function dateStr(d: Date, local: boolean): string {
  const p = (n: number) => (n < 10 ? '0' + n : String(n));
  return local
    ? `${p(d.getDate())}-${MONTHS[d.getMonth()]}-${d.getFullYear()} ${p(d.getHours())}:${p(d.getMinutes())}`
    : `${p(d.getUTCDate())}-${MONTHS[d.getUTCMonth()]}-${d.getUTCFullYear()} ${p(d.getUTCHours())}:${p(d.getUTCMinutes())}`;
}
