/** The machine and the versions of everything in the benchmark, for the record. */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import os from 'node:os';
import { resolve } from 'node:path';

export interface SystemInfo {
  date: string;
  host: string;
  kernel: string;
  cpus: number;
  cpuModel: string;
  memTotalMb: number;
  loadavgAtStart: string;
  versions: Record<string, string>;
}

function firstLine(text: string): string {
  return text.split('\n').map((l) => l.trim()).find(Boolean) ?? '';
}

/** Runs a command and returns the first non-empty line of its output (stdout, else stderr). */
export function versionOf(cmd: string, args: readonly string[], cwd?: string): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', cwd, timeout: 10_000 });
  if (r.error) return `unavailable (${(r.error as NodeJS.ErrnoException).code ?? r.error.message})`;
  return firstLine(r.stdout) || firstLine(r.stderr) || `exit ${r.status}`;
}

export function systemInfo(repoRoot: string, python: string): SystemInfo {
  const cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
  const model = /^model name\s*:\s*(.*)$/m.exec(cpuinfo)?.[1] ?? os.cpus()[0]?.model ?? 'unknown';
  const mem = /^MemTotal:\s+(\d+) kB/m.exec(readFileSync('/proc/meminfo', 'utf8'));
  let commit = versionOf('git', ['-C', repoRoot, 'rev-parse', '--short', 'HEAD']);
  const dirty = spawnSync('git', ['-C', repoRoot, 'status', '--porcelain', '--untracked-files=no'], { encoding: 'utf8' }).stdout?.trim();
  if (dirty) commit += ' (with uncommitted changes)';
  const tsgiBin = resolve(repoRoot, 'bin/tsgi');
  return {
    date: new Date().toISOString(),
    host: os.hostname(),
    kernel: `${os.type()} ${os.release()} ${os.arch()}`,
    cpus: os.availableParallelism(),
    cpuModel: model.trim(),
    memTotalMb: mem ? Math.round(Number(mem[1]) / 1024) : Math.round(os.totalmem() / 2 ** 20),
    loadavgAtStart: os.loadavg().map((x) => x.toFixed(2)).join(' '),
    versions: {
      tsgi: `${existsSync(tsgiBin) ? versionOf(process.execPath, [tsgiBin, '--version']) : 'missing'} (git ${commit})`,
      node: process.version,
      python: `${versionOf(python, ['-V'])} (${python})`,
      flask: versionOf(python, ['-c', 'import flask; print(flask.__version__)']),
      nginx: versionOf('/usr/sbin/nginx', ['-v']),
      uwsgi: `${versionOf('uwsgi', ['--version'])} (plugin python3)`,
      gunicorn: versionOf('gunicorn', ['--version']),
      wrk: versionOf('wrk', ['-v']),
    },
  };
}
