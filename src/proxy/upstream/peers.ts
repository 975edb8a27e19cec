/**
 * Backend peers of one upstream and how the next one is chosen: smooth weighted round robin (nginx's),
 * least_conn, ip_hash, hash [consistent]; max_fails within fail_timeout takes a peer out for fail_timeout;
 * backup peers are used only when no primary peer is available. State is per worker process.
 */
import type { UpstreamConf } from '../conf/model.js';
import type { Rq } from '../request.js';
import type { Link } from './exchange.js';

export type PeerAddr = { host: string; port: number } | { path: string };

export class Peer {
  /** Current and effective weights of smooth weighted round robin. */
  current = 0;
  fails = 0;
  checkedAt = 0;
  conns = 0;
  /** Idle persistent connections to this peer (tsgi link or HTTP keep-alive). */
  readonly idle: Link[] = [];
  /** The link collecting this event-loop turn's pipelined requests (exchange.ts), if any. */
  batch: Link | null = null;
  /** The last TLS session of an https/suwsgi connection, offered again (*_ssl_session_reuse). */
  tlsSession: Buffer | undefined = undefined;
  /** The name that session's certificate was verified for ('' when it was not verified). */
  tlsSessionName = '';
  /** "127.0.0.1:8081" or "unix:/path", as $upstream_addr shows it. */
  readonly label: string;

  constructor(
    readonly name: string,
    readonly addr: PeerAddr,
    readonly weight: number,
    readonly maxFails: number,
    readonly failTimeoutMs: number,
    readonly maxConns: number,
    readonly down: boolean,
  ) {
    this.label = 'path' in addr ? `unix:${addr.path}` : addr.host.includes(':') ? `[${addr.host}]:${addr.port}` : `${addr.host}:${addr.port}`;
  }


  available(now: number): boolean {
    if (this.down) return false;
    if (this.maxConns && this.conns >= this.maxConns) return false;
    if (this.maxFails && this.fails >= this.maxFails && now - this.checkedAt <= this.failTimeoutMs) return false;
    return true;
  }
}

function crc32(s: string): number {
  let c = ~0;
  for (let i = 0; i < s.length; i++) {
    c ^= s.charCodeAt(i) & 0xff;
    for (let k = 0; k < 8; k++) c = (c >>> 1) ^ (0xedb88320 & -(c & 1));
  }
  return ~c >>> 0;
}

export class PeerGroup {
  readonly primary: Peer[] = [];
  readonly backup: Peer[] = [];
  private ring: Array<[number, Peer]> | undefined;

  constructor(readonly conf: UpstreamConf) {
    for (const s of conf.servers) {
      for (const a of s.addrs) {
        const p = new Peer(s.name, a, s.weight, s.maxFails, s.failTimeoutMs, s.maxConns, s.down);
        (s.backup ? this.backup : this.primary).push(p);
      }
    }
    if (conf.balance.kind === 'hash' && conf.balance.consistent) {
      const ring: Array<[number, Peer]> = [];
      for (const p of this.primary) for (let i = 0; i < 160 * p.weight; i++) ring.push([crc32(`${p.label}-${i}`), p]);
      ring.sort((a, b) => a[0] - b[0]);
      this.ring = ring;
    }
  }

  get size(): number {
    return this.primary.length + this.backup.length;
  }

  /** The next peer not yet tried for this request, or null when none is available. */
  select(r: Rq, tried: Set<Peer>): Peer | null {
    const now = Date.now();
    // A single peer is always tried, as in nginx (max_fails does not apply to it).
    if (this.primary.length === 1 && this.backup.length === 0) {
      const p = this.primary[0]!;
      return tried.has(p) || p.down ? null : p;
    }
    const b = this.conf.balance;
    let p: Peer | null = null;
    if (b.kind === 'ip_hash' || b.kind === 'hash') p = this.byHash(r, tried, now);
    if (!p) p = b.kind === 'least_conn' ? this.leastConn(this.primary, tried, now) : this.roundRobin(this.primary, tried, now);
    if (!p && this.backup.length) p = b.kind === 'least_conn' ? this.leastConn(this.backup, tried, now) : this.roundRobin(this.backup, tried, now);
    return p;
  }

  private roundRobin(list: Peer[], tried: Set<Peer>, now: number): Peer | null {
    let best: Peer | null = null;
    let total = 0;
    for (const p of list) {
      if (tried.has(p) || !p.available(now)) continue;
      p.current += p.weight;
      total += p.weight;
      if (!best || p.current > best.current) best = p;
    }
    if (best) best.current -= total;
    return best;
  }

  private leastConn(list: Peer[], tried: Set<Peer>, now: number): Peer | null {
    let best: Peer | null = null;
    let ties: Peer[] = [];
    for (const p of list) {
      if (tried.has(p) || !p.available(now)) continue;
      if (!best || p.conns * best.weight < best.conns * p.weight) {
        best = p;
        ties = [p];
      } else if (p.conns * best.weight === best.conns * p.weight) ties.push(p);
    }
    if (ties.length > 1) return this.roundRobin(ties, tried, now);
    return best;
  }

  private byHash(r: Rq, tried: Set<Peer>, now: number): Peer | null {
    const b = this.conf.balance;
    let key: string;
    if (b.kind === 'ip_hash') {
      const a = r.realAddr ?? r.req.socket.remoteAddress ?? '';
      const v4 = a.startsWith('::ffff:') ? a.slice(7) : a;
      key = /^\d+\.\d+\.\d+\.\d+$/.test(v4) ? v4.split('.').slice(0, 3).join('.') : v4;
    } else if (b.kind === 'hash') key = b.key.eval(r);
    else return null;
    if (this.ring) {
      const h = crc32(key);
      let lo = 0;
      let hi = this.ring.length;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (this.ring[mid]![0] < h) lo = mid + 1;
        else hi = mid;
      }
      for (let i = 0; i < this.ring.length; i++) {
        const p = this.ring[(lo + i) % this.ring.length]![1];
        if (!tried.has(p) && p.available(now)) return p;
      }
      return null;
    }
    const total = this.primary.reduce((s, p) => s + p.weight, 0);
    let h = crc32(key);
    for (let attempt = 0; attempt < 20; attempt++) {
      let w = h % total;
      let i = 0;
      while (w >= this.primary[i]!.weight) w -= this.primary[i++]!.weight;
      const p = this.primary[i]!;
      if (!tried.has(p) && p.available(now)) return p;
      h = crc32(key + String(attempt + 1));
    }
    return null; // falls back to round robin, as nginx does after 20 tries
  }

  fail(p: Peer): void {
    p.fails++;
    p.checkedAt = Date.now();
  }

  success(p: Peer): void {
    p.fails = 0;
  }
}
