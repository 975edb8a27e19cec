#!/usr/bin/env node
// Runs every compiled test file under dist/test with node:test.
// Usage: node scripts/run-tests.mjs [filter...]   (a filter keeps files whose path contains it)
import { readdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
// Compiled tests of renamed or deleted sources would otherwise run again.
rmSync(join(root, 'dist/test'), { recursive: true, force: true });
const build = spawnSync(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', root], { stdio: 'inherit' });
if (build.status !== 0) process.exit(build.status ?? 1);

function walk(dir, out) {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) walk(p, out);
    else if (name.endsWith('.test.js')) out.push(p);
  }
  return out;
}
const filters = process.argv.slice(2);
const files = walk(join(root, 'dist/test'), []).sort()
  .filter((f) => filters.length === 0 || filters.some((x) => f.includes(x)));
// Integration tests start real servers on free ports and temp dirs, so files can run side by side. Tests in
// test/serial/ measure time or load the machine (wrk): they run afterwards, one at a time, on a quiet machine.
const isSerial = (f) => f.includes('/dist/test/serial/');
const concurrency = process.env.TSGI_TEST_CONCURRENCY ?? '2';
let status = 0;
for (const [batch, jobs] of [[files.filter((f) => !isSerial(f)), concurrency], [files.filter(isSerial), '1']]) {
  if (batch.length === 0) continue;
  const run = spawnSync(process.execPath, ['--test', `--test-concurrency=${jobs}`, ...batch], { stdio: 'inherit', cwd: root });
  if (run.status !== 0) status = run.status ?? 1;
}
process.exit(status);
