/**
 * What /proc says about the processes under test: the process tree of a server, its CPU time, its memory
 * (RSS and PSS), and how busy the whole machine was (to tell when something else competed for the cores).
 */
import { readdirSync, readFileSync } from 'node:fs';

/** Clock ticks per second of /proc/.../stat times (sysconf(_SC_CLK_TCK); 100 on Linux). */
export const CLK_TCK = 100;

interface StatLine {
  ppid: number;
  /** utime + stime, in clock ticks. */
  cpu: number;
  /** cutime + cstime: CPU time of waited-for children, in clock ticks. */
  childCpu: number;
}

function readStat(pid: number): StatLine | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // The command name may hold spaces and parentheses: fields are counted after its closing parenthesis.
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return {
    ppid: Number(rest[1]),
    cpu: Number(rest[11]) + Number(rest[12]),
    childCpu: Number(rest[13]) + Number(rest[14]),
  };
}

/** `root` and all its descendants that are alive now. */
export function processTree(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const st = readStat(Number(name));
    if (!st) continue;
    let list = children.get(st.ppid);
    if (!list) children.set(st.ppid, (list = []));
    list.push(Number(name));
  }
  const out: number[] = [];
  const todo = [root];
  while (todo.length) {
    const pid = todo.pop()!;
    if (!readStat(pid)) continue;
    out.push(pid);
    todo.push(...(children.get(pid) ?? []));
  }
  return out;
}

/** CPU time (user + system) used so far by the given processes, in seconds. */
export function cpuSeconds(pids: readonly number[]): number {
  let ticks = 0;
  for (const pid of pids) ticks += readStat(pid)?.cpu ?? 0;
  return ticks / CLK_TCK;
}

/** Per-process CPU snapshot, so a delta can be taken per process (processes may come and go). */
export function cpuSnapshot(pids: readonly number[]): Map<number, number> {
  const m = new Map<number, number>();
  for (const pid of pids) {
    const st = readStat(pid);
    if (st) m.set(pid, st.cpu);
  }
  return m;
}

/** CPU seconds used between two snapshots, by the processes present in the second one. */
export function cpuDelta(before: Map<number, number>, after: Map<number, number>): number {
  let ticks = 0;
  for (const [pid, t] of after) ticks += t - (before.get(pid) ?? t);
  return ticks / CLK_TCK;
}

/** CPU seconds of this process's children that have exited and been waited for (wrk, after each run). */
export function reapedChildrenCpuSeconds(): number {
  return (readStat(process.pid)?.childCpu ?? 0) / CLK_TCK;
}

/** CPU seconds this benchmark process itself has used. */
export function selfCpuSeconds(): number {
  return (readStat(process.pid)?.cpu ?? 0) / CLK_TCK;
}

export interface MachineCpu {
  /** Ticks the CPUs spent doing anything but idling or waiting for I/O, summed over CPUs. */
  busy: number;
  total: number;
}

export function machineCpu(): MachineCpu {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]!;
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal (guest times are already inside user/nice)
  const total = f.slice(0, 8).reduce((a, b) => a + b, 0);
  const idle = (f[3] ?? 0) + (f[4] ?? 0);
  return { busy: total - idle, total };
}

export interface Memory {
  /** Sum of resident set sizes, kB: shared pages (the interpreter, libraries) are counted once per process. */
  rssKb: number;
  /** Sum of proportional set sizes, kB: each shared page divided among the processes that map it. */
  pssKb: number;
  /** Sum of private pages (Private_Clean + Private_Dirty), kB: what the server would give back if it exited. */
  ussKb: number;
  processes: number;
  /** The same per process, master first. */
  each: Array<{ pid: number; command: string; rssKb: number; pssKb: number; ussKb: number }>;
}

function command(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean).join(' ').slice(0, 120);
  } catch {
    return '?';
  }
}

function statusField(pid: number, file: string, field: string): number {
  try {
    const text = readFileSync(`/proc/${pid}/${file}`, 'utf8');
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text);
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

/** Memory of a set of processes (a server's master and workers). */
export function memoryOf(pids: readonly number[]): Memory {
  let rssKb = 0;
  let pssKb = 0;
  let ussKb = 0;
  const each: Memory['each'] = [];
  for (const pid of pids) {
    const one = {
      pid,
      command: command(pid),
      rssKb: statusField(pid, 'status', 'VmRSS'),
      pssKb: statusField(pid, 'smaps_rollup', 'Pss'),
      ussKb: statusField(pid, 'smaps_rollup', 'Private_Clean') + statusField(pid, 'smaps_rollup', 'Private_Dirty'),
    };
    each.push(one);
    rssKb += one.rssKb;
    pssKb += one.pssKb;
    ussKb += one.ussKb;
  }
  return { rssKb, pssKb, ussKb, processes: pids.length, each };
}
