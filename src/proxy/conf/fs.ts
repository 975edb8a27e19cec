/**
 * File access for loading the configuration. The disk reader records what it read so a worker process can
 * load the very same bytes (a reload that races an editor never gives master and workers different configs).
 */
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { ConfFs } from './scope.js';

export interface ConfSnapshot {
  files: Record<string, string>;
  globs: Record<string, string[]>;
}

export function errnoText(e: NodeJS.ErrnoException): string {
  const map: Record<string, string> = { ENOENT: '2: No such file or directory', EACCES: '13: Permission denied', EISDIR: '21: Is a directory', ENOTDIR: '20: Not a directory' };
  return (e.code && map[e.code]) || e.message;
}

function globToRegex(seg: string): RegExp {
  let re = '^';
  for (let i = 0; i < seg.length; i++) {
    const c = seg[i]!;
    if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else if (c === '[') {
      const end = seg.indexOf(']', i + 1);
      if (end < 0) re += '\\[';
      else {
        let cls = seg.slice(i + 1, end);
        if (cls.startsWith('!')) cls = '^' + cls.slice(1);
        re += `[${cls.replace(/\\/g, '\\\\')}]`;
        i = end;
      }
    } else re += c.replace(/[.+^${}()|\\]/g, '\\$&');
  }
  return new RegExp(re + '$');
}

/** Expands * ? [..] in any path segment; names starting with "." match only a pattern starting with ".". */
export function globSync(pattern: string): string[] {
  const parts = pattern.split('/');
  let current = [parts[0] === '' ? '/' : parts[0]!];
  for (let i = 1; i < parts.length; i++) {
    const seg = parts[i]!;
    if (seg === '') continue;
    const next: string[] = [];
    if (!/[*?[]/.test(seg)) {
      for (const c of current) next.push(join(c, seg));
    } else {
      const re = globToRegex(seg);
      for (const c of current) {
        let names: string[];
        try {
          names = readdirSync(c);
        } catch {
          continue;
        }
        for (const n of names.sort()) if ((!n.startsWith('.') || seg.startsWith('.')) && re.test(n)) next.push(join(c, n));
      }
    }
    current = next;
  }
  return current.filter((p) => {
    try {
      statSync(p);
      return true;
    } catch {
      return false;
    }
  }).sort();
}

export class DiskFs implements ConfFs {
  readonly snapshot: ConfSnapshot = { files: {}, globs: {} };

  read(path: string): string | Error {
    try {
      const st = statSync(path);
      if (st.isDirectory()) return new Error('21: Is a directory');
      const text = readFileSync(path, 'latin1');
      this.snapshot.files[path] = text;
      return text;
    } catch (e) {
      return new Error(errnoText(e as NodeJS.ErrnoException));
    }
  }

  glob(pattern: string): string[] {
    const r = globSync(pattern);
    this.snapshot.globs[pattern] = r;
    return r;
  }

  exists(path: string): boolean {
    try {
      statSync(dirname(path));
      return true;
    } catch {
      return false;
    }
  }
}

/** Replays a snapshot taken by DiskFs; anything not in it reads as missing. */
export class SnapshotFs implements ConfFs {
  constructor(private readonly snap: ConfSnapshot) {}
  read(path: string): string | Error {
    const t = this.snap.files[path];
    return t === undefined ? new Error('2: No such file or directory') : t;
  }
  glob(pattern: string): string[] {
    return this.snap.globs[pattern] ?? [];
  }
  exists(): boolean {
    return true;
  }
}
