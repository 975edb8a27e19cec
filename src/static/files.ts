/**
 * Finds the file a request names under the static-map family of options (docs/static-files.md) and builds
 * its response head. Used by the HTTP router, which then sends the bytes without any worker. Lookups are
 * asynchronous (the event loop never waits on the disk); a request under no mount costs prefix checks only.
 */
import { existsSync, readFileSync, type Stats } from 'node:fs';
import { open, realpath, stat, type FileHandle } from 'node:fs/promises';
import { BUILTIN_MIME_TYPES } from '../proxy/conf/builtin-files.js';
import type { ExpiresRule, StaticSettings } from './config.js';

/** A file found for a request: open, with the facts its response head is made of. */
export interface StaticFile {
  handle: FileHandle;
  size: number;
  mtimeMs: number;
  type: string;
  /** The bytes are FILE.gz's, sent with Content-Encoding: gzip. */
  gzip: boolean;
  /** A gzip option covers the file: answers vary with Accept-Encoding. */
  vary: boolean;
  /** The Expires value, when a rule matched. */
  expires: string | undefined;
}

const DEFAULT_MIME_FILE = '/etc/mime.types';

/** Reads mime.types files (`type ext ext ...` per line) into an extension → type map; later files win. */
export function loadMimeTypes(files: readonly string[]): Map<string, string> {
  const types = new Map<string, string>();
  const list = files.length > 0 ? files : existsSync(DEFAULT_MIME_FILE) ? [DEFAULT_MIME_FILE] : [];
  if (list.length === 0) {
    for (const [type, exts] of BUILTIN_MIME_TYPES) for (const ext of exts.split(' ')) types.set(ext, type);
    return types;
  }
  for (const file of list) {
    for (const line of readFileSync(file, 'utf8').split('\n')) {
      const fields = line.replace(/#.*/, '').trim().split(/\s+/);
      if (fields.length < 2) continue;
      for (let i = 1; i < fields.length; i++) types.set(fields[i]!.toLowerCase(), fields[0]!);
    }
  }
  return types;
}

interface CompiledRule {
  rule: ExpiresRule;
  regex: RegExp | undefined;
}

/** Whether the client's Accept-Encoding allows gzip (listed, and not with q=0). */
function acceptsGzip(header: string | undefined): boolean {
  if (header === undefined) return false;
  for (const part of header.split(',')) {
    const [coding, ...params] = part.trim().split(';');
    if (coding!.trim().toLowerCase() !== 'gzip') continue;
    for (const p of params) {
      const m = /^\s*q\s*=\s*([\d.]+)\s*$/i.exec(p);
      if (m && Number(m[1]) === 0) return false;
    }
    return true;
  }
  return false;
}

const isUnder = (path: string, root: string): boolean => path === root || path.startsWith(root.endsWith('/') ? root : `${root}/`);

export class StaticFiles {
  /** Every path can be static (check-static): no prefix check can rule a request out. */
  private readonly everyPath: boolean;
  private readonly mime: Map<string, string>;
  private readonly rules: CompiledRule[];
  private readonly gzipRegex: RegExp[];
  /** Real paths of the mount roots and static-safe directories, resolved once (on first use). */
  private readonly realRoots = new Map<string, string>();
  private realSafe: string[] | undefined;

  constructor(
    private readonly settings: StaticSettings,
    private readonly log: (line: string) => void,
  ) {
    this.everyPath = settings.mounts.some((m) => m.mount === '');
    this.mime = loadMimeTypes(settings.mimeFiles);
    this.rules = settings.expires.map((rule) => ({ rule, regex: rule.match === 'type' ? undefined : new RegExp(rule.pattern) }));
    this.gzipRegex = settings.gzipRegex.map((r) => new RegExp(r));
  }

  /** Cheap first test, per request: can `path` (decoded) be under a mount at all? */
  mayServe(method: string, path: string): boolean {
    if (method !== 'GET' && method !== 'HEAD') return false;
    if (this.everyPath) return true;
    for (const m of this.settings.mounts) if (mountMatches(m.mount, path)) return true;
    return false;
  }

  /**
   * The file for a GET or HEAD of `path` (decoded, as PATH_INFO), or undefined: the app answers. `uri` is the
   * request URI (for static-expires-uri). The caller closes the handle.
   */
  async find(path: string, uri: string, acceptEncoding: string | undefined): Promise<StaticFile | undefined> {
    if (path.includes('\0')) return undefined;
    for (const ext of this.settings.skipExt) if (path.endsWith(ext)) return undefined;
    for (const m of this.settings.mounts) {
      if (m.mount !== '' && !mountMatches(m.mount, path)) continue;
      // A mount written with a trailing slash keeps it in the rest (the mount's PATH was resolved without one).
      const rest = m.appendWhole ? path : path.slice(m.mount.endsWith('/') ? m.mount.length - 1 : m.mount.length);
      const found = await this.regularFile(m.path + rest);
      if (found === undefined) continue;
      const [file, st] = found;
      if (!(await this.isSafe(file, m.path))) continue;
      const opened = await this.openFile(file, st, m.path, path, uri, acceptEncoding);
      if (opened !== undefined) return opened;
    }
    return undefined;
  }

  /** The candidate itself when it is a regular file, or the first static-index file of a directory. */
  private async regularFile(candidate: string): Promise<[string, Stats] | undefined> {
    const st = await stat(candidate).catch(() => undefined);
    if (st === undefined) return undefined;
    if (st.isFile()) return [candidate, st];
    if (!st.isDirectory()) return undefined;
    for (const name of this.settings.index) {
      const file = candidate.endsWith('/') ? candidate + name : `${candidate}/${name}`;
      const ist = await stat(file).catch(() => undefined);
      if (ist?.isFile()) return [file, ist];
    }
    return undefined;
  }

  private async realRoot(root: string): Promise<string> {
    let real = this.realRoots.get(root);
    if (real === undefined) {
      real = await realpath(root).catch(() => root);
      this.realRoots.set(root, real);
    }
    return real;
  }

  /** The file's real path is its mount's root (a one-file mount), under it, or under a static-safe directory. */
  private async isSafe(file: string, root: string): Promise<boolean> {
    const real = await realpath(file).catch(() => undefined);
    if (real === undefined) return false;
    if (isUnder(real, await this.realRoot(root))) return true;
    this.realSafe ??= await Promise.all(this.settings.safe.map((d) => realpath(d).catch(() => d)));
    if (this.realSafe.some((d) => isUnder(real, d))) return true;
    this.log(`static file ${file} is outside ${root} and every static-safe directory; passed to the app`);
    return false;
  }

  private gzipCovers(file: string): boolean {
    const s = this.settings;
    return s.gzipAll || s.gzipExt.some((e) => file.endsWith(e)) || s.gzipDir.some((d) => isUnder(file, d)) || this.gzipRegex.some((r) => r.test(file));
  }

  private async openFile(file: string, st: Stats, root: string, path: string, uri: string, acceptEncoding: string | undefined): Promise<StaticFile | undefined> {
    const dot = file.lastIndexOf('.');
    const type = (dot > file.lastIndexOf('/') ? this.mime.get(file.slice(dot + 1).toLowerCase()) : undefined) ?? 'application/octet-stream';
    const vary = this.gzipCovers(file);
    let gzip = false;
    let handle: FileHandle | undefined;
    // FILE.gz passes the same real-path check as FILE (it could be a symlink of its own).
    if (vary && acceptsGzip(acceptEncoding) && (await this.isSafe(`${file}.gz`, root))) {
      handle = await open(`${file}.gz`, 'r').catch(() => undefined);
      if (handle !== undefined) {
        const gst = await handle.stat();
        if (gst.isFile()) {
          gzip = true;
          st = gst;
        } else {
          await handle.close();
          handle = undefined;
        }
      }
    }
    if (handle === undefined) {
      handle = await open(file, 'r').catch(() => undefined);
      if (handle === undefined) return undefined;
      // The facts of the bytes that will be sent, not of the earlier stat (the file may have been replaced).
      st = await handle.stat();
      if (!st.isFile()) {
        await handle.close();
        return undefined;
      }
    }
    return { handle, size: st.size, mtimeMs: st.mtimeMs, type, gzip, vary, expires: this.expires(file, path, uri, type, st.mtimeMs) };
  }

  private expires(file: string, path: string, uri: string, type: string, mtimeMs: number): string | undefined {
    for (const { rule, regex } of this.rules) {
      let hit: boolean;
      switch (rule.match) {
        case 'filename':
          hit = regex!.test(file);
          break;
        case 'uri':
          hit = regex!.test(uri);
          break;
        case 'path-info':
          hit = regex!.test(path);
          break;
        case 'type':
          hit = rule.pattern === type;
          break;
      }
      if (hit) return new Date((rule.fromMtime ? mtimeMs : Date.now()) + rule.seconds * 1000).toUTCString();
    }
    return undefined;
  }
}

/** The path is the mount itself or below it (the mount followed by `/`, or a mount ending in `/`). */
function mountMatches(mount: string, path: string): boolean {
  if (!path.startsWith(mount)) return false;
  return path.length === mount.length || mount.endsWith('/') || path.charCodeAt(mount.length) === 47;
}

/**
 * The response head for a found file: 200, or 304 when If-Modified-Since says the client has it. Headers as
 * a flat name, value, name, value... list (what node's writeHead takes; the router joins them itself).
 */
export function staticHead(file: StaticFile, ifModifiedSince: string | undefined): { status: number; headers: string[] } {
  const lastModified = new Date(file.mtimeMs).toUTCString();
  if (ifModifiedSince !== undefined) {
    const since = Date.parse(ifModifiedSince);
    if (!Number.isNaN(since) && Math.floor(file.mtimeMs / 1000) <= Math.floor(since / 1000)) {
      return { status: 304, headers: file.vary ? ['Last-Modified', lastModified, 'Vary', 'Accept-Encoding'] : ['Last-Modified', lastModified] };
    }
  }
  const headers = ['Content-Type', file.type, 'Content-Length', String(file.size), 'Last-Modified', lastModified];
  if (file.expires !== undefined) headers.push('Expires', file.expires);
  if (file.gzip) headers.push('Content-Encoding', 'gzip');
  if (file.vary) headers.push('Vary', 'Accept-Encoding');
  return { status: 200, headers };
}
