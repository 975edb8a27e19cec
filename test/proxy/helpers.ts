/**
 * Helpers for tsgi-proxy's integration tests: temp dirs, free ports, starting the real binaries (tsgi-proxy,
 * uwsgi, nginx) and talking raw HTTP over sockets. Waits poll for a condition with a generous safety limit;
 * no test passes or fails on timing.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, readFileSync, existsSync, writeFileSync } from 'node:fs';
import { connect, createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root (tests run from dist/test/proxy). */
export const ROOT = resolve(fileURLToPath(new URL('.', import.meta.url)), '../../..');
export const BIN = join(ROOT, 'bin/tsgi-proxy');
export const SHARED = process.env.TSGI_SHARED ?? resolve(ROOT, '../shared');
/** Debian's Python (with flask/django); the python3 first on PATH may be another build. */
export const PY = '/usr/bin/python3';

export function tempDir(tag: string): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), `tsgi-proxy-${tag}-`));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => res(p));
    });
  });
}

export function have(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
}

export function haveUwsgiPython(): boolean {
  return existsSync('/usr/bin/uwsgi') && (existsSync('/usr/lib/uwsgi/plugins/python3_plugin.so') || spawnSync('uwsgi', ['--plugin', 'python3', '--help']).status === 0);
}

export async function waitFor(what: string, cond: () => boolean | Promise<boolean>, limitMs = 20000): Promise<void> {
  const until = Date.now() + limitMs;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > until) throw new Error(`gave up waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

export function canConnect(port: number | string, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((res) => {
    const s = typeof port === 'string' ? connect(port) : connect(port, host);
    s.once('connect', () => {
      s.destroy();
      res(true);
    });
    s.once('error', () => res(false));
  });
}

export interface Proc {
  child: ChildProcess;
  out: () => string;
  exited: Promise<number | null>;
  stop: (sig?: NodeJS.Signals) => Promise<number | null>;
}

export function run(cmd: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Proc {
  const child = spawn(cmd, args, { cwd: opts.cwd, env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  const exited = new Promise<number | null>((res) => child.once('exit', (code, sig) => res(code ?? (sig ? 128 : null))));
  return {
    child,
    out: () => out,
    exited,
    stop: async (sig: NodeJS.Signals = 'SIGTERM') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(sig);
      return exited;
    },
  };
}

/** Runs tsgi-proxy to completion (for -t, -T, -v, -s) and returns its exit code and output. */
export function proxySync(args: string[], cwd?: string): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [BIN, ...args], { cwd, encoding: 'latin1' });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Starts tsgi-proxy in the foreground on a config (with `env` added to its environment); resolves once `port` accepts connections. */
export async function startProxy(dir: string, conf: string, port: number | string, env: NodeJS.ProcessEnv = {}): Promise<Proc> {
  const p = run(process.execPath, [BIN, '-p', dir, '-c', conf, '-e', 'error.log', '-g', 'daemon off;'], { cwd: dir, env: { ...process.env, ...env } });
  await waitFor(`tsgi-proxy on ${port}`, async () => {
    if (p.child.exitCode !== null) throw new Error(`tsgi-proxy exited: ${p.out()}`);
    return canConnect(port);
  });
  return p;
}

/**
 * tsgi-proxy and, when `withNginx`, the real nginx on the same configuration (`conf(port, who)`), each on a free
 * port of its own, in `dir` (proxy.conf, nginx.conf, nginx's pid file): for tests that compare their answers.
 */
export async function startSideBySide(dir: string, conf: (port: number, who: 'proxy' | 'nginx') => string, withNginx: boolean):
  Promise<{ ports: { proxy: number; nginx: number }; proxy: Proc; nginx: Proc | undefined }> {
  const ports = { proxy: await freePort(), nginx: await freePort() };
  writeFileSync(join(dir, 'proxy.conf'), conf(ports.proxy, 'proxy'));
  writeFileSync(join(dir, 'nginx.conf'), `pid ${dir}/nginx.pid;\n` + conf(ports.nginx, 'nginx'));
  const proxy = await startProxy(dir, 'proxy.conf', ports.proxy);
  if (!withNginx) return { ports, proxy, nginx: undefined };
  const nginx = run('/usr/sbin/nginx', ['-p', dir, '-c', join(dir, 'nginx.conf'), '-e', join(dir, 'nginx-error.log'), '-g', 'daemon off; user root;']);
  try {
    await waitFor('nginx', () => canConnect(ports.nginx));
  } catch (err) {
    await proxy.stop('SIGQUIT');
    await nginx.stop('SIGQUIT');
    throw err;
  }
  return { ports, proxy, nginx };
}

export async function startUwsgi(dir: string, socket: string, app: string, extra: string[] = []): Promise<Proc> {
  const p = run('uwsgi', ['--plugin', 'python3', '--socket', socket, '--wsgi-file', app, '--disable-logging', '--die-on-term', ...extra], { cwd: dir });
  await waitFor(`uwsgi on ${socket}`, async () => {
    if (p.child.exitCode !== null) throw new Error(`uwsgi exited: ${p.out()}`);
    return socket.startsWith('/') ? canConnect(socket) : canConnect(Number(socket.split(':')[1]));
  });
  return p;
}

export interface RawResponse {
  raw: string;
  status: number;
  headers: Map<string, string>;
  body: string;
}

export function parseRaw(raw: string): RawResponse {
  const end = raw.indexOf('\r\n\r\n');
  const head = end < 0 ? raw : raw.slice(0, end);
  const lines = head.split('\r\n');
  const status = Number(/^HTTP\/\d\.\d (\d{3})/.exec(lines[0] ?? '')?.[1] ?? 0);
  const headers = new Map<string, string>();
  for (const l of lines.slice(1)) {
    const i = l.indexOf(':');
    if (i > 0) {
      const k = l.slice(0, i).toLowerCase();
      const v = l.slice(i + 1).trim();
      headers.set(k, headers.has(k) ? `${headers.get(k)}, ${v}` : v);
    }
  }
  let body = end < 0 ? '' : raw.slice(end + 4);
  if (/chunked/i.test(headers.get('transfer-encoding') ?? '')) body = dechunk(body);
  return { raw, status, headers, body };
}

/** Decodes a chunked body (test side only: responses the proxy produced). */
export function dechunk(s: string): string {
  let out = '';
  let i = 0;
  for (;;) {
    const eol = s.indexOf('\r\n', i);
    if (eol < 0) return out;
    const size = parseInt(s.slice(i, eol), 16);
    if (!(size > 0)) return out;
    out += s.slice(eol + 2, eol + 2 + size);
    i = eol + 2 + size + 2;
  }
}

/** Sends raw bytes and reads until the server closes (HTTP/1.0 style), with a safety limit. */
export function rawRequest(port: number | string, data: string | Buffer, limitMs = 15000): Promise<RawResponse> {
  return new Promise((res, rej) => {
    const s: Socket = typeof port === 'string' ? connect(port) : connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      s.destroy();
      res(parseRaw(Buffer.concat(chunks).toString('latin1')));
    }, limitMs);
    s.on('data', (d) => chunks.push(d));
    s.on('error', (e) => {
      clearTimeout(timer);
      if (chunks.length) res(parseRaw(Buffer.concat(chunks).toString('latin1')));
      else rej(e);
    });
    s.on('end', () => {
      clearTimeout(timer);
      res(parseRaw(Buffer.concat(chunks).toString('latin1')));
    });
    s.write(data);
  });
}

/** A GET with Connection: close. */
export function get(port: number, path: string, headers: Record<string, string> = {}, method = 'GET'): Promise<RawResponse> {
  let h = `${method} ${path} HTTP/1.1\r\nHost: ${headers.Host ?? 'localhost'}\r\nConnection: close\r\n`;
  for (const [k, v] of Object.entries(headers)) if (k !== 'Host') h += `${k}: ${v}\r\n`;
  return rawRequest(port, h + '\r\n');
}

export function readText(path: string): string {
  try {
    return readFileSync(path, 'latin1');
  } catch {
    return '';
  }
}

/**
 * `-t` on a configuration whose http block holds one line, for each [line, message] case: tsgi-proxy must exit 1
 * with a first line ending in `message in FILE:3`, and, with `withNginx`, `nginx -t` must give the same message
 * (`nginxAnyCase`: nginx names some keys as it stored them, lower-cased). Returns the differences, one line each.
 */
export function confErrorDiffs(dir: string, cases: Array<[string, string]>, withNginx: boolean, nginxAnyCase = false): string[] {
  const diffs: string[] = [];
  mkdirSync(dir, { recursive: true });
  for (const [directive, message] of cases) {
    const text = `events {}\nhttp {\n  ${directive}\n}\n`;
    writeFileSync(join(dir, 'bad.conf'), text);
    const ours = proxySync(['-t', '-q', '-p', dir + '/', '-c', 'bad.conf', '-e', 'stderr']);
    const line = ours.stderr.split('\n')[0] ?? '';
    const want = `${message} in ${join(dir, 'bad.conf')}:3`;
    if (ours.code !== 1 || !line.endsWith(want)) diffs.push(`${directive}: tsgi-proxy said "${line}", want "... ${want}"`);
    if (withNginx) {
      writeFileSync(join(dir, 'n.conf'), `pid ${dir}/n.pid;\n` + text);
      const n = spawnSync('/usr/sbin/nginx', ['-t', '-q', '-p', dir, '-c', join(dir, 'n.conf'), '-e', join(dir, 'n-error.log')], { encoding: 'latin1' });
      const nline = (n.stderr.split('\n').find((l) => l.includes('[emerg]')) ?? '').replace(/^.*\[emerg\] /, '');
      const expected = `${message} in ${join(dir, 'n.conf')}:4`;
      if (nginxAnyCase ? nline.toLowerCase() !== expected.toLowerCase() : nline !== expected) diffs.push(`${directive}: nginx said "${nline}"`);
    }
  }
  return diffs;
}
