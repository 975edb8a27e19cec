/**
 * cron and unique-cron: the master runs a shell command at the minutes a five-field schedule names.
 *
 *   cron = MINUTE HOUR DAY-OF-MONTH MONTH DAY-OF-WEEK COMMAND
 *
 * Each field is a number, -1 (any value) or -N (every N: the value is a multiple of N, e.g. -5 in the minute
 * field is minutes 0, 5, 10...). Months count from 1, days of the week from 0 (Sunday). All five fields must
 * match. The schedule is looked at every second; a job runs once in each matching minute, the first time the
 * master looks in it (so a job whose schedule matches the minute tsgi starts in runs at once). unique-cron
 * skips a run while the previous run of the same job is still going. Only created when a job is configured.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { ConfigError } from '../config/errors.js';
import type { Origin } from '../config/origin.js';

export interface CronSchedule {
  minute: number;
  hour: number;
  mday: number;
  month: number;
  wday: number;
}

export interface CronJob extends CronSchedule {
  command: string;
  unique: boolean;
  /** As written, for log lines. */
  text: string;
}

const FIELDS = ['minute', 'hour', 'day of month', 'month', 'day of week'] as const;
const RANGES: ReadonlyArray<readonly [number, number]> = [[0, 59], [0, 23], [1, 31], [1, 12], [0, 6]];
const SYNTAX = /^\s*(-?\d+)\s+(-?\d+)\s+(-?\d+)\s+(-?\d+)\s+(-?\d+)(?:\s+(.*))?$/s;

/**
 * The syntax uWSGI itself refuses while it reads the configuration (even for --get): five whole numbers
 * first. Returns why not, or undefined.
 */
export function cronSyntaxError(value: string): string | undefined {
  return SYNTAX.test(value) ? undefined : `bad value '${value}': expected MINUTE HOUR DAY MONTH WEEKDAY COMMAND (numbers, -1 for any, -N for every N)`;
}

/** Parses a cron (or unique-cron) value; a ConfigError naming the origin and option when it is not usable. */
export function parseCron(value: string, origin: Origin | undefined, option: string): CronJob {
  const m = SYNTAX.exec(value);
  if (!m) throw new ConfigError('BAD_VALUE', cronSyntaxError(value)!, origin, option);
  const nums = m.slice(1, 6).map(Number);
  nums.forEach((n, i) => {
    const [lo, hi] = RANGES[i]!;
    if (n >= 0 && (n < lo || n > hi)) {
      throw new ConfigError('BAD_VALUE', `bad value '${value}': ${FIELDS[i]} ${n} is out of range (${lo}-${hi}, -1 for any, -N for every N)`, origin, option);
    }
  });
  const command = (m[6] ?? '').trim();
  if (!command) throw new ConfigError('BAD_VALUE', `bad value '${value}': no command after the five schedule fields`, origin, option);
  const [minute, hour, mday, month, wday] = nums as [number, number, number, number, number];
  return { minute, hour, mday, month, wday, command, unique: option === 'unique-cron', text: value };
}

function fieldMatches(spec: number, value: number): boolean {
  if (spec === -1) return true;
  if (spec < -1) return value % -spec === 0;
  return spec === value;
}

/** Whether the schedule names the minute `date` falls in (local time). */
export function cronMatches(s: CronSchedule, date: Date): boolean {
  return fieldMatches(s.minute, date.getMinutes()) && fieldMatches(s.hour, date.getHours()) &&
    fieldMatches(s.mday, date.getDate()) && fieldMatches(s.month, date.getMonth() + 1) && fieldMatches(s.wday, date.getDay());
}

const minuteKey = (d: Date): number => Math.floor(d.getTime() / 60_000);

/** Runs the jobs; `check()` is what the timer calls, exposed with an injectable clock for tests. */
export class CronScheduler {
  private jobs: CronJob[];
  /** By job text: the minute it last ran in, and its running process (unique-cron). */
  private readonly lastRun = new Map<string, number>();
  private readonly running = new Map<string, ChildProcess>();
  private timer: NodeJS.Timeout | undefined;

  constructor(jobs: CronJob[], private readonly log: (line: string) => void, private readonly logFd: () => number,
    private readonly now: () => Date = () => new Date()) {
    this.jobs = jobs;
  }

  start(): void {
    for (const j of this.jobs) this.log(`cron: "${j.command}" registered (${j.unique ? 'unique-cron' : 'cron'} ${j.text.slice(0, j.text.length - j.command.length).trim()})`);
    this.check();
    this.timer = setInterval(() => this.check(), 1000);
    this.timer.unref();
  }

  /** New jobs after a reload: a job that stays keeps its last run, so it does not run twice in a minute. */
  replace(jobs: CronJob[]): void {
    this.jobs = jobs;
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  check(): void {
    const now = this.now();
    const key = minuteKey(now);
    for (const job of this.jobs) {
      const id = `${job.unique ? 'u' : 'c'} ${job.text}`;
      if (this.lastRun.get(id) === key || !cronMatches(job, now)) continue;
      this.lastRun.set(id, key);
      const previous = this.running.get(id);
      if (job.unique && previous) {
        this.log(`cron: "${job.command}" is still running (pid ${previous.pid}); unique-cron skips this run`);
        continue;
      }
      this.run(id, job);
    }
  }

  private run(id: string, job: CronJob): void {
    const started = Date.now();
    let child: ChildProcess;
    try {
      const fd = this.logFd();
      child = spawn('/bin/sh', ['-c', job.command], { stdio: ['ignore', fd, fd] });
    } catch (err) {
      this.log(`cron: cannot run "${job.command}": ${(err as Error).message}`);
      return;
    }
    const pid = child.pid;
    this.running.set(id, child);
    this.log(`cron: running "${job.command}" (pid ${pid})`);
    child.on('error', (err) => this.log(`cron: "${job.command}": ${err.message}`));
    child.on('exit', (code, sig) => {
      if (this.running.get(id) === child) this.running.delete(id);
      const secs = Math.round((Date.now() - started) / 1000);
      this.log(`cron: "${job.command}" (pid ${pid}) ${sig ? `killed by ${sig}` : `exited with status ${code}`} after ${secs} s`);
    });
  }
}
