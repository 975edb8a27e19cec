/**
 * The router's links to the Python workers (docs/protocol-link.md): one persistent Unix connection per
 * worker, a request sent only on an idle link whose worker has said HELLO, and a bounded queue of complete
 * requests waiting for one. Links that die are replaced; a worker that says GOODBYE (reload) is let go after
 * its response and its link replaced, so the new generation of workers picks the traffic up. The master says
 * how many links to keep (one per core of each running worker): with cheaper that number goes up and down.
 */
import net from 'node:net';
import { FrameDecoder, type FrameSink } from './frames.js';

/** What a request being served wants to hear from its link. */
export interface Exchange {
  /** The request: uwsgi packet and body, written to the link as they are. */
  readonly payload: readonly Buffer[];
  /** The request's method (http-to: a HEAD response has no body, whatever its headers say). */
  readonly method: string;
  head(status: string, headers: string[]): void;
  body(chunk: Buffer): void;
  end(): void;
  /** The response cannot be completed: `why` says what happened. */
  fail(why: 'abort' | 'worker-died'): void;
  /** Lets the link stop reading while the client is slow, so memory stays bounded. */
  bindFlow(pause: () => void, resume: () => void): void;
}

type LinkState = 'connecting' | 'waiting-hello' | 'idle' | 'busy' | 'retiring' | 'closed';

class Link implements FrameSink {
  state: LinkState = 'connecting';
  pid = 0;
  saidGoodbye = false;
  private exchange: Exchange | undefined;
  private readonly decoder = new FrameDecoder(this);
  readonly socket: net.Socket;

  constructor(private readonly pool: LinkPool, path: string) {
    this.socket = net.connect(path);
    this.socket.setNoDelay?.(true);
    this.socket.on('connect', () => {
      if (this.state === 'connecting') this.state = 'waiting-hello';
    });
    this.socket.on('data', (d: Buffer) => this.decoder.push(d));
    this.socket.on('error', () => {
      /* reported by close */
    });
    this.socket.on('close', () => this.closed());
  }

  send(ex: Exchange): void {
    this.state = 'busy';
    this.exchange = ex;
    ex.bindFlow(() => this.socket.pause(), () => this.socket.resume());
    const parts = ex.payload;
    if (parts.length === 1) this.socket.write(parts[0]!);
    else {
      this.socket.cork();
      for (const p of parts) this.socket.write(p);
      this.socket.uncork();
    }
  }

  // ---- frames from the worker ----
  hello(pid: number): void {
    this.pid = pid;
    if (this.state === 'waiting-hello' || this.state === 'connecting') {
      this.state = 'idle';
      this.pool.idle(this);
    }
  }
  head(status: string, headers: string[]): void {
    this.exchange?.head(status, headers);
  }
  body(chunk: Buffer): void {
    this.exchange?.body(chunk);
  }
  end(): void {
    const ex = this.exchange;
    this.exchange = undefined;
    this.socket.resume();
    // The link first: its worker gets the next queued request before the router spends a write (and the
    // client's wake-up) on this response, so the worker waits less between requests.
    this.afterResponse();
    ex?.end();
  }
  abort(): void {
    const ex = this.exchange;
    this.exchange = undefined;
    this.socket.resume();
    ex?.fail('abort');
    this.afterResponse();
  }
  goodbye(): void {
    // The worker is stopping. On a reload, close its link once the response in flight (if any) is over, and
    // a new link reaches a new worker. When the router itself is stopping (systemd signals every process of
    // the service at once), the link still serves the requests the router holds, until the pool closes.
    this.saidGoodbye = true;
    if (this.pool.isStopping) return;
    if (this.state === 'busy') this.state = 'retiring';
    else this.retire();
  }
  protocolError(message: string): void {
    this.pool.log(`link to worker pid ${this.pid}: ${message}; closing it`);
    this.socket.destroy();
  }

  private afterResponse(): void {
    if (this.state === 'retiring') return this.retire();
    if (this.state === 'busy') {
      this.state = 'idle';
      this.pool.idle(this);
    }
  }

  private retire(): void {
    this.state = 'retiring';
    this.pool.forget(this);
    this.socket.end();
  }

  /** Whether no worker has said HELLO on it yet: it waits in the link socket's accept queue, unused. */
  get unclaimed(): boolean {
    return this.state === 'connecting' || this.state === 'waiting-hello';
  }

