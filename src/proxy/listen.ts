/**
 * Listening addresses and name-based virtual servers. Servers are grouped by the address they listen on;
 * each group picks a server for a Host by nginx's order: exact name, longest leading wildcard
 * ("*.example.com"), longest trailing wildcard ("www.example.*"), first matching regex, default server.
 * A wildcard listen (*:80) and a specific one (127.0.0.1:80) on one port share one socket, as in nginx;
 * the group is then chosen by the connection's local address.
 */
import { ProxyConfError } from './conf/errors.js';
import type { ListenConf, ServerConf } from './conf/model.js';

export interface ListenGroup {
  /** '' wildcard IPv4, '::' wildcard IPv6, or an address; unix sockets set `unix`. */
  host: string;
  port: number;
  unix: string | undefined;
  ssl: boolean;
  http2: boolean;
  backlog: number | undefined;
  defaultServer: ServerConf;
  exact: Map<string, ServerConf>;
  wildStart: Array<[string, ServerConf]>;
  wildEnd: Array<[string, ServerConf]>;
  regex: Array<[RegExp, ServerConf]>;
  servers: ServerConf[];
}

/** One socket: its groups by local address ('' = the group of the wildcard address itself). */
export interface Binding {
  key: string;
  host: string;
  port: number;
  unix: string | undefined;
  ssl: boolean;
  /** Any server listening on it with `http2`, as in nginx (the parameter belongs to the socket). */
  http2: boolean;
  backlog: number | undefined;
  groups: Map<string, ListenGroup>;
  /** The group used when no address-specific one matches. */
  main: ListenGroup;
}

function groupKey(l: ListenConf): string {
  return l.unix !== undefined ? `unix:${l.unix}` : l.host.includes(':') ? `[${l.host}]:${l.port}` : `${l.host || '*'}:${l.port}`;
}

export function buildBindings(servers: ServerConf[], warn: (msg: string, pos: ListenConf['pos']) => void): Binding[] {
  const groups = new Map<string, ListenGroup>();
  for (const srv of servers) {
    if (srv.listens.length === 0) {
      srv.listens.push({ host: '', port: 80, unix: undefined, defaultServer: false, ssl: false, http2: false, backlog: undefined, pos: srv.pos });
    }
    for (const l of srv.listens) {
      const key = groupKey(l);
      let g = groups.get(key);
      if (!g) {
        g = {
          host: l.host, port: l.port, unix: l.unix, ssl: l.ssl, http2: l.http2 || srv.http2On === true, backlog: l.backlog, defaultServer: srv,
          exact: new Map(), wildStart: [], wildEnd: [], regex: [], servers: [],
        };
        groups.set(key, g);
      } else if (l.defaultServer) {
        if (g.servers.some((s) => s.listens.some((x) => x.defaultServer && groupKey(x) === key))) {
          throw new ProxyConfError('DUPLICATE', `a duplicate default server for ${key}`, l.pos);
        }
      }
      if (l.defaultServer) g.defaultServer = srv;
      if (l.ssl) g.ssl = true;
      if (l.http2 || srv.http2On === true) g.http2 = true;
      if (l.backlog !== undefined) g.backlog = l.backlog;
      if (g.servers.includes(srv)) {
        throw new ProxyConfError('DUPLICATE', `a duplicate listen ${key}`, l.pos);
      }
      g.servers.push(srv);
      for (const n of srv.names.exact) {
        if (g.exact.has(n)) warn(`conflicting server name "${n}" on ${key}, ignored`, srv.pos);
        else g.exact.set(n, srv);
      }
      for (const w of srv.names.wildStart) g.wildStart.push([w, srv]);
      for (const w of srv.names.wildEnd) g.wildEnd.push([w, srv]);
      for (const r of srv.names.regex) g.regex.push([r, srv]);
    }
  }
  for (const g of groups.values()) {
    // Longest wildcard first, so the first hit is the longest match.
    g.wildStart.sort((a, b) => b[0].length - a[0].length);
    g.wildEnd.sort((a, b) => b[0].length - a[0].length);
  }
  // Sockets: a wildcard group on a port takes in the specific-address groups of the same family and port.
  const bindings = new Map<string, Binding>();
  const all = [...groups.values()];
  for (const g of all) {
    if (g.unix !== undefined) {
      bindings.set(`unix:${g.unix}`, { key: `unix:${g.unix}`, host: '', port: 0, unix: g.unix, ssl: g.ssl, http2: g.http2, backlog: g.backlog, groups: new Map([['', g]]), main: g });
      continue;
    }
    const v6 = g.host.includes(':');
    const wildcard = all.find((o) => o.unix === undefined && o.port === g.port && (v6 ? o.host === '::' : o.host === ''));
    const owner = wildcard ?? g;
    const key = `${owner.host || '*'}|${owner.port}`;
    let b = bindings.get(key);
    if (!b) {
      b = { key, host: owner.host, port: owner.port, unix: undefined, ssl: owner.ssl, http2: owner.http2, backlog: owner.backlog, groups: new Map(), main: owner };
      bindings.set(key, b);
    }
    b.groups.set(g === owner ? '' : g.host, g);
    if (g.ssl) b.ssl = true;
    if (g.http2) b.http2 = true;
  }
  return [...bindings.values()];
}

/** The server for a Host (already lowercased, port removed) in a group. */
export function findServer(g: ListenGroup, host: string): { server: ServerConf; captures: RegExpExecArray | null } {
  if (host !== '') {
    const e = g.exact.get(host);
    if (e) return { server: e, captures: null };
    for (const [suffix, srv] of g.wildStart) {
      if (host.endsWith(suffix) && host.length > suffix.length) return { server: srv, captures: null };
    }
    for (const [prefix, srv] of g.wildEnd) {
      if (host.startsWith(prefix) && host.length > prefix.length) return { server: srv, captures: null };
    }
    for (const [re, srv] of g.regex) {
      const m = re.exec(host);
      if (m) return { server: srv, captures: m };
    }
  } else {
    const e = g.exact.get('');
    if (e) return { server: e, captures: null };
  }
  return { server: g.defaultServer, captures: null };
}
