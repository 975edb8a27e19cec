/** Builds the error logs a process writes: the main-level error_log directives, else the -e / default file. */
import type { LoadedConf } from './conf/load.js';
import { ErrorLog, ErrorLogs } from './errorlog.js';

export function openErrorLogs(conf: LoadedConf | undefined, fallbackPath: string): { logs: ErrorLogs; problems: string[] } {
  const specs = conf?.main.errorLogs.length ? conf.main.errorLogs : [{ path: fallbackPath, level: 'error' }];
  const logs: ErrorLog[] = [];
  const problems: string[] = [];
  for (const s of specs) {
    const l = new ErrorLog(s.path, s.level);
    const p = l.open();
    if (p) problems.push(p);
    logs.push(l);
  }
  return { logs: new ErrorLogs(logs), problems };
}
