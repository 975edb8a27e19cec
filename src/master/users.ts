/**
 * User and group lookup for uid/gid/chown-socket. Node has no getpwnam(), so names are looked up in
 * /etc/passwd and /etc/group, then through `getent` (which also sees LDAP/NSS users). Numbers pass through.
 */
import { readFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';

export interface UserEntry {
  name: string;
  uid: number;
  gid: number;
  home: string;
}

function findLine(file: string, database: string, key: string): string[] | undefined {
  const numeric = /^\d+$/.test(key);
  const match = (f: string[]): boolean => (numeric ? f[2] === key : f[0] === key);
  try {
    for (const line of readFileSync(file, 'utf8').split('\n')) {
      const f = line.split(':');
      if (f.length >= 3 && match(f)) return f;
    }
  } catch {
    /* fall through to getent */
  }
  const r = spawnSync('getent', [database, key], { encoding: 'utf8' });
  if (r.status === 0 && r.stdout) {
    const f = r.stdout.trim().split('\n')[0]!.split(':');
    if (f.length >= 3) return f;
  }
  return undefined;
}

export function resolveUser(nameOrId: string): UserEntry | undefined {
  const f = findLine('/etc/passwd', 'passwd', nameOrId);
  if (!f) return /^\d+$/.test(nameOrId) ? { name: nameOrId, uid: Number(nameOrId), gid: Number(nameOrId), home: '/' } : undefined;
  return { name: f[0]!, uid: Number(f[2]), gid: Number(f[3]), home: f[5] ?? '/' };
}

export function resolveGroup(nameOrId: string): number | undefined {
  if (/^\d+$/.test(nameOrId)) return Number(nameOrId);
  const f = findLine('/etc/group', 'group', nameOrId);
  return f ? Number(f[2]) : undefined;
}
