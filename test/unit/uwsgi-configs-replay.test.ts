/**
 * Replays uWSGI 2.0.21's own answers to `uwsgi --ini FILE --get KEY` for the 461 ini files of the conformance
 * corpus and prints how often tsgi gives the same stdout and exit status.
 *
 * Two rates are printed. The raw rate counts every answer. The comparable rate leaves out answers where uWSGI
 * failed for a cause that lies in its build or in the machine the oracle ran on, not in the configuration
 * language: route actions whose router plugin Debian's modular build did not load (a pip-built uWSGI, the
 * guide's, has them built in), legion's cipher under the oracle's OpenSSL, directories and files the configs
 * name that did not exist there, DNS. Which answers are left out is decided from uWSGI's stderr alone, never
 * from tsgi's answer.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { readCommandLine } from '../../src/cli/tsgi.js';
import { sharedDir, SHARED_MISSING } from '../helpers/paths.js';

interface Answer { rc: number; stdout: string; stderr: string }
interface OracleFile { file: string; run_path: string; get?: Record<string, Answer> }

/** Route actions compiled into uWSGI's core: a route using one of these failed on its own syntax. */
const CORE_ROUTE_ACTIONS = new Set(['continue', 'last', 'break', 'goon', 'log', 'logvar', 'goto', 'addvar', 'addheader', 'delheader',
  'signal', 'send', 'send-crnl', 'setapp', 'setuser', 'sethome', 'setfile', 'setscriptname', 'setmethod', 'seturi',
  'setremoteaddr', 'setdocroot', 'setpathinfo', 'fixpathinfo', 'setprocname', 'alarm', 'flush', 'setmodifier1', 'setmodifier2',
  'disableheaders', 'clearheaders', 'harakiri', 'return', 'status', 'chdir', 'setenv', 'unsetenv', 'seturi']);

/** Why uWSGI's failure says nothing about the configuration language, or undefined when it does. */
function environmentCause(stderr: string): string | undefined {
  const route = /unable to register route "(?:[^"]*? )?([a-z0-9-]+):[^"]*"\s*$/.exec(stderr);
  if (route && !CORE_ROUTE_ACTIONS.has(route[1]!)) return 'route action from a router plugin Debian did not load';
  if (/EVP_EncryptInit_ex\(\)/.test(stderr)) return "legion cipher refused by the oracle's OpenSSL";
  if (/\[spooler directory\] access\(\): No such file/.test(stderr)) return 'spooler directory absent on the oracle machine';
  if (/open\("\/[^"]*"\): No such file or directory \[core\/uwsgi\.c/.test(stderr)) return 'file absent on the oracle machine';
  if (/uwsgi_resolve_ip\(\)/.test(stderr)) return 'no DNS on the oracle machine';
  if (/hook action not found: tcc/.test(stderr)) return 'tcc plugin not in the build';
  if (/\[uwsgi-ssl\] unable to assign certificate/.test(stderr)) return 'certificate files absent on the oracle machine';
  return undefined;
}

const shared = sharedDir();

test('uwsgi --get answers of 461 real-world ini files: tsgi agrees on at least 90% of the comparable ones', { skip: shared ? false : SHARED_MISSING }, (t) => {
  const base = join(shared!, 'conformance/uwsgi-configs');
  const oracle = JSON.parse(readFileSync(join(base, 'oracle-uwsgi-2.0.21.json'), 'utf8')) as { meta: { cwd: string; env: NodeJS.ProcessEnv }; results: OracleFile[] };
  const cwd = oracle.meta.cwd;
  for (const r of oracle.results) {
    mkdirSync(dirname(r.run_path), { recursive: true });
    copyFileSync(join(base, r.file), r.run_path);
  }
  const savedCwd = process.cwd();
  process.chdir(cwd);
  let total = 0;
  let agree = 0;
  let comparable = 0;
  let comparableAgree = 0;
  const excluded = new Map<string, number>();
  const mismatches = new Map<string, number>();
  const samples: string[] = [];
  try {
    for (const r of oracle.results) {
      for (const [key, want] of Object.entries(r.get ?? {})) {
        total++;
        let stdout = '';
        let stderr = '';
        const outcome = readCommandLine(['--ini', r.run_path, '--get', key], {
          env: { ...oracle.meta.env },
          cwd,
          stdout: (s) => (stdout += s),
          stderr: (s) => (stderr += s),
        });
        const rc = 'exit' in outcome ? outcome.exit : 0;
        const same = rc === want.rc && stdout === want.stdout;
        if (same) agree++;
        const cause = want.rc !== 0 ? environmentCause(want.stderr) : undefined;
        if (cause) {
          excluded.set(cause, (excluded.get(cause) ?? 0) + 1);
          continue;
        }
        comparable++;
        if (same) {
          comparableAgree++;
          continue;
        }
        const why = rc !== want.rc
          ? `exit ${rc}, uWSGI ${want.rc}: ${(want.rc ? want.stderr.trim().split('\n').pop() : stderr.trim()) ?? ''}`.slice(0, 110)
          : 'different value';
        mismatches.set(why, (mismatches.get(why) ?? 0) + 1);
        if (samples.length < 12) samples.push(`${r.file} ${key}: tsgi ${JSON.stringify(stdout)} (${rc}), uWSGI ${JSON.stringify(want.stdout)} (${want.rc})`);
      }
    }
  } finally {
    process.chdir(savedCwd);
  }
  const pct = (a: number, b: number): string => `${a}/${b} = ${((a / b) * 100).toFixed(1)}%`;
  t.diagnostic(`uwsgi-configs --get agreement, all answers: ${pct(agree, total)}`);
  t.diagnostic(`uwsgi-configs --get agreement, comparable answers: ${pct(comparableAgree, comparable)}`);
  for (const [why, n] of excluded) t.diagnostic(`  left out: ${n} × ${why}`);
  for (const [why, n] of [...mismatches].sort((a, b) => b[1] - a[1])) t.diagnostic(`  differs: ${n} × ${why}`);
  for (const s of samples) t.diagnostic(`  e.g. ${s}`);
  assert.ok(comparableAgree / comparable >= 0.9, `comparable agreement ${pct(comparableAgree, comparable)} is below 90%`);
});
