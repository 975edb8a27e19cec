/**
 * Request lines carry C's ctime(), as uWSGI prints it: the day of the month padded with a space ("Dec  5"),
 * in the Node side (router, Node workers) and in the Python worker alike.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { ctime } from '../../src/workers/node/log.js';
import { repoRoot } from '../helpers/paths.js';

// Noon UTC on a single-digit day: the same calendar day in every time zone within ±11 h.
const NOON = Date.UTC(2026, 11, 5, 12, 0, 0);

test('Node: ctime() pads a single-digit day with a space', () => {
  assert.match(ctime(NOON), /^Sat Dec {2}5 \d\d:00:00 2026$/);
});

test('Python worker: the request line date and %(ctime) pad a single-digit day with a space', () => {
  const code = [
    'import sys',
    `sys.path.insert(0, ${JSON.stringify(join(repoRoot, 'python'))})`,
    'from tsgi_worker.server import _ctime',
    'from tsgi_worker.logformat import VARIABLES',
    'class C: pass',
    'c = C()',
    `c.start = ${NOON / 1000}`,
    `print(_ctime(${NOON / 1000}))`,
    "print(VARIABLES['ctime'](c))",
  ].join('\n');
  const r = spawnSync('/usr/bin/python3', ['-c', code], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const [line, variable] = r.stdout.trim().split('\n');
  assert.match(line!, /^Sat Dec {2}5 \d\d:00:00 2026$/);
  assert.match(variable!, /^Sat Dec {2}5 \d\d:00:00 2026$/);
});
