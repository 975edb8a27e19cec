/**
 * The stats server (`stats ADDR`): uWSGI's behaviour is to write the JSON on every new connection and close;
 * with `stats-http` it reads an HTTP request first and answers `/metrics` with Prometheus text, anything
 * else with the JSON.
 */
import { existsSync, unlinkSync } from 'node:fs';
import net from 'node:net';
import { parseSocketAddress } from '../config/resolve.js';
import { prometheusText, statsJson, type MasterSnapshot } from './stats.js';

export class StatsServer {
  private readonly server: net.Server;
  private readonly path: string | undefined;

  constructor(address: string, private readonly opts: { http: boolean; minified: boolean }, private readonly snapshot: () => MasterSnapshot) {
    const a = parseSocketAddress(address, { kind: 'default' }, 'stats');
    this.server = net.createServer((c) => this.serve(c));
    this.server.on('error', () => {
      /* reported through listen() */
    });
    this.path = a.kind === 'unix' ? a.path : undefined;
    if (a.kind === 'unix') {
      if (existsSync(a.path)) unlinkSync(a.path);
      this.server.listen(a.path);
    } else this.server.listen(a.port, a.host);
  }

  /** Resolves once listening, or rejects with the reason. */
  ready(): Promise<void> {
    return new Promise((resolve, reject) => {
      if (this.server.listening) return resolve();
      this.server.once('listening', resolve);
      this.server.once('error', reject);
    });
  }

  private serve(c: net.Socket): void {
    c.on('error', () => c.destroy());
    if (!this.opts.http) {
      c.end(statsJson(this.snapshot(), this.opts.minified));
      return;
    }
    let head = '';
    c.setTimeout(5000, () => c.destroy());
    c.on('data', (d: Buffer) => {
      head += d.toString('latin1');
      if (!head.includes('\r\n\r\n') && !head.includes('\n\n') && head.length < 8192) return;
      c.removeAllListeners('data');
      const path = /^[A-Z]+ (\S+)/.exec(head)?.[1] ?? '/';
      const metrics = path.split('?')[0] === '/metrics';
      const body = metrics ? prometheusText(this.snapshot()) : statsJson(this.snapshot(), this.opts.minified);
      const type = metrics ? 'text/plain; version=0.0.4' : 'application/json';
      c.end(`HTTP/1.0 200 OK\r\nContent-Type: ${type}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
    });
  }

  close(): void {
    this.server.close();
    if (this.path) {
      try {
        unlinkSync(this.path);
      } catch {
        /* gone */
      }
    }
  }
}
