/**
 * The parts of net.Socket's native side used where Node's llhttp binding consumes a socket's handle
 * (`parser.consume`, what node:http's own server does): the router's client connections and tsgi-proxy's
 * backend links. Bytes then bypass the stream, so the stream neither restarts the idle timer nor can pause
 * the reads; these do it. Node internals, kept in this one place.
 */
import type { Socket } from 'node:net';

interface SocketInternals {
  _handle: { readStart(): number; readStop(): number } | null;
  _unrefTimer(): void;
}

const internals = (socket: Socket): SocketInternals => socket as unknown as SocketInternals;

/** The native handle a parser can consume (null for a socket without one). */
export function nativeHandle(socket: Socket): object | null {
  return internals(socket)._handle;
}

/** Restarts the socket's idle timer, as a read through the stream would have. */
export function touchIdleTimer(socket: Socket): void {
  internals(socket)._unrefTimer();
}

/** Stops or restarts reading: through the handle when a parser consumes it, else through the stream. */
export function setReading(socket: Socket, consumed: boolean, on: boolean): void {
  if (consumed) {
    const handle = internals(socket)._handle;
    if (on) handle?.readStart();
    else handle?.readStop();
  } else if (on) socket.resume();
  else socket.pause();
}
