/**
 * Binding the server's sockets in the master, before any worker exists.
 *
 * The master binds but never listens or accepts: the handle Node's cluster module uses for shared sockets
 * (`net._createServerHandle`) is bound without listening, its descriptor is handed to every worker, and the
 * workers call listen() and accept() themselves. Because the master holds the descriptor, the socket (and its
 * queue of waiting connections) survives any worker dying or being replaced.
 *
 * libuv reports some bind errors late or under another name (EADDRINUSE only at listen(), ENOENT of a Unix
 * path as EACCES), so every address is checked first, to give the user one precise line.
 */
import { chmodSync, chownSync, existsSync, lstatSync, mkdtempSync, readFileSync, rmSync, statSync, unlinkSync, accessSync, constants as fsConstants } from 'node:fs';
import { tmpdir } from 'node:os';
import net from 'node:net';
import { dirname, join } from 'node:path';
import { getSystemErrorName } from 'node:util';
import type { SocketSpec } from '../config/resolve.js';
import { describeOrigin } from '../config/origin.js';
import { resolveGroup, resolveUser } from './users.js';
import { matchInherited, type InheritedSocket } from './activation.js';

/** Bound-but-not-listening handle from Node's internals (the one its cluster module shares with workers). */
interface ServerHandle {
  fd: number;
  close(cb?: () => void): void;
  getsockname?(out: { address?: string; port?: number; family?: string }): number;
  setKeepAlive?(enable: boolean, delaySecs: number): number;
}

type CreateServerHandle = (address: string, port: number, addressType: number, fd?: number, flags?: number) => ServerHandle | number;
const createServerHandle = (net as unknown as { _createServerHandle: CreateServerHandle })._createServerHandle;

export interface BoundSocket {
  spec: SocketSpec;
  handle: ServerHandle;
  fd: number;
  /** The Unix socket file this server created (removed by vacuum), if any. */
  path: string | undefined;
  /** host:port actually bound (the port is resolved when :0 was asked for). */
  name: string;
  /** The master has let go of its handle. */
  closed?: boolean;
  /** Passed by systemd (socket activation): never unlinked, whatever vacuum says. */
  inherited?: boolean;
}

export class SocketError extends Error {
  constructor(spec: SocketSpec, why: string) {
    super(`cannot bind socket ${spec.text} (${describeOrigin(spec.origin)}): ${why}`);
    this.name = 'SocketError';
  }
}

function errnoWords(code: string): string {
  switch (code) {
    case 'EADDRINUSE':
      return 'address already in use (another server is listening there)';
    case 'EACCES':
      return 'permission denied';
    case 'EADDRNOTAVAIL':
      return 'address not available on this machine';
    case 'ENOENT':
      return 'no such file or directory';
    case 'ENOTDIR':
      return 'a path component is not a directory';
    case 'EAI_NONAME':
    case 'ENOTFOUND':
      return 'unknown host';
    default:
      return code;
  }
}

/** Probes a TCP address with a throwaway listener, so that "in use" and "permission denied" are known now. */
function probeTcp(host: string, port: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const probe = net.createServer();
    probe.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? String(err)));
    probe.listen({ host, port, exclusive: true, backlog: 1 }, () => probe.close(() => resolve(undefined)));
  });
}

/** Whether something accepts connections on a Unix socket path (a live server, not a stale file). */
function unixInUse(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const c = net.connect(path);
    c.once('connect', () => {
      c.destroy();
      resolve(true);
    });
    c.once('error', () => resolve(false));
  });
}

async function bindUnix(spec: SocketSpec, path: string): Promise<BoundSocket> {
  const dir = dirname(path);
  let dirStat;
  try {
    dirStat = statSync(dir);
  } catch (err) {
    throw new SocketError(spec, `directory ${dir} does not exist (create it first, e.g. mkdir -p ${dir})`);
  }
  if (!dirStat.isDirectory()) throw new SocketError(spec, `${dir} is not a directory`);
  try {
    accessSync(dir, fsConstants.W_OK | fsConstants.X_OK);
  } catch {
    throw new SocketError(spec, `permission denied: cannot create files in ${dir}`);
  }
  if (existsSync(path)) {
    const st = lstatSync(path);
    if (!st.isSocket()) throw new SocketError(spec, `${path} exists and is not a socket`);
    if (await unixInUse(path)) throw new SocketError(spec, 'address already in use (a server is listening on this socket file)');
    unlinkSync(path); // a stale socket left by a server that did not vacuum
  }
  const handle = createServerHandle(path, -1, -1);
  if (typeof handle === 'number') throw new SocketError(spec, errnoWords(getSystemErrorName(handle)));
  return { spec, handle, fd: handle.fd, path, name: path };
}

async function bindTcp(spec: SocketSpec, host: string, port: number): Promise<BoundSocket> {
  const family = net.isIP(host);
  if (family === 0) throw new SocketError(spec, `'${host}' is not an IP address (tsgi binds addresses, not host names)`);
  const probeError = await probeTcp(host, port);
  if (probeError) throw new SocketError(spec, errnoWords(probeError));
  const handle = createServerHandle(host, port, family);
  if (typeof handle === 'number') throw new SocketError(spec, errnoWords(getSystemErrorName(handle)));
  const out: { address?: string; port?: number } = {};
  handle.getsockname?.(out);
  const shown = family === 6 ? `[${out.address ?? host}]` : (out.address ?? host);
  return { spec, handle, fd: handle.fd, path: undefined, name: `${shown}:${out.port ?? port}` };
}

