import { existsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root (tests run from dist/test/..., sources live beside). */
export const repoRoot: string = (() => {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(resolve(dir, 'package.json'))) dir = dirname(dir);
  return dir;
})();

export const tsgiBin = resolve(repoRoot, 'bin/tsgi');

/**
 * The project's shared material (conformance data), which CI places beside the clone.
 * Returns undefined on a machine without it; tests that need it skip and say why.
 */
export function sharedDir(): string | undefined {
  const candidates = [process.env.TSGI_SHARED, resolve(repoRoot, '../shared')].filter((p): p is string => !!p);
  return candidates.find((p) => existsSync(resolve(p, 'conformance')));
}

export const SHARED_MISSING = 'conformance data not found: ../shared/conformance beside the clone (or TSGI_SHARED) is needed';
