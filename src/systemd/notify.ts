/**
 * systemd's notification protocol (sd_notify): READY=1 once every worker serves, RELOADING=1 during a reload,
 * STOPPING=1, STATUS= lines, and WATCHDOG=1 keep-alives when the unit has WatchdogSec=. Messages are
 * datagrams on the AF_UNIX socket named by NOTIFY_SOCKET (Node cannot send those: the native helper does).
 */
import { nativeHelper } from './native.js';

export class SystemdNotifier {
  private readonly socket: string | undefined;
  private watchdog: NodeJS.Timeout | undefined;
  private warned = false;

  /** Takes NOTIFY_SOCKET (and the watchdog settings) out of `env`, so workers and apps never see them. */
  constructor(env: NodeJS.ProcessEnv, private readonly log: (line: string) => void) {
    this.socket = env.NOTIFY_SOCKET || undefined;
    const usec = Number(env.WATCHDOG_USEC ?? 0);
    const forUs = env.WATCHDOG_PID === undefined || Number(env.WATCHDOG_PID) === process.pid;
    for (const k of ['NOTIFY_SOCKET', 'WATCHDOG_USEC', 'WATCHDOG_PID']) delete env[k];
    if (this.socket && usec > 0 && forUs) {
      // Twice per period, as systemd recommends.
      this.watchdog = setInterval(() => this.send('WATCHDOG=1'), Math.max(1, Math.floor(usec / 2000)));
      this.watchdog.unref();
    }
  }

  get enabled(): boolean {
    return this.socket !== undefined;
  }

  send(message: string): void {
    if (!this.socket) return;
    const native = nativeHelper();
    if (!native) {
      if (!this.warned) {
        this.warned = true;
        this.log('NOTIFY_SOCKET is set but the native helper was not built (no C compiler at install?): systemd is not notified');
      }
      return;
    }
    const rc = native.notify(this.socket, message);
    if (rc < 0 && !this.warned) {
      this.warned = true;
      this.log(`cannot notify systemd on ${this.socket} (errno ${-rc})`);
    }
  }

  milestone(what: 'ready' | 'reloading' | 'reloaded' | 'reload-failed' | 'stopping', status: string): void {
    switch (what) {
      case 'ready':
      case 'reloaded':
        return this.send(`READY=1\nSTATUS=${status}`);
      case 'reload-failed':
        // Serving on, with the previous configuration (after RELOADING=1, systemd waits for READY=1).
        return this.send(`READY=1\nSTATUS=reload failed, still serving: ${status}`);
      case 'reloading':
        return this.send(`RELOADING=1\nMONOTONIC_USEC=${process.hrtime.bigint() / 1000n}\nSTATUS=${status}`);
      case 'stopping':
        if (this.watchdog) clearInterval(this.watchdog);
        return this.send(`STOPPING=1\nSTATUS=${status}`);
    }
  }
}