export interface SocketOwnership {
  chmod: number | undefined;
  chown: string | undefined;
}

/**
 * Binds every socket, applying chmod/chown to Unix ones; a socket systemd passed (socket activation) is used
 * instead of binding its address. On failure, releases what was bound and throws.
 */
export async function bindSockets(specs: readonly SocketSpec[], own: SocketOwnership, inherited: InheritedSocket[] = []): Promise<BoundSocket[]> {
  const bound: BoundSocket[] = [];
  try {
    for (const spec of specs) {
      const a = spec.address;
      const passed = matchInherited(inherited, a);
      if (passed) {
        passed.used = true;
        bound.push({ spec, handle: passed.handle, fd: passed.fd, path: undefined, name: a.kind === 'unix' ? a.path : `${a.host}:${a.port}`, inherited: true });
        continue;
      }
      const b = a.kind === 'unix' ? await bindUnix(spec, a.path) : await bindTcp(spec, a.host, a.port);
      bound.push(b);
      if (b.path) applyOwnership(b, own);
    }
  } catch (err) {
    closeSockets(bound, true);
    throw err;
  }
  return bound;
}

/**
 * so-keepalive: SO_KEEPALIVE on the TCP listeners. Linux copies it (and the idle time) to every connection
 * accepted from them, whoever accepts: Python workers, Node workers, the router. libuv sets the idle time
 * along with the flag; the system's own (net.ipv4.tcp_keepalive_time) is given, as uWSGI leaves it alone.
 */
export function enableKeepAlive(bound: readonly BoundSocket[]): void {
  let idle = 7200;
  try {
    idle = Number(readFileSync('/proc/sys/net/ipv4/tcp_keepalive_time', 'utf8').trim()) || idle;
  } catch {
    /* not Linux, or no /proc: the usual default */
  }
  for (const b of bound) {
    if (b.spec.address.kind !== 'tcp' || typeof b.handle.setKeepAlive !== 'function') continue;
    const err = b.handle.setKeepAlive(true, idle);
    if (err) throw new SocketError(b.spec, `so-keepalive: ${errnoWords(getSystemErrorName(err))}`);
  }
}

function applyOwnership(b: BoundSocket, own: SocketOwnership): void {
  const path = b.path!;
  if (own.chmod !== undefined) {
    try {
      chmodSync(path, own.chmod);
    } catch (err) {
      throw new SocketError(b.spec, `chmod-socket ${own.chmod.toString(8)} failed: ${errnoWords((err as NodeJS.ErrnoException).code ?? '')}`);
    }
  }
  if (own.chown !== undefined) {
    const [user, group] = own.chown.split(':', 2) as [string, string | undefined];
    const uid = user === '' ? -1 : resolveUser(user)?.uid;
    if (uid === undefined) throw new SocketError(b.spec, `chown-socket: no such user '${user}'`);
    let gid = -1;
    if (group !== undefined && group !== '') {
      const g = resolveGroup(group);
      if (g === undefined) throw new SocketError(b.spec, `chown-socket: no such group '${group}'`);
      gid = g;
    }
    try {
      chownSync(path, uid, gid);
    } catch (err) {
      throw new SocketError(b.spec, `chown-socket ${own.chown} failed: ${errnoWords((err as NodeJS.ErrnoException).code ?? '')}`);
    }
  }
}

/**
 * Closes the master's handles; with `vacuum`, removes the socket files this server created. Without it a
 * Unix socket's handle is left for the process exit to release, because libuv unlinks the path when it
 * closes a bound pipe, and uWSGI keeps the file unless vacuum is set.
 */
export function closeSockets(bound: readonly BoundSocket[], vacuum: boolean): void {
  for (const b of bound) {
    if (b.path && !vacuum) continue;
    if (b.closed) continue;
    b.closed = true;
    try {
      b.handle.close();
    } catch {
      /* already closed */
    }
    if (vacuum && b.path) {
      try {
        unlinkSync(b.path);
      } catch {
        /* already gone */
      }
    }
  }
}

export interface LinkSocket {
  handle: ServerHandle;
  fd: number;
  path: string;
  dir: string;
}

/**
 * The private socket of the router's links (docs/protocol-link.md): in a fresh directory only the user the
 * server runs as can enter, so nothing else on the machine can talk to the workers through it.
 */
export function bindLinkSocket(owner: { uid: number; gid: number } | undefined): LinkSocket {
  const dir = mkdtempSync(join(tmpdir(), 'tsgi-link-'));
  chmodSync(dir, 0o700);
  const path = join(dir, 'link.sock');
  const handle = createServerHandle(path, -1, -1);
  if (typeof handle === 'number') {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`cannot bind the router link socket ${path}: ${getSystemErrorName(handle)}`);
  }
  chmodSync(path, 0o600);
  if (owner) {
    chownSync(dir, owner.uid, owner.gid);
    chownSync(path, owner.uid, owner.gid);
  }
  return { handle, fd: handle.fd, path, dir };
}

export function closeLinkSocket(link: LinkSocket): void {
  try {
    link.handle.close();
  } catch {
    /* already closed */
  }
  rmSync(link.dir, { recursive: true, force: true });
}
