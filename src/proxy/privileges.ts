/** The `user` directive: workers started as root switch to that user and group once their sockets are bound. */
import type { LoadedConf } from './conf/load.js';

export function dropPrivileges(conf: LoadedConf): string | undefined {
  const u = conf.main.user;
  if (!u || typeof process.getuid !== 'function' || process.getuid() !== 0) return undefined;
  try {
    process.setgid!(u.group ?? u.user);
  } catch (e) {
    if (u.group !== undefined) return `setgid(${u.group}) failed (${(e as Error).message})`;
  }
  try {
    process.setuid!(u.user);
  } catch (e) {
    return `setuid(${u.user}) failed (${(e as Error).message})`;
  }
  return undefined;
}
