/** Writing a response body with back-pressure: the app's next chunk is asked for only once the last one left. */
import type { ServerResponse } from 'node:http';

/** Resolves true when `res` can take more, false when the client has gone. */
export function writable(res: ServerResponse): Promise<boolean> {
  if (res.destroyed) return Promise.resolve(false);
  return new Promise((resolve) => {
    const done = (ok: boolean): void => {
      res.removeListener('drain', onDrain);
      res.removeListener('close', onClose);
      resolve(ok);
    };
    const onDrain = (): void => done(true);
    const onClose = (): void => done(false);
    res.on('drain', onDrain);
    res.on('close', onClose);
  });
}

/** Writes one chunk; waits while the client is slower than the app. Returns false once the client has gone. */
export async function send(res: ServerResponse, chunk: Uint8Array | string): Promise<boolean> {
  if (res.destroyed) return false;
  if (res.write(chunk)) return true;
  return writable(res);
}
