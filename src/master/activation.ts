/**
 * systemd socket activation: sockets passed as descriptors 3, 4, ... with LISTEN_FDS (and LISTEN_PID naming
 * this process, LISTEN_FDNAMES naming each one). A configured socket whose address matches an inherited one
 * uses it instead of binding; with no socket configured at all, every inherited socket is served.
 */
import { readFileSync, readlinkSync } from 'node:fs';
import net from 'node:net';
import type { SocketAddress } from '../config/resolve.js';

interface OpenedHandle {
  fd: number;
  close(cb?: () => void): void;
  getsockname?(out: { address?: string; port?: number }): number;
}

type CreateServerHandle = (address: string | null, port: number, addressType: number, fd?: number) => OpenedHandle | number;
const createServerHandle = (net as unknown as { _createServerHandle: CreateServerHandle })._createServerHandle;

export interface InheritedSocket {
  fd: number;
  name: string;
  handle: OpenedHandle;
  address: SocketAddress | undefined;
  used: boolean;
}

/** The Unix path a socket descriptor is bound to, from its inode in /proc/net/unix. */
function unixPathOf(fd: number): string | undefined {
  try {
    const inode = /socket:\[(\d+)\]/.exec(readlinkSync(`/proc/self/fd/${fd}`))?.[1];
    if (!inode) return undefined;
    for (const line of readFileSync('/proc/net/unix', 'latin1').split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f[6] === inode && f[7]) return f[7];
    }
  } catch {
    /* not on Linux's /proc */
  }
  return undefined;
}

/** Reads (and removes from `env`) the sockets systemd passed to this process. */
export function takeInheritedSockets(env: NodeJS.ProcessEnv): InheritedSocket[] {
  const count = Number(env.LISTEN_FDS ?? 0);
  const forUs = Number(env.LISTEN_PID ?? 0) === process.pid;
  const names = (env.LISTEN_FDNAMES ?? '').split(':');
  for (const k of ['LISTEN_FDS', 'LISTEN_PID', 'LISTEN_FDNAMES']) delete env[k];
  if (!forUs || !(count > 0)) return [];
  const out: InheritedSocket[] = [];
  for (let i = 0; i < count; i++) {
    const fd = 3 + i;
    const handle = createServerHandle(null, 0, -1, fd);
    if (typeof handle === 'number') continue;
    let address: SocketAddress | undefined;
    const o: { address?: string; port?: number } = {};
    if (handle.getsockname && handle.getsockname(o) === 0 && o.port !== undefined) address = { kind: 'tcp', host: o.address ?? '', port: o.port };
    else {
      const path = unixPathOf(fd);
      if (path) address = { kind: 'unix', path };
    }
    out.push({ fd, name: names[i] ?? `fd${fd}`, handle, address, used: false });
  }
  return out;
}

/** The inherited socket bound to `a`, if any (0.0.0.0 and :: match their own kind only). */
export function matchInherited(sockets: InheritedSocket[], a: SocketAddress): InheritedSocket | undefined {
  return sockets.find((s) => {
    if (s.used || !s.address || s.address.kind !== a.kind) return false;
    if (a.kind === 'unix' && s.address.kind === 'unix') return s.address.path === a.path;
    if (a.kind === 'tcp' && s.address.kind === 'tcp') return s.address.port === a.port && (s.address.host === a.host || (a.host === 'localhost' && s.address.host === '127.0.0.1'));
    return false;
  });
}
