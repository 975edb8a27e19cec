/** The cron schedule: field matching on given dates, the syntax checks, and unique-cron with a fake clock. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { ConfigError } from '../../src/config/errors.js';
import { cronMatches, cronSyntaxError, CronScheduler, parseCron, parseCron2 } from '../../src/master/cron.js';

const at = (y: number, mo: number, d: number, h: number, mi: number): Date => new Date(y, mo - 1, d, h, mi, 30);
const job = (text: string) => parseCron(text, undefined, 'cron');

test('cron fields: a number, -1 for any, -N for every N; all five must match', () => {
  // Saturday 2026-12-05 23:59
  const sat = at(2026, 12, 5, 23, 59);
  assert.equal(cronMatches(job('59 23 -1 -1 -1 x'), sat), true);
  assert.equal(cronMatches(job('59 22 -1 -1 -1 x'), sat), false);
  assert.equal(cronMatches(job('-1 -1 -1 -1 -1 x'), sat), true);
  assert.equal(cronMatches(job('-1 -1 -1 -1 6 x'), sat), true, 'weekday 6 is Saturday');
  assert.equal(cronMatches(job('-1 -1 -1 -1 0 x'), sat), false);
  assert.equal(cronMatches(job('-1 -1 5 12 -1 x'), sat), true, 'months count from 1');
  assert.equal(cronMatches(job('-1 -1 5 11 -1 x'), sat), false);
  assert.equal(cronMatches(job('-5 -1 -1 -1 -1 x'), at(2026, 12, 5, 10, 35)), true, '-5: every five minutes');
  assert.equal(cronMatches(job('-5 -1 -1 -1 -1 x'), at(2026, 12, 5, 10, 36)), false);
  assert.equal(cronMatches(job('0 -2 -1 -1 -1 x'), at(2026, 12, 5, 14, 0)), true, '-2 hours: even hours');
  assert.equal(cronMatches(job('0 -2 -1 -1 -1 x'), at(2026, 12, 5, 13, 0)), false);
});

test('cron syntax: what uWSGI refuses (even for --get), and what tsgi refuses at start', () => {
  assert.match(cronSyntaxError('sleep 30')!, /expected MINUTE HOUR DAY MONTH WEEKDAY COMMAND/);
  assert.ok(cronSyntaxError('5 * * * * echo x'), 'no * in the legacy syntax');
  assert.equal(cronSyntaxError('-5 -1 -1 -1 6'), undefined, 'uWSGI reads a line without a command');
  assert.throws(() => job('-5 -1 -1 -1 6'), (e: ConfigError) => e.code === 'BAD_VALUE' && /no command/.test(e.message));
  assert.throws(() => job('61 -1 -1 -1 -1 x'), /minute 61 is out of range \(0-59/);
  assert.throws(() => job('0 0 0 -1 -1 x'), /day of month 0 is out of range \(1-31/);
  const j = parseCron('59 23 -1 -1 -1 myscript arg1', undefined, 'unique-cron');
  assert.deepEqual([j.minute, j.hour, j.mday, j.month, j.wday, j.command, j.unique], [59, 23, -1, -1, -1, 'myscript arg1', true]);
});

test('the scheduler runs a job once per matching minute; unique-cron skips a run while the last one runs', async () => {
  let now = at(2026, 12, 5, 10, 0);
  const lines: string[] = [];
  const s = new CronScheduler([parseCron('-1 -1 -1 -1 -1 sleep 30', undefined, 'unique-cron'), job('-2 -1 -1 -1 -1 true')],
    (l) => lines.push(l), () => 2, 0, () => now);
  // (output to stderr: the jobs here print nothing)
  s.check();
  s.check(); // same minute: nothing new
  assert.equal(lines.filter((l) => l.startsWith('cron: running')).length, 2);
  now = at(2026, 12, 5, 10, 1);
  s.check();
  assert.equal(lines.filter((l) => l.startsWith('cron: running')).length, 2, 'minute 1: unique job still running, -2 job not due');
  assert.ok(lines.some((l) => /"sleep 30" is still running \(pid \d+\); unique-cron skips this run/.test(l)));
  const pid = Number(/running "sleep 30" \(pid (\d+)\)/.exec(lines.join('\n'))![1]);
  process.kill(pid, 'SIGTERM');
  await new Promise<void>((done) => {
    const t = setInterval(() => {
      if (lines.some((l) => /"sleep 30" \(pid \d+\) killed by SIGTERM/.test(l))) {
        clearInterval(t);
        done();
      }
    }, 20);
  });
  now = at(2026, 12, 5, 10, 2);
  s.check();
  const runs = lines.filter((l) => l.startsWith('cron: running'));
  assert.equal(runs.length, 4, 'minute 2: both run again');
  for (const m of runs.join('\n').matchAll(/"sleep 30" \(pid (\d+)\)/g)) {
    try {
      process.kill(Number(m[1]), 'SIGKILL');
    } catch {
      /* gone */
    }
  }
});

const job2 = (text: string) => parseCron2(text, undefined, 'cron2');

/** The pids of the live (not zombie) processes whose process group is `pgrp`. */
function liveInGroup(pgrp: number): number[] {
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'latin1');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(f[2]) === pgrp && f[0] !== 'Z') out.push(Number(name));
    } catch {
      /* gone meanwhile */
    }
  }
  return out;
}

