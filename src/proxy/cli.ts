/**
 * tsgi-proxy's command line, as nginx's: -c -p -e -g -t -T -q -s -v -V -h.
 * `-t` loads the configuration exactly as a start would and stops before binding anything.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { ProxyConfError } from './conf/errors.js';
import { DiskFs } from './conf/fs.js';
import { loadConf, type LoadedConf } from './conf/load.js';
import { PRODUCT, VERSION } from './vars.js';

export const DEFAULTS = {
  prefix: '/usr/share/nginx/',
  conf: '/etc/nginx/nginx.conf',
  errorLog: '/var/log/nginx/error.log',
  pid: '/run/tsgi-proxy.pid',
};

export interface CliOptions {
  prefix: string;
  conf: string;
  errorLog: string | undefined;
  globals: string | undefined;
  test: boolean;
  dump: boolean;
  quiet: boolean;
  signal: string | undefined;
}

const USAGE = `Usage: ${PRODUCT} [-?hvVtTq] [-s signal] [-p prefix] [-e filename] [-c filename] [-g directives]

Options:
  -?,-h         : this help
  -v            : show version and exit
  -V            : show version and configure options then exit
  -t            : test configuration and exit
  -T            : test configuration, dump it and exit
  -q            : suppress non-error messages during configuration testing
  -s signal     : send signal to a master process: stop, quit, reopen, reload
  -p prefix     : set prefix path (default: ${DEFAULTS.prefix})
  -e filename   : set error log file (default: ${DEFAULTS.errorLog})
  -c filename   : set configuration file (default: ${DEFAULTS.conf})
  -g directives : set global directives out of configuration file
`;

class UsageError extends Error {}

export function parseArgs(argv: string[]): CliOptions | 'help' | 'version' | 'version-full' {
  const o: CliOptions = { prefix: '', conf: '', errorLog: undefined, globals: undefined, test: false, dump: false, quiet: false, signal: undefined };
  let show: 'help' | 'version' | 'version-full' | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (!a.startsWith('-') || a.length < 2) throw new UsageError(`invalid option: "${a}"`);
    for (let j = 1; j < a.length; j++) {
      const c = a[j]!;
      const value = (what: string): string => {
        const rest = a.slice(j + 1);
        j = a.length;
        if (rest) return rest;
        const next = argv[++i];
        if (next === undefined) throw new UsageError(`option "-${c}" requires ${what}`);
        return next;
      };
      switch (c) {
        case '?':
        case 'h':
          show = 'help';
          break;
        case 'v':
          show ??= 'version';
          break;
        case 'V':
          show = show === 'help' ? show : 'version-full';
          break;
        case 't':
          o.test = true;
          break;
        case 'T':
          o.test = true;
          o.dump = true;
          break;
        case 'q':
          o.quiet = true;
          break;
        case 'p':
          o.prefix = value('directory name');
          break;
        case 'c':
          o.conf = value('file name');
          break;
        case 'e':
          o.errorLog = value('file name');
          break;
        case 'g':
          o.globals = value('parameter');
          break;
        case 's': {
          const s = value('parameter');
          if (!['stop', 'quit', 'reopen', 'reload'].includes(s)) throw new UsageError(`invalid option: "-s ${s}"`);
          o.signal = s;
          break;
        }
        default:
          throw new UsageError(`invalid option: "${a.slice(j)}"`);
      }
    }
  }
  if (show) return show;
  return o;
}

/** Resolves prefix and file names as nginx does: -c and -e relative to the prefix. */
export function resolvePaths(o: CliOptions): { prefix: string; conf: string; errorLog: string } {
  const prefix = o.prefix ? resolve(o.prefix) + '/' : DEFAULTS.prefix;
  const conf = o.conf ? resolve(prefix, o.conf) : DEFAULTS.conf;
  const errorLog = o.errorLog === undefined ? DEFAULTS.errorLog : o.errorLog === 'stderr' ? 'stderr' : resolve(prefix, o.errorLog);
  return { prefix, conf, errorLog };
}

