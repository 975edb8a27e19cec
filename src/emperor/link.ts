/**
 * The link between the emperor and one vassal: Node's IPC channel (a socketpair the emperor opens when it spawns
 * the vassal), JSON messages both ways. The vassal is told it has an emperor by TSGI_VASSAL=<its name> in its
 * environment (an internal variable: never read as an option).
 *
 *   vassal → emperor   { type: 'milestone', what, status, sockets? }       ready (with its sockets) / reloading /
 *                                                                          reloaded / reload-failed (status: why) /
 *                                                                          stopping: the master's milestones
 *                      { type: 'fatal', kind: 'config' | 'startup', error } the vassal could not start; its one
 *                                                                          error line, which the emperor logs
 *   emperor → vassal   { type: 'stop', vacuum: true }                      its file was removed: stop gracefully
 *                                                                          and remove its Unix sockets
 *
 * Reloads and the other stops are plain signals (SIGHUP, SIGTERM, SIGINT): they work even when the channel does
 * not. When the channel closes (the emperor died), the vassal stops gracefully rather than serve unsupervised.
 *
 * This file is the vassal's side and is imported by the command line and the master, so it stays tiny.
 */
import type { Milestone } from '../master/arbiter.js';

/** The environment variable that marks a vassal (its value is the vassal's name). */
export const VASSAL_ENV = 'TSGI_VASSAL';

export type FatalKind = 'config' | 'startup';

export type VassalMessage =
  | { type: 'milestone'; what: Milestone; status: string; sockets?: string[] }
  | { type: 'fatal'; kind: FatalKind; error: string };

export type EmperorMessage = { type: 'stop'; vacuum: boolean };

export interface VassalLink {
  /** The vassal's name as its emperor knows it. */
  readonly name: string;
  /** Passes one of the master's milestones on (the same ones systemd hears of). */
  milestone(what: Milestone, status: string, sockets?: string[]): void;
  /** Sends the vassal's fatal error line to the emperor (which logs it), then exits with status 1. */
  fatal(kind: FatalKind, error: string): void;
  /** The emperor asks this vassal to stop (its file was removed). */
  onStop(handler: (vacuum: boolean) => void): void;
  /** The emperor is gone (its end of the channel closed). */
  onLost(handler: () => void): void;
}

let cached: VassalLink | undefined | null = null;

/** This process's link to its emperor, or undefined when it is not a vassal. */
export function vassalLink(): VassalLink | undefined {
  if (cached !== null) return cached;
  const name = process.env[VASSAL_ENV];
  if (!name || typeof process.send !== 'function' || !process.connected) return (cached = undefined);
  const send = (m: VassalMessage, done?: () => void): void => {
    if (!process.connected) return done?.();
    try {
      process.send!(m, undefined, undefined, () => done?.());
    } catch {
      done?.();
    }
  };
  // A request that arrives before the master is up to handle it is kept for the moment it is.
  let lost: (() => void) | undefined;
  let stop: ((vacuum: boolean) => void) | undefined;
  let stopAsked: boolean | undefined;
  process.on('message', (m: EmperorMessage) => {
    if (m?.type !== 'stop') return;
    if (stop) stop(m.vacuum === true);
    else stopAsked = m.vacuum === true;
  });
  process.on('disconnect', () => lost?.());
  cached = {
    name,
    milestone: (what, status, sockets) => send({ type: 'milestone', what, status, ...(sockets ? { sockets } : {}) }),
    fatal: (kind, error) => {
      process.exitCode = 1;
      send({ type: 'fatal', kind, error }, () => process.exit(1));
    },
    onStop: (h) => {
      stop = h;
      if (stopAsked !== undefined) h(stopAsked);
    },
    onLost: (h) => {
      lost = h;
      if (!process.connected) h();
    },
  };
  return cached;
}
