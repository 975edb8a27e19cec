/**
 * cron, unique-cron and cron2: the master runs a shell command at the minutes a five-field schedule names.
 *
 *   cron = MINUTE HOUR DAY-OF-MONTH MONTH DAY-OF-WEEK COMMAND
 *   cron2 = [minute=M,hour=H,day=D,month=MO,week=W,unique=1,harakiri=SECS ]COMMAND
 *
 * Each field is a number, -1 (any value) or -N (every N: the value is a multiple of N, e.g. -5 in the minute
 * field is minutes 0, 5, 10...). Months count from 1, days of the week from 0 (Sunday; 7 is Sunday too).
 * Every field must match, except that when both the day of the month and the day of the week are given as
 * numbers either one matching is enough (crontab's rule, and uWSGI's). cron2's missing keys are -1, so
 * `cron2 = COMMAND` runs every minute. The schedule is looked at every second; a job runs once in each matching
 * minute, the first time the master looks in it (so a job whose schedule matches the minute tsgi starts in runs
 * at once). unique-cron (cron2's unique=1) skips a run while the previous run of the same job is still going.
 * A run still going after its harakiri (cron2's harakiri=SECS, else cron-harakiri; harakiri=0 exempts a job from
 * cron-harakiri) is killed with SIGKILL. Only created when a job is configured.
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
  /** cron2's harakiri=SECS: > 0 kill a run after that long, -1 never (harakiri=0), undefined: cron-harakiri. */
  harakiri?: number;
  /** As written, for log lines. */
  text: string;
}

const FIELDS = ['minute', 'hour', 'day of month', 'month', 'day of week'] as const;
const RANGES: ReadonlyArray<readonly [number, number]> = [[0, 59], [0, 23], [1, 31], [1, 12], [0, 7]];
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

const CRON2_KEYS = new Map<string, keyof CronSchedule | 'unique' | 'harakiri'>([
  ['minute', 'minute'], ['hour', 'hour'], ['day', 'mday'], ['month', 'month'], ['week', 'wday'], ['unique', 'unique'], ['harakiri', 'harakiri'],
]);

/**
 * Parses a cron2 value: `KEY=VALUE[,KEY=VALUE...] COMMAND`, or a bare COMMAND (no '=' before its first space).
 * uWSGI ignores keys it does not know; tsgi names them, as it does unknown options.
 */
export function parseCron2(value: string, origin: Origin | undefined, option: string): CronJob {
  const text = value.trim();
  const space = text.search(/\s/);
  const head = space < 0 ? text : text.slice(0, space);
  const bad = (why: string): ConfigError => new ConfigError('BAD_VALUE', `bad value '${value}': ${why}`, origin, option);
  if (!text) throw bad('a command is required');
  const job: CronJob = { minute: -1, hour: -1, mday: -1, month: -1, wday: -1, command: text, unique: false, text };
  if (!head.includes('=')) return job;
  if (space < 0) throw bad('no command after the key=value list (cron2 = minute=0,hour=3 COMMAND)');
  job.command = text.slice(space).trim();
  for (const item of head.split(',')) {
    const eq = item.indexOf('=');
    const key = eq < 0 ? item : item.slice(0, eq);
    const raw = eq < 0 ? '' : item.slice(eq + 1);
    if (key === 'legion') throw new ConfigError('NOT_IMPLEMENTED', `bad value '${value}': legion= needs uWSGI's legion subsystem, which tsgi does not implement`, origin, option);
    const field = CRON2_KEYS.get(key);
    if (!field) throw bad(`unknown key '${key}' (cron2 knows ${[...CRON2_KEYS.keys()].join(', ')})`);
    if (!/^-?\d+$/.test(raw)) throw bad(`${key} must be a whole number, not '${raw}'`);
    const n = Number(raw);
    if (field === 'unique') job.unique = n !== 0;
    else if (field === 'harakiri') {
      if (n < 0) throw bad('harakiri must be 0 (never) or a number of seconds');
      job.harakiri = n === 0 ? -1 : n;
    } else {
      const i = ['minute', 'hour', 'mday', 'month', 'wday'].indexOf(field);
      const [lo, hi] = RANGES[i]!;
      if (n >= 0 && (n < lo || n > hi)) throw bad(`${key} ${n} is out of range (${lo}-${hi}, -1 for any, -N for every N)`);
      job[field] = n;
    }
  }
  return job;
}

function fieldMatches(spec: number, value: number): boolean {
  if (spec === -1) return true;
  if (spec < -1) return value % -spec === 0;
  return spec === value;
}

/** Whether the schedule names the minute `date` falls in (local time). */
export function cronMatches(s: CronSchedule, date: Date): boolean {
  if (!(fieldMatches(s.minute, date.getMinutes()) && fieldMatches(s.hour, date.getHours()) && fieldMatches(s.month, date.getMonth() + 1))) return false;
  const wday = s.wday === 7 ? 0 : s.wday;
  const mdayOk = fieldMatches(s.mday, date.getDate());
  const wdayOk = fieldMatches(wday, date.getDay());
  // Both days given as numbers: either is enough. Otherwise both must hold (a -N step is a condition too).
  return s.mday >= 0 && wday >= 0 ? mdayOk || wdayOk : mdayOk && wdayOk;
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
    /** cron-harakiri: seconds after which a run is killed (0: never), for jobs without their own harakiri=. */
    public cronHarakiri = 0,
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
  replace(jobs: CronJob[], cronHarakiri = this.cronHarakiri): void {
    this.jobs = jobs;
    this.cronHarakiri = cronHarakiri;
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
    const harakiri = job.harakiri === undefined ? this.cronHarakiri : Math.max(job.harakiri, 0);
    let child: ChildProcess;
    try {
      const fd = this.logFd();
      // With a harakiri the run gets its own process group, so that the kill reaches what the shell started too.
      child = spawn('/bin/sh', ['-c', job.command], { stdio: ['ignore', fd, fd], detached: harakiri > 0 });
    } catch (err) {
      this.log(`cron: cannot run "${job.command}": ${(err as Error).message}`);
      return;
    }
    const pid = child.pid;
    this.running.set(id, child);
    this.log(`cron: running "${job.command}" (pid ${pid})`);
    const deadline = harakiri > 0 && pid ? setTimeout(() => {
      this.log(`cron: "${job.command}" (pid ${pid}) still running after its harakiri of ${harakiri} s; killing it`);
      try {
        process.kill(-pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }, harakiri * 1000) : undefined;
    deadline?.unref();
    child.on('error', (err) => this.log(`cron: "${job.command}": ${err.message}`));
    child.on('exit', (code, sig) => {
      if (deadline) clearTimeout(deadline);
      if (this.running.get(id) === child) this.running.delete(id);
      const secs = Math.round((Date.now() - started) / 1000);
      this.log(`cron: "${job.command}" (pid ${pid}) ${sig ? `killed by ${sig}` : `exited with status ${code}`} after ${secs} s`);
    });
  }
}