function say(line: string): void {
  process.stderr.write(`${PRODUCT}: ${line}\n`);
}

export async function loadFromCli(o: CliOptions): Promise<{ conf: LoadedConf; fs: DiskFs }> {
  const p = resolvePaths(o);
  const fs = new DiskFs();
  const conf = await loadConf({ confFile: p.conf, prefix: p.prefix, globals: o.globals, fs });
  return { conf, fs };
}

function dumpFiles(conf: LoadedConf, fs: DiskFs): void {
  const seen = new Set<string>();
  for (const f of conf.files) {
    if (seen.has(f)) continue;
    seen.add(f);
    const text = fs.snapshot.files[f];
    process.stdout.write(`# configuration file ${f}:\n${text ?? ''}${text && !text.endsWith('\n') ? '\n' : ''}\n`);
  }
}

function pidFilePath(conf: LoadedConf): string {
  return conf.main.pid ?? DEFAULTS.pid;
}

const SIGNALS: Record<string, NodeJS.Signals> = { stop: 'SIGTERM', quit: 'SIGQUIT', reopen: 'SIGUSR1', reload: 'SIGHUP' };

export async function main(argv: string[]): Promise<number> {
  let o: ReturnType<typeof parseArgs>;
  try {
    o = parseArgs(argv);
  } catch (e) {
    if (e instanceof UsageError) {
      say(e.message);
      return 1;
    }
    throw e;
  }
  if (o === 'help' || o === 'version' || o === 'version-full') {
    process.stderr.write(`${PRODUCT} version: ${PRODUCT}/${VERSION}\n`);
    if (o === 'version-full') {
      process.stderr.write(`built with Node.js ${process.version} (${process.versions.openssl ? `OpenSSL ${process.versions.openssl}` : 'no OpenSSL'})\n`);
      process.stderr.write(`TLS SNI support enabled\n`);
      process.stderr.write(`configure arguments: --prefix=${DEFAULTS.prefix} --conf-path=${DEFAULTS.conf} --error-log-path=${DEFAULTS.errorLog} --pid-path=${DEFAULTS.pid} --with-http_ssl_module\n`);
    }
    if (o === 'help') process.stderr.write(USAGE);
    return 0;
  }
  const paths = resolvePaths(o);
  let loaded: { conf: LoadedConf; fs: DiskFs };
  try {
    loaded = await loadFromCli(o);
  } catch (e) {
    if (e instanceof ProxyConfError) {
      say(`[emerg] ${e.message}`);
      if (o.test) say(`configuration file ${paths.conf} test failed`);
      return 1;
    }
    throw e;
  }
  for (const w of loaded.conf.warnings) say(`[warn] ${w}`);
  if (o.test) {
    if (!o.quiet) {
      say(`the configuration file ${paths.conf} syntax is ok`);
      say(`configuration file ${paths.conf} test is successful`);
    }
    if (o.dump) dumpFiles(loaded.conf, loaded.fs);
    return 0;
  }
  if (o.signal) {
    const pidFile = pidFilePath(loaded.conf);
    let text: string;
    try {
      text = readFileSync(pidFile, 'latin1');
    } catch (e) {
      say(`[error] open() "${pidFile}" failed (${(e as NodeJS.ErrnoException).code === 'ENOENT' ? '2: No such file or directory' : (e as Error).message})`);
      return 1;
    }
    const pid = Number(text.trim());
    if (!/^\d+$/.test(text.trim()) || pid <= 0) {
      say(`[error] invalid PID number "${text.trim()}" in "${pidFile}"`);
      return 1;
    }
    try {
      process.kill(pid, SIGNALS[o.signal]!);
    } catch (e) {
      say(`[alert] kill(${pid}, ${SIGNALS[o.signal]}) failed (${(e as Error).message})`);
      return 1;
    }
    return 0;
  }
  const { startMaster } = await import('./master.js');
  return startMaster({ options: o, paths, loaded: loaded.conf, snapshot: loaded.fs.snapshot });
}
