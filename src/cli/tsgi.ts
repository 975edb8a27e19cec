/**
 * The `tsgi` command: read the configuration, answer the queries (--help, --version, --get), or start the
 * master. Every configuration problem is one line on stderr and exit status 1.
 */
import { ConfigError } from '../config/errors.js';
import { helpText } from '../config/help.js';
import { ConfigExit, runLogic } from '../config/logic.js';
import type { Entry } from '../config/origin.js';
import { cronSyntaxError } from '../master/cron.js';
import { buildSettings, checkEntries, logFormatLogvars, placeholderNames, type Settings } from '../config/resolve.js';
import { readSources } from '../config/sources.js';
import { vassalLink } from '../emperor/link.js';
import { TSGI_VERSION } from '../version.js';

export interface CliIo {
  env: NodeJS.ProcessEnv;
  cwd: string;
  stdout: (text: string) => void;
  stderr: (text: string) => void;
}

/** What reading the command line decided: an exit status now, or a server to start. */
export type CliOutcome = { exit: number } | { start: Settings; entries: Entry[] };

export function showConfig(entries: readonly Entry[]): string {
  const body = entries.map((e) => `${e.key} = ${e.value}`).join('\n');
  return `;tsgi instance configuration\n[uwsgi]\n${body}\n;end of configuration\n`;
}

/** Reads the whole configuration and answers the queries; the same path for the CLI and for tests. */
export function readCommandLine(argv: readonly string[], io: CliIo): CliOutcome {
  const warnings: string[] = [];
  try {
    const raw = readSources(argv, { env: io.env, cwd: io.cwd, warn: (l) => warnings.push(l) });
    if (raw.some((e) => e.key === 'help')) {
      io.stdout(helpText(TSGI_VERSION));
      return { exit: 0 };
    }
    if (raw.some((e) => e.key === 'version')) {
      io.stdout(`${TSGI_VERSION}\n`);
      return { exit: 0 };
    }
    const entries = runLogic(raw, { env: io.env, reloading: false, print: (l) => io.stdout(`${l}\n`) });
    const gets = entries.filter((e) => e.key === 'get');
    if (gets.length) {
      // uWSGI parses cron lines while it reads the configuration: a malformed one fails even a query.
      for (const e of entries) {
        const why = e.key === 'cron' || e.key === 'unique-cron' ? cronSyntaxError(e.value) : undefined;
        if (why) throw new ConfigError('BAD_VALUE', why, e.origin, e.key);
      }
      // uWSGI prints the first value of each key asked for, and nothing for a key that is not set.
      let out = '';
      for (const g of gets) {
        const e = entries.find((x) => x.key === g.value);
        if (e) out += `${e.value}\n`;
      }
      io.stdout(out);
      return { exit: 0 };
    }
    for (const w of warnings) io.stderr(`tsgi: warning: ${w}\n`);
    const settings = buildSettings(checkEntries(entries, placeholderNames(raw)), entries);
    const logvars = logFormatLogvars(settings.logFormat);
    if (logvars.length) {
      io.stderr(`tsgi: note: log-format: ${logvars.map((n) => `%(${n})`).join(' ')} ${logvars.length > 1 ? 'are' : 'is'} not a request variable: ` +
        `printed as the logvar the app sets with uwsgi.set_logvar(), '-' when unset (docs/python-uwsgi-module.md)\n`);
    }
    if (settings.showConfig) io.stdout(showConfig(entries));
    return { start: settings, entries };
  } catch (err) {
    if (err instanceof ConfigExit) return { exit: err.status };
    if (err instanceof ConfigError) {
      io.stderr(`tsgi: ${err.message}\n`);
      return { exit: 1 };
    }
    throw err;
  }
}

export async function main(argv: string[]): Promise<void> {
  if (argv[0] === 'top') {
    const { top } = await import('./top.js');
    process.exit(await top(argv.slice(1)));
  }
  // A vassal's configuration error goes to its emperor, which logs it once, naming the vassal.
  const link = vassalLink();
  let held = '';
  const outcome = readCommandLine(argv, {
    env: process.env,
    cwd: process.cwd(),
    stdout: (t) => process.stdout.write(t),
    stderr: (t) => (link ? (held += t) : process.stderr.write(t)),
  });
  if (link && held) {
    const lines = held.trimEnd().split('\n');
    const fatal = 'exit' in outcome && outcome.exit !== 0 ? lines.filter((l) => !l.startsWith('tsgi: warning: ')) : [];
    const rest = lines.filter((l) => !fatal.includes(l));
    if (rest.length) process.stderr.write(`${rest.join('\n')}\n`);
    if (fatal.length) return link.fatal('config', fatal.join(' ').replace(/^tsgi: /, ''));
  }
  if ('exit' in outcome) {
    process.exitCode = outcome.exit;
    return;
  }
  if (outcome.start.emperor) {
    const { startEmperor } = await import('../emperor/main.js');
    await startEmperor(outcome.start, outcome.entries, process.cwd());
    return;
  }
  const { startServer } = await import('../master/server.js');
  await startServer(outcome.start, outcome.entries, argv, process.cwd());
}
