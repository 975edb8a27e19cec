/**
 * The Python worker's C speedups (native/tsgi_speedups.c): parse_vars in C gives what the Python reference
 * (protocol.parse_vars_py) gives, on well-formed, odd and malformed packets, and the worker uses it where it
 * was built. The install step builds it for /usr/bin/python3 when that has its headers and a C compiler is
 * there (scripts/build-native.mjs); then it must be there.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from '../helpers/paths.js';

const PYTHON = '/usr/bin/python3';
const pythonDir = join(repoRoot, 'python');

function buildable(): string | undefined {
  const inc = spawnSync(PYTHON, ['-c', 'import sysconfig; print(sysconfig.get_paths()["include"])'], { encoding: 'utf8' });
  if (inc.status !== 0) return `${PYTHON} is not there`;
  if (!existsSync(join(inc.stdout.trim(), 'Python.h'))) return `${PYTHON} has no headers (python3-dev): the install step could not build the C speedups`;
  if (spawnSync('cc', ['--version']).status !== 0) return 'no C compiler (cc): the install step could not build the C speedups';
  return undefined;
}

const notBuildable = buildable();

test('C parse_vars and the Python reference agree on 544 packets (well-formed, odd, malformed)', { skip: notBuildable }, () => {
  const r = spawnSync(PYTHON, [join(repoRoot, 'test/fixtures/tools/parse_vars_compare.py'), pythonDir], { encoding: 'utf8' });
  assert.notEqual(r.status, 3, `the C speedups were not built although they could be: ${r.stdout}`);
  assert.equal(r.status, 0, r.stdout + r.stderr);
  const m = /cases (\d+) accepted (\d+) differ 0/.exec(r.stdout);
  assert.ok(m, r.stdout);
  // Both outcomes were exercised: packets accepted and packets refused.
  assert.ok(Number(m[2]) > 10 && Number(m[2]) < Number(m[1]) - 100, r.stdout);
});

test('the worker parses with the C speedups where they are built', { skip: notBuildable }, () => {
  const r = spawnSync(PYTHON, ['-c', [
    'import sys',
    `sys.path.insert(0, ${JSON.stringify(pythonDir)})`,
    'from tsgi_worker import protocol, server, _speedups',
    'print(server.parse_vars is _speedups.parse_vars, protocol.parse_vars is _speedups.parse_vars)',
  ].join('\n')], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout.trim(), 'True True');
});
