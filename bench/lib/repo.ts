/** The repository's root: the nearest directory above this file holding package.json (dist/bench/lib or bench/lib). */
import { existsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot: string = (() => {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(resolve(dir, 'package.json'))) {
    if (dirname(dir) === dir) throw new Error('bench: cannot find the repository root (package.json)');
    dir = dirname(dir);
  }
  return dir;
})();