  /**
   * Closes a link no worker has taken (fewer workers run). Nothing was ever sent on it; a worker that accepts
   * it at this very moment reads the end of it and goes back to accepting links, as after any link that closes.
   */
  drop(): void {
    this.state = 'retiring';
    this.socket.destroy();
  }

  private closed(): void {
    const wasRetiring = this.state === 'retiring';
    this.state = 'closed';
    const ex = this.exchange;
    this.exchange = undefined;
    if (ex) ex.fail('worker-died');
    this.pool.linkClosed(this, wasRetiring);
  }
}

export class LinkPool {
  private readonly links = new Set<Link>();
  private readonly idleLinks: Link[] = [];
  private readonly queue: Exchange[] = [];
  private queueHead = 0;
  private stopping = false;
  private wanted: number;

  constructor(
    private readonly path: string,
    wanted: number,
    readonly maxQueue: number,
    readonly log: (line: string) => void,
  ) {
    this.wanted = wanted;
    for (let i = 0; i < wanted; i++) this.open();
  }

  private open(): void {
    this.links.add(new Link(this, this.path));
  }

  get isStopping(): boolean {
    return this.stopping;
  }

  /** Number of requests waiting for a worker. */
  get waiting(): number {
    return this.queue.length - this.queueHead;
  }

  /** Queues a complete request; false when the queue is full (the caller answers 503). */
  submit(ex: Exchange): boolean {
    const link = this.idleLinks.pop();
    if (link) {
      link.send(ex);
      return true;
    }
    if (this.waiting >= this.maxQueue) return false;
    this.queue.push(ex);
    return true;
  }

  /** Takes back a request that has not been sent yet (its client went away). */
  withdraw(ex: Exchange): void {
    const i = this.queue.indexOf(ex, this.queueHead);
    if (i !== -1) this.queue.splice(i, 1);
  }

  idle(link: Link): void {
    if (this.queueHead < this.queue.length) {
      const ex = this.queue[this.queueHead]!;
      this.queue[this.queueHead++] = undefined as unknown as Exchange;
      if (this.queueHead > 1024 && this.queueHead * 2 > this.queue.length) {
        this.queue.splice(0, this.queueHead);
        this.queueHead = 0;
      }
      link.send(ex);
      return;
    }
    this.idleLinks.push(link);
  }

  /** A link that must get no more requests (its worker said goodbye). */
  forget(link: Link): void {
    const i = this.idleLinks.indexOf(link);
    if (i !== -1) this.idleLinks.splice(i, 1);
  }

  linkClosed(link: Link, retired: boolean): void {
    this.links.delete(link);
    this.forget(link);
    if (!retired && link.pid) this.log(`link to worker pid ${link.pid} closed unexpectedly (the worker died?)`);
    if (!this.stopping && this.links.size < this.wanted) {
      // A replacement: it waits in the link socket's queue until a worker (a respawned or new one) takes it.
      setImmediate(() => {
        if (!this.stopping && this.links.size < this.wanted) this.open();
      });
    }
  }

  /**
   * Changes how many links are kept (a reload changed `processes`, cheaper started or stopped workers). Up:
   * new links wait in the accept queue for the new workers. Down: the links no worker has taken are closed;
   * a stopping worker's link goes by itself after its GOODBYE and the response in flight, and is not replaced
   * once the pool has as many links as wanted.
   */
  resize(wanted: number): void {
    this.wanted = wanted;
    while (this.links.size < wanted) this.open();
    if (this.links.size <= wanted) return;
    let extra = this.links.size - wanted;
    for (const l of [...this.links].reverse()) {
      if (extra === 0) break;
      if (!l.unclaimed) continue;
      l.drop();
      extra--;
    }
  }

  /** Whether a request is in a worker or waiting for one. */
  get busy(): boolean {
    if (this.waiting > 0) return true;
    for (const l of this.links) if (l.state === 'busy' || l.state === 'retiring') return true;
    return false;
  }

  /** The router is stopping: no replacement links; links of stopping workers keep serving what is queued. */
  beginStop(): void {
    this.stopping = true;
  }

  close(): void {
    this.stopping = true;
    for (const l of this.links) l.socket.end();
  }
}
