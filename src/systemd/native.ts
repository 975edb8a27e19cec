/** The optional native helper (native/tsgi_native.c), loaded on first use; undefined when it was not built. */
import { createRequire } from 'node:module';

export interface Native {
  notify(path: string, message: string): number;
}

let loaded: Native | null | undefined;

export function nativeHelper(): Native | undefined {
  if (loaded === undefined) {
    try {
      loaded = createRequire(import.meta.url)('../../../build/Release/tsgi_native.node') as Native;
    } catch {
      loaded = null;
    }
  }
  return loaded ?? undefined;
}
