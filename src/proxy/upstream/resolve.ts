/**
 * `resolver`: host names in a pass target with variables, resolved at request time through the configured
 * DNS servers (node:dns Resolver, which asks them over UDP without blocking). Answers are kept by pass.ts
 * for `valid=` or, without it, for the smallest TTL of the records, as nginx does; failures are not kept
 * (nginx asks again for the next request). Queries for one name in flight at once are made once.
 */
import { Resolver } from 'node:dns';
import type { ResolverConf } from '../conf/model.js';

/** An answer: the addresses (IPv4 first, then IPv6) and until when they may be used (ms since the epoch). */
export type ResolveDone = (error: string | null, addrs: string[], expires: number) => void;

interface Res {
  resolver: Resolver;
  inflight: Map<string, ResolveDone[]>;
}
/** One node:dns Resolver per resolver line and timeout (a location may set its own resolver_timeout). */
const resolvers = new Map<ResolverConf, Map<number, Res>>();

function resolverFor(conf: ResolverConf, timeoutMs: number): Res {
  let byTimeout = resolvers.get(conf);
  if (byTimeout === undefined) resolvers.set(conf, (byTimeout = new Map()));
  let res = byTimeout.get(timeoutMs);
  if (res === undefined) {
    // One try per server: resolver_timeout bounds the whole resolution, as in nginx.
    const resolver = new Resolver({ timeout: Math.max(1, timeoutMs), tries: 1 });
    resolver.setServers(conf.servers);
    res = { resolver, inflight: new Map() };
    byTimeout.set(timeoutMs, res);
  }
  return res;
}

/** nginx's "(N: text)" for a failed resolution, from node:dns's error code. */
function nginxError(code: string | undefined): string {
  switch (code) {
    case 'ENOTFOUND':
    case 'ENODATA':
      return '3: Host not found';
    case 'ESERVFAIL':
      return '2: Server failure';
    case 'EREFUSED':
      return '5: Operation refused';
    case 'EFORMERR':
      return '1: Format error';
    case 'ENOTIMP':
      return '4: Not implemented';
    default:
      // ETIMEOUT, ECONNREFUSED (nothing answers on the resolver's port: nginx waits for resolver_timeout).
      return '110: Operation timed out';
  }
}

type Rec = { address: string; ttl: number };

/** Resolves `host` (A and/or AAAA as ipv4=/ipv6= say), then calls `done` once. */
export function resolveName(conf: ResolverConf, timeoutMs: number, host: string, done: ResolveDone): void {
  const res = resolverFor(conf, timeoutMs);
  const waiting = res.inflight.get(host);
  if (waiting !== undefined) {
    waiting.push(done);
    return;
  }
  const waiters = [done];
  res.inflight.set(host, waiters);
  let left = (conf.ipv4 ? 1 : 0) + (conf.ipv6 ? 1 : 0);
  let v4: Rec[] = [];
  let v6: Rec[] = [];
  let err4: string | undefined;
  let err6: string | undefined;
  const finish = (): void => {
    res.inflight.delete(host);
    const all = v4.concat(v6);
    let error: string | null = null;
    let expires = 0;
    if (all.length === 0) error = nginxError(conf.ipv4 ? err4 : err6);
    else {
      // nginx counts in whole seconds and uses an answer while its clock has not passed the last one: an
      // answer with TTL 1 serves until the end of the next second.
      const ttlMs = conf.validMs ?? 1000 * Math.min(...all.map((a) => a.ttl));
      expires = (Math.floor(Date.now() / 1000) + 1) * 1000 + ttlMs;
    }
    const addrs = all.map((a) => a.address);
    for (const w of waiters) w(error, addrs, expires);
  };
  if (conf.ipv4) {
    res.resolver.resolve4(host, { ttl: true }, (e, recs) => {
      if (e) err4 = e.code;
      else v4 = recs;
      if (--left === 0) finish();
    });
  }
  if (conf.ipv6) {
    res.resolver.resolve6(host, { ttl: true }, (e, recs) => {
      if (e) err6 = e.code;
      else v6 = recs;
      if (--left === 0) finish();
    });
  }
}
