/**
 * enable-metrics, metric, metrics-dir, metrics-dir-restore (docs/metrics.md): read and checked here; the master
 * (src/master/metrics.ts) builds the metric list from them.
 */
import { statSync } from 'node:fs';
import { resolve as resolvePath } from 'node:path';
import { ConfigError } from './errors.js';
import type { Origin } from './origin.js';
import type { OptionValues } from './resolve.js';

/** uWSGI's metric types, by the number its stats JSON shows. */
export const METRIC_TYPES = { counter: 0, gauge: 1, absolute: 2, alias: 3 } as const;
export type MetricType = keyof typeof METRIC_TYPES;

export interface UserMetric {
  name: string;
  type: MetricType;
  oid: string;
  initial: number;
  /** type=alias: the metric whose value this one shows. */
  alias: string | undefined;
  /** As written, and where: the master names them if the alias target does not exist. */
  text: string;
  origin: Origin;
}

export interface MetricsSettings {
  user: UserMetric[];
  dir: string | undefined;
  restore: boolean;
}

/** The keys uWSGI 2.0.21 reads in `metric` that tsgi has no machinery for (collectors are the master's C hooks). */
const REFUSED_KEYS = new Set(['collector', 'arg1', 'arg2', 'arg3', 'arg1n', 'arg2n', 'arg3n', 'children', 'reset_after']);
const NAME = /^[0-9A-Za-z._-]+$/;

export function readMetrics(values: OptionValues): MetricsSettings | undefined {
  const entries = values.all('metric');
  if (!values.bool('enable-metrics') && !entries.length) {
    for (const name of ['metrics-dir', 'metrics-dir-restore']) {
      const origin = values.origin(name);
      if (origin && values.get(name) !== 'false') throw new ConfigError('BAD_VALUE', 'has no effect without enable-metrics (or a metric)', origin, name);
    }
    return undefined;
  }
  const user: UserMetric[] = [];
  for (const { value, origin } of entries) {
    const bad = (why: string): ConfigError => new ConfigError('BAD_VALUE', `'${value}': ${why}`, origin, 'metric');
    const m: UserMetric = { name: '', type: 'counter', oid: '', initial: 0, alias: undefined, text: value, origin };
    if (!value.includes('=')) m.name = value.trim();
    else {
      for (const part of value.split(',')) {
        const eq = part.indexOf('=');
        if (eq < 0) throw bad(`'${part}' is not key=value`);
        const key = part.slice(0, eq).trim();
        const v = part.slice(eq + 1).trim();
        if (REFUSED_KEYS.has(key)) {
          throw new ConfigError('NOT_IMPLEMENTED', `'${value}': key '${key}' (metric collectors, children, reset) is not implemented in tsgi`, origin, 'metric');
        }
        if (key === 'name') m.name = v;
        else if (key === 'type') {
          if (!(v in METRIC_TYPES)) throw bad(`type '${v}' is not counter, gauge, absolute or alias`);
          m.type = v as MetricType;
        } else if (key === 'initial_value') {
          if (!/^-?\d+$/.test(v)) throw bad(`initial_value '${v}' is not an integer`);
          m.initial = Number(v);
        } else if (key === 'oid') {
          if (!/^[0-9.]*$/.test(v)) throw bad(`oid '${v}' is not digits and dots`);
          m.oid = v;
        } else if (key === 'alias') m.alias = v;
        else if (key === 'freq') {
          // Without a collector uWSGI's freq only paces the metrics-dir check, which never rewrites a user metric.
          if (!/^\d+$/.test(v)) throw bad(`freq '${v}' is not a number of seconds`);
        } else throw bad(`unknown key '${key}' (name, type, initial_value, oid, alias, freq)`);
      }
    }
    if (!m.name) throw bad('a metric needs a name');
    if (!NAME.test(m.name)) throw bad(`invalid metric name '${m.name}' (letters, digits, '.', '-', '_')`);
    if (m.type === 'alias' && !m.alias) throw bad('type=alias needs alias=METRIC');
    if (m.alias && m.type !== 'alias') throw bad('alias= needs type=alias');
    user.push(m);
  }
  let dir = values.get('metrics-dir');
  if (dir !== undefined) {
    const origin = values.origin('metrics-dir')!;
    dir = resolvePath(dir);
    let ok = false;
    try {
      ok = statSync(dir).isDirectory();
    } catch {
      /* below */
    }
    if (!ok) throw new ConfigError('BAD_VALUE', `'${dir}' is not a directory`, origin, 'metrics-dir');
  } else if (values.bool('metrics-dir-restore')) {
    throw new ConfigError('BAD_VALUE', 'has no effect without metrics-dir', values.origin('metrics-dir-restore')!, 'metrics-dir-restore');
  }
  return { user, dir, restore: values.bool('metrics-dir-restore') };
}
