/**
 * Real processes for integration tests: tsgi, nginx, uWSGI, venvs, temp dirs and free ports.
 * Every wait has a generous safety timeout; no test passes or fails on timing.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { tsgiBin } from './paths.js';

/** A fresh temp dir readable by every user (workers may run as nobody, nginx as www-data). */
export function tempDir(prefix = 'tsgi-test-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  chmodSync(dir, 0o755);
  return dir;
}

export function writeFiles(dir: string, files: Record<string, string>): void {
  for (const [name, text] of Object.entries(files)) {
    const p = join(dir, name);
    mkdirSync(join(p, '..'), { recursive: true });
    writeFileSync(p, text);
  }
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

export const SYSTEM_PYTHON = '/usr/bin/python3';

/**
 * A virtualenv made from Debian's Python with its site packages (Flask, Django), created once per machine
 * and shared by the tests (made in a private dir, then renamed into place, so parallel tests never see half of it).
 */
export function sharedVenv(): string {
  const target = join(tmpdir(), 'tsgi-test-venv-sys');
  if (existsSync(join(target, 'bin/python3'))) return target;
  const staging = mkdtempSync(join(tmpdir(), 'tsgi-venv-staging-'));
  const venv = join(staging, 'venv');
  const r = spawnSync(SYSTEM_PYTHON, ['-m', 'venv', '--system-site-packages', venv], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`python3 -m venv failed: ${r.stderr}`);
  try {
    renameSync(venv, target);
  } catch {
    /* another test made it first */
  }
  rmSync(staging, { recursive: true, force: true });
  chmodSync(target, 0o755);
  return target;
}

/** Environment of a shell where `source VENV/bin/activate` was run, as the guide does. */
export function activatedEnv(venv: string, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, VIRTUAL_ENV: venv, PATH: `${venv}/bin:${process.env.PATH ?? ''}`, ...extra };
  for (const k of Object.keys(env)) if (k.startsWith('UWSGI_') || k.startsWith('TSGI_')) delete env[k];
  return env;
}

export interface RunningProcess {
  child: ChildProcess;
  pid: number;
  /** Everything written to stdout and stderr so far. */
  output(): string;
  /** Resolves when a line matching `re` has been written (rejects if the process exits first). */
  waitFor(re: RegExp, timeoutMs?: number): Promise<string>;
  /** Resolves with the exit status (or signal) once the process is gone. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  kill(signal?: NodeJS.Signals): void;
}

export function startProcess(cmd: string, args: readonly string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): RunningProcess {
  const child = spawn(cmd, args, { cwd: opts.cwd, env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const waiters: Array<{ re: RegExp; resolve: (s: string) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }> = [];
  const check = (): void => {
    for (const w of [...waiters]) {
      const m = w.re.exec(out);
      if (m) {
        clearTimeout(w.timer);
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(m[0]);
      }
    }
  };
  child.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
    check();
  });
  child.stderr!.on('data', (d: Buffer) => {
    out += d.toString();
    check();
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.on('close', (code, signal) => {
      for (const w of waiters.splice(0)) {
        clearTimeout(w.timer);
        w.reject(new Error(`${cmd} exited (${code ?? signal}) before printing ${w.re}; output:\n${out}`));
      }
      resolve({ code, signal });
    });
  });
  return {
    child,
    pid: child.pid!,
    output: () => out,
    waitFor(re, timeoutMs = 30_000) {
      const m = re.exec(out);
      if (m) return Promise.resolve(m[0]);
      if (child.exitCode !== null || child.signalCode !== null) return Promise.reject(new Error(`${cmd} already exited; output:\n${out}`));
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          waiters.splice(waiters.findIndex((w) => w.timer === timer), 1);
          reject(new Error(`timed out waiting for ${re}; output:\n${out}`));
        }, timeoutMs);
        waiters.push({ re, resolve, reject, timer });
      });
    },
    exited,
    kill(signal = 'SIGTERM') {
      try {
        child.kill(signal);
      } catch {
        /* gone */
      }
    },
  };
}