test('day of month and day of week: either one is enough when both are numbers (crontab, uWSGI); 7 is Sunday', () => {
  // Saturday 2026-12-05; Sunday 2026-12-06; Monday 2026-12-07
  assert.equal(cronMatches(job('0 3 7 -1 6 x'), at(2026, 12, 5, 3, 0)), true, 'weekday 6 matches though the 5th is not the 7th');
  assert.equal(cronMatches(job('0 3 7 -1 6 x'), at(2026, 12, 7, 3, 0)), true, 'the 7th matches though Monday is not 6');
  assert.equal(cronMatches(job('0 3 7 -1 6 x'), at(2026, 12, 6, 3, 0)), false, 'neither');
  assert.equal(cronMatches(job('0 3 7 -1 -1 x'), at(2026, 12, 5, 3, 0)), false, 'only the day given: it must match');
  assert.equal(cronMatches(job('0 3 -2 -1 6 x'), at(2026, 12, 12, 3, 0)), true, 'a -N day is a step: both must hold');
  assert.equal(cronMatches(job('0 3 -2 -1 6 x'), at(2026, 12, 5, 3, 0)), false, 'the 5th is odd');
  assert.equal(cronMatches(job('0 3 -1 -1 7 x'), at(2026, 12, 6, 3, 0)), true, 'weekday 7 is Sunday');
  assert.throws(() => job('0 3 -1 -1 8 x'), /day of week 8 is out of range \(0-7/);
});

test('cron2: key=value list then the command; missing keys are -1; a bare command runs every minute', () => {
  const j = job2('minute=30,hour=5,unique=1 /usr/local/bin/backup.sh --all');
  assert.deepEqual([j.minute, j.hour, j.mday, j.month, j.wday, j.unique, j.harakiri, j.command], [30, 5, -1, -1, -1, true, undefined, '/usr/local/bin/backup.sh --all']);
  const every = job2('my command');
  assert.deepEqual([every.minute, every.hour, every.mday, every.month, every.wday, every.unique, every.command], [-1, -1, -1, -1, -1, false, 'my command']);
  assert.equal(job2('harakiri=0 my command').harakiri, -1, 'harakiri=0: never, even with cron-harakiri');
  assert.equal(job2('harakiri=30,week=7 x').harakiri, 30);
  assert.equal(job2('day=15,week=1 x').mday, 15);
  // What uWSGI refuses too: a key list with no command.
  assert.throws(() => job2('minute=39,hour=23'), (e: ConfigError) => e.code === 'BAD_VALUE' && /no command after the key=value list/.test(e.message));
  // What uWSGI ignores and tsgi names.
  assert.throws(() => job2('minute=1,hours=2 x'), /unknown key 'hours'/);
  assert.throws(() => job2('minute=abc x'), /minute must be a whole number/);
  assert.throws(() => job2('hour=24 x'), /hour 24 is out of range/);
  assert.throws(() => job2('minute=-10,legion=mycluster my command'), (e: ConfigError) => e.code === 'NOT_IMPLEMENTED' && /legion/.test(e.message));
});

test('cron harakiri: a run past its harakiri is killed with what it started; harakiri=0 exempts a job from cron-harakiri', async () => {
  const now = at(2026, 12, 5, 10, 0);
  const lines: string[] = [];
  const s = new CronScheduler([job2('harakiri=1 sleep 30; echo never'), job2('harakiri=0 sleep 30'), job('-1 -1 -1 -1 -1 sleep 31')],
    (l) => lines.push(l), () => 2, 2, () => now);
  s.check();
  const pidOf = (cmd: string) => Number(new RegExp(`running "${cmd}" \\(pid (\\d+)\\)`).exec(lines.join('\n'))![1]);
  const waitFor = (re: RegExp) => new Promise<void>((done) => {
    const t = setInterval(() => {
      if (lines.some((l) => re.test(l))) {
        clearInterval(t);
        done();
      }
    }, 20);
  });
  await waitFor(/"sleep 30; echo never" \(pid \d+\) killed by SIGKILL/);
  assert.ok(lines.some((l) => /"sleep 30; echo never" \(pid \d+\) still running after its harakiri of 1 s; killing it/.test(l)));
  await waitFor(/"sleep 31" \(pid \d+\) killed by SIGKILL/);
  assert.ok(lines.some((l) => /"sleep 31" \(pid \d+\) still running after its harakiri of 2 s/.test(l)), 'cron-harakiri applies to cron too');
  // The sleep the shell started went with it: no live process is left in its process group (a zombie may be,
  // where PID 1 does not reap orphans).
  const group = pidOf('sleep 30; echo never');
  await new Promise((r) => setTimeout(r, 100));
  assert.deepEqual(liveInGroup(group), [], 'the whole process group was killed');
  const exempt = pidOf('sleep 30');
  assert.ok(!lines.some((l) => l.includes(`"sleep 30" (pid ${exempt})`) && l.includes('killed')), 'harakiri=0 job still runs');
  process.kill(exempt, 'SIGKILL');
  await waitFor(new RegExp(`"sleep 30" \\(pid ${exempt}\\) killed by SIGKILL`));
});
