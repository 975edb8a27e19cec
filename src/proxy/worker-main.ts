/**
 * A worker process: loads the configuration from the snapshot the master sends (the exact bytes the master
 * validated), binds through the master's shared sockets, serves, and stops when told.
 */
import { SnapshotFs, type ConfSnapshot } from './conf/fs.js';
import { loadConf } from './conf/load.js';
import { Front } from './front.js';
import { openErrorLogs } from './logs.js';
import { dropPrivileges } from './privileges.js';
import { setPriority } from 'node:os';
import { STATS, setCountsSource, type Counts } from './stats.js';

const asked = new Map<number, (c: Counts) => void>();
let askIds = 0;
setCountsSource(() => new Promise((resolve) => {
  if (!process.send) {
    resolve(STATS.counts());
    return;
  }
  const id = ++askIds;
  // A master that does not answer (gone, busy) leaves the page with this worker's own numbers, not hanging.
  const timer = setTimeout(() => {
    asked.delete(id);
    resolve(STATS.counts());
  }, 1000);
  asked.set(id, (c) => {
    clearTimeout(timer);
    resolve(c);
  });
  send({ t: 'stats-ask', id });
}));

export type ToWorker =
  | { t: 'start'; snapshot: ConfSnapshot; confFile: string; prefix: string; globals: string | undefined; errorLog: string }
  | { t: 'quit' }
  | { t: 'stop' }
  | { t: 'reopen' }
  | { t: 'stats-get'; id: number }
  | { t: 'stats-sum'; id: number; counts: Counts };
/** stats-*: stub_status's numbers summed by the master (stats.ts): a worker asks, every worker answers. */
export type FromWorker = { t: 'hello' } | { t: 'ready' } | { t: 'failed'; message: string }
  | { t: 'stats-ask'; id: number } | { t: 'stats-is'; id: number; counts: Counts } | { t: 'stats-final'; counts: Counts };

let front: Front | undefined;
let stopping = false;

function send(m: FromWorker): void {
  process.send?.(m);
}

async function stop(graceful: boolean, timeoutMs: number): Promise<void> {
  if (stopping) return;
  stopping = true;
  if (front) await front.shutdown(graceful, timeoutMs);
  front?.errorLog.flushSync();
  // What this worker counted stays in the server's totals after it is gone, as nginx's shared counters do.
  if (front?.conf.connStats && process.send) process.send({ t: 'stats-final', counts: STATS.counts() } satisfies FromWorker, () => process.exit(0));
  else process.exit(0);
}

process.on('message', (m: ToWorker) => {
  if (m.t === 'start') {
    void (async () => {
      try {
        const conf = await loadConf({ confFile: m.confFile, prefix: m.prefix, globals: m.globals, fs: new SnapshotFs(m.snapshot) });
        const { logs } = openErrorLogs(conf, m.errorLog);
        front = new Front(conf, logs);
        await front.listen(false);
        // worker_priority: while still root, so that a negative value can be set.
        if (conf.main.workerPriority !== undefined) setPriority(conf.main.workerPriority);
        const err = dropPrivileges(conf);
        if (err) throw new Error(err);
        send({ t: 'ready' });
      } catch (e) {
        // Leave only once the master has the reason (an exit first would race the message).
        const m: FromWorker = { t: 'failed', message: (e as Error).message };
        if (process.send) process.send(m, () => process.exit(1));
        else process.exit(1);
      }
    })();
  } else if (m.t === 'quit') void stop(true, front?.conf.main.workerShutdownTimeoutMs ?? 0);
  else if (m.t === 'stop') void stop(false, 0);
  else if (m.t === 'reopen') front?.reopenLogs();
  else if (m.t === 'stats-get') send({ t: 'stats-is', id: m.id, counts: STATS.counts() });
  else if (m.t === 'stats-sum') {
    const done = asked.get(m.id);
    asked.delete(m.id);
    done?.(m.counts);
  }
});

// Messages sent before this module was loaded would be lost: the master waits for this greeting.
send({ t: 'hello' });

// The master coordinates signals; a terminal's Ctrl-C reaches the whole group, so workers wait for it.
for (const sig of ['SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGINT', 'SIGTERM'] as const) process.on(sig, () => {});
// The master is gone (killed): finish what is in flight and leave.
process.on('disconnect', () => void stop(true, 5000));
