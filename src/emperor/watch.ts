/**
 * Watching the vassal folders: fs.watch on every folder that can hold a vassal file, plus a rescan every
 * `emperor-freq` seconds as a safety net (inotify can miss events: a folder replaced, a queue overflow, files on
 * a network filesystem; uWSGI only ever polls). An event asks for a rescan shortly after (events come in bursts
 * while a file is written); the scan itself lists the folders and stats the files, so what the emperor acts on is
 * always the folder as it is, never an event's guess.
 */
import { readdirSync, statSync, watch, type FSWatcher, type Stats } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { isVassalFile, type MonitorSpec } from './config.js';

/** What the emperor compares between scans to tell a changed file. */
export interface FileStamp {
  mtimeMs: number;
  ctimeMs: number;
  size: number;
  ino: number;
  uid: number;
  gid: number;
}

export interface FoundFile {
  /** Absolute path as the monitor sees it (symlinks not resolved): the vassal's identity. */
  path: string;
  name: string;
  monitor: MonitorSpec;
  stamp: FileStamp;
}

function stampOf(st: Stats): FileStamp {
  return { mtimeMs: st.mtimeMs, ctimeMs: st.ctimeMs, size: st.size, ino: st.ino, uid: st.uid, gid: st.gid };
}

/** A touched, rewritten or replaced file (the owner is compared separately, for emperor-tyrant). */
export function contentChanged(a: FileStamp, b: FileStamp): boolean {
  return a.mtimeMs !== b.mtimeMs || a.size !== b.size || a.ino !== b.ino;
}