/** Starts `tsgi ARGS` and waits until its workers serve. */
export async function startTsgi(args: readonly string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; ready?: boolean } = {}): Promise<RunningProcess> {
  const p = startProcess(tsgiBin, args, opts);
  if (opts.ready !== false) await p.waitFor(/ready: \d+ worker/);
  return p;
}

/** Stops a process with a signal and waits for it; SIGKILL if it has not gone within the safety timeout. */
export async function stopProcess(p: RunningProcess, signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 60_000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  if (p.child.exitCode !== null || p.child.signalCode !== null) return p.exited;
  p.kill(signal);
  const t = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
  const r = await p.exited;
  clearTimeout(t);
  return r;
}

/** Direct children of a process (from /proc). */
export function childPids(pid: number): number[] {
  const r = spawnSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' });
  return r.stdout.split('\n').filter(Boolean).map(Number);
}

/** The name a process gave itself (/proc/PID/comm), '' when it is gone. */
export function processName(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return '';
  }
}

/**
 * The workers of a tsgi master: its descendants named "tsgi worker N" (spawned by the master, or forked by
 * the app loader when the app is preloaded).
 */
export function workerPids(masterPid: number): number[] {
  const out: number[] = [];
  const visit = (pid: number): void => {
    for (const c of childPids(pid)) {
      if (processName(c).startsWith('tsgi worker')) out.push(c);
      visit(c);
    }
  };
  visit(masterPid);
  return out.sort((a, b) => a - b);
}

export const NGINX = '/usr/sbin/nginx';

/**
 * Runs the real nginx with `httpBlock` inside `http { }`, from its own prefix dir, in the foreground.
 * Workers run as www-data (as on a Debian server) when the tests run as root.
 */
export async function startNginx(httpBlock: string, port: number): Promise<RunningProcess & { prefix: string }> {
  const prefix = tempDir('tsgi-nginx-');
  mkdirSync(join(prefix, 'logs'));
  const asRoot = process.getuid?.() === 0;
  const conf = `${asRoot ? 'user www-data;' : ''}
worker_processes 1;
pid ${prefix}/nginx.pid;
error_log ${prefix}/logs/error.log;
events { worker_connections 1024; }
http {
  access_log ${prefix}/logs/access.log;
  client_body_temp_path ${prefix}/client_body;
  proxy_temp_path ${prefix}/proxy;
  uwsgi_temp_path ${prefix}/uwsgi;
  fastcgi_temp_path ${prefix}/fastcgi;
  scgi_temp_path ${prefix}/scgi;
  include /etc/nginx/mime.types;
${httpBlock}
}
`;
  writeFileSync(join(prefix, 'nginx.conf'), conf);
  const p = startProcess(NGINX, ['-p', prefix, '-c', join(prefix, 'nginx.conf'), '-e', join(prefix, 'logs/error.log'), '-g', 'daemon off;']);
  await waitForPort(port);
  return Object.assign(p, { prefix });
}

/**
 * nginx in front of a uwsgi Unix socket the way the guide sets it up (`include uwsgi_params;
 * uwsgi_pass unix:SOCK;` in `location /`). `http`: directives for the http block (client_max_body_size...);
 * `params`: another uwsgi_params file than Debian's.
 */
export function startNginxUwsgi(sock: string, port: number, opts: { http?: string; params?: string } = {}): Promise<RunningProcess & { prefix: string }> {
  return startNginx(`${opts.http ?? ''}
  server {
    listen 127.0.0.1:${port};
    server_name localhost;
    location / {
      include ${opts.params ?? '/etc/nginx/uwsgi_params'};
      uwsgi_pass unix:${sock};
    }
  }`, port);
}

export async function waitForPort(port: number, host = '127.0.0.1', timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const c = net.connect(port, host);
      c.once('connect', () => {
        c.destroy();
        resolve(true);
      });
      c.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nothing listens on ${host}:${port}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export interface HttpResult {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

/** One HTTP request with node:http (no keep-alive), returning status, headers and the whole body. */
export async function httpRequest(url: string, opts: { method?: string; headers?: Record<string, string>; body?: Buffer | string } = {}): Promise<HttpResult> {
  const http = await import('node:http');
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: opts.method ?? 'GET', headers: opts.headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(opts.body);
  });
}
