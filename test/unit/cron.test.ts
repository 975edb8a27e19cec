/** The cron schedule: field matching on given dates, the syntax checks, and unique-cron with a fake clock. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError } from '../../src/config/errors.js';
import { cronMatches, cronSyntaxError, CronScheduler, parseCron } from '../../src/master/cron.js';

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
    (l) => lines.push(l), () => 2, () => now);
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