function globToRegExp(part: string): RegExp {
  let re = '';
  for (let i = 0; i < part.length; i++) {
    const c = part[i]!;
    if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else if (c === '[') {
      const close = part.indexOf(']', i + 2);
      if (close === -1) re += '\\[';
      else {
        const body = part.slice(i + 1, close);
        re += `[${body.startsWith('!') ? `^${body.slice(1)}` : body.replace(/\\/g, '\\\\')}]`;
        i = close;
      }
    } else re += c.replace(/[.+^${}()|\\\]]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

const WILD = /[*?[]/;

/** A folder that is missing is empty; one that cannot be read (EACCES, EMFILE...) says nothing about its files. */
const GONE = new Set(['ENOENT', 'ENOTDIR']);

/**
 * Files matching an absolute glob pattern (`*`, `?`, `[...]` in any component; dot files only when asked).
 * `onError` hears of folders that exist but could not be read.
 */
export function globFiles(pattern: string, onError: (dir: string, code: string) => void = () => {}): string[] {
  const parts = pattern.split('/').filter((p) => p !== '');
  let bases = ['/'];
  for (const part of parts) {
    const next: string[] = [];
    if (!WILD.test(part)) {
      for (const b of bases) next.push(join(b, part));
    } else {
      const re = globToRegExp(part);
      for (const b of bases) {
        let names: string[];
        try {
          names = readdirSync(b);
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code ?? 'error';
          if (!GONE.has(code)) onError(b, code);
          continue;
        }
        for (const n of names.sort()) if ((part.startsWith('.') || !n.startsWith('.')) && re.test(n)) next.push(join(b, n));
      }
    }
    bases = next;
  }
  return bases;
}

/** The folders whose events can reveal a change for this monitor (none for a glob with wildcards above its last part). */
function watchedDirs(m: MonitorSpec): string[] {
  if (m.kind === 'dir') return [m.dir];
  const dir = dirname(m.pattern);
  return WILD.test(dir) ? [] : [dir];
}

export interface ScanResult {
  /** Every vassal file found, by path. A file two monitors see belongs to the first. */
  found: Map<string, FoundFile>;
  /**
   * Monitors that could not be read in full, with why: what they held before is not known to be gone, so their
   * vassals are left as they are (a transient EMFILE must not stop every app).
   */
  failed: Map<MonitorSpec, string>;
  /** Files that exist but could not be looked at (not known to be gone either). */
  uncertain: Set<string>;
}

/** Lists every vassal file of the monitors now. */
export function scanMonitors(monitors: readonly MonitorSpec[]): ScanResult {
  const found = new Map<string, FoundFile>();
  const failed = new Map<MonitorSpec, string>();
  const uncertain = new Set<string>();
  for (const m of monitors) {
    let paths: string[];
    if (m.kind === 'dir') {
      try {
        paths = readdirSync(m.dir).sort().map((n) => join(m.dir, n));
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code ?? 'error';
        if (!GONE.has(code)) failed.set(m, `cannot read ${m.dir} (${code})`);
        paths = [];
      }
    } else paths = globFiles(m.pattern, (dir, code) => failed.set(m, `cannot read ${dir} (${code})`));
    for (const path of paths) {
      if (found.has(path) || !isVassalFile(basename(path))) continue;
      let st: Stats;
      try {
        st = statSync(path);
      } catch (err) {
        // Vanished, or a dangling symlink: gone. Anything else: not known.
        if (!GONE.has((err as NodeJS.ErrnoException).code ?? '')) uncertain.add(path);
        continue;
      }
      if (!st.isFile()) continue;
      found.set(path, { path, name: basename(path), monitor: m, stamp: stampOf(st) });
    }
  }
  return { found, failed, uncertain };
}

/** How long after a file event the folders are scanned (an editor's save or a `cp` is a burst of events). */
const SETTLE_MS = 75;

export class FolderWatcher {
  private readonly watchers = new Map<string, { watcher: FSWatcher; ino: number }>();
  private readonly unwatchable = new Set<string>();
  private readonly failing = new Map<MonitorSpec, string>();
  private timer: NodeJS.Timeout | undefined;
  private interval: NodeJS.Timeout | undefined;
  private stopped = false;
  /** How many scans ran (reported by emperor-stats, so a test can tell the emperor has looked again). */
  scans = 0;

  constructor(
    private readonly monitors: readonly MonitorSpec[],
    private readonly freqSeconds: number,
    private readonly onScan: (scan: ScanResult) => void,
    private readonly log: (line: string) => void,
  ) {}

  start(): void {
    this.scanNow();
    this.interval = setInterval(() => this.scanNow(), this.freqSeconds * 1000);
  }

  /** Asks for a scan soon; many requests within the settle time make one scan. */
  scanSoon(): void {
    if (this.stopped || this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.scanNow();
    }, SETTLE_MS);
  }

  scanNow(): void {
    if (this.stopped) return;
    this.rewatch();
    this.scans++;
    const scan = scanMonitors(this.monitors);
    for (const m of this.monitors) {
      const why = scan.failed.get(m);
      const was = this.failing.get(m);
      if (why && why !== was) this.log(`${why}: its vassals are left as they are until it can be read again`);
      if (!why && was) this.log(`${m.text} can be read again`);
      if (why) this.failing.set(m, why);
      else this.failing.delete(m);
    }
    this.onScan(scan);
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.interval) clearInterval(this.interval);
    for (const w of this.watchers.values()) w.watcher.close();
    this.watchers.clear();
  }

  /** Watches every folder that exists now and is not watched yet (a folder created or replaced later included). */
  private rewatch(): void {
    for (const m of this.monitors) {
      for (const dir of watchedDirs(m)) {
        let ino: number;
        try {
          const st = statSync(dir);
          if (!st.isDirectory()) continue;
          ino = st.ino;
        } catch {
          continue;
        }
        const current = this.watchers.get(dir);
        if (current?.ino === ino) continue;
        current?.watcher.close(); // the folder was replaced: its old watch sees nothing any more
        this.watchers.delete(dir);
        try {
          const w = watch(dir, { persistent: false }, () => this.scanSoon());
          w.on('error', () => {
            // The folder went away (or the watch broke): the periodic scan sees to it, and watches it again.
            w.close();
            if (this.watchers.get(dir)?.watcher === w) this.watchers.delete(dir);
            this.scanSoon();
          });
          this.watchers.set(dir, { watcher: w, ino });
          this.unwatchable.delete(dir);
        } catch (err) {
          if (!this.unwatchable.has(dir)) this.log(`cannot watch ${dir} (${(err as NodeJS.ErrnoException).code}); it is rescanned every ${this.freqSeconds} s`);
          this.unwatchable.add(dir);
        }
      }
    }
  }
}
