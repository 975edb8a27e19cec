/**
 * limit_req and limit_conn at request time (nginx's preaccess phase), once per request.
 *
 * limit_req is nginx's leaky bucket: each key's excess (in milli-requests) drains at the zone's rate and
 * grows by one request per request; above `burst` the request is refused, above `delay` it waits until
 * the excess is back at `delay`. limit_conn counts the requests of a key in progress.
 * The state lives in this worker process (docs/proxy.md: with N workers a client may get up to N times
 * the limit, as its connections land on different workers).
 */
import type { LimitConnRef, LimitReqRef } from './conf/model.js';
import type { Rq } from './request.js';

export type LimitOutcome = { kind: 'pass' } | { kind: 'delay'; ms: number } | { kind: 'reject'; status: number };

const PASS: LimitOutcome = { kind: 'pass' };

function lower(level: 'info' | 'notice' | 'warn' | 'error'): 'info' | 'notice' | 'warn' | 'error' {
  return level === 'error' ? 'warn' : level === 'warn' ? 'notice' : 'info';
}

/** limit_req: the zones are checked first and charged only if none refuses the request. */
export function checkLimitReq(r: Rq, refs: LimitReqRef[], log: (level: 'info' | 'notice' | 'warn' | 'error', msg: string) => void): LimitOutcome {
  const conf = r.conf;
  const now = Date.now();
  let delayMs = 0;
  let delayExcess = 0;
  let delayZone = '';
  const pending: Array<{ states: Map<string, { excess: number; last: number }>; key: string; excess: number; max: number }> = [];
  for (const ref of refs) {
    const zone = ref.zone!;
    const key = zone.key.eval(r);
    // Requests with an empty key are not counted, as in nginx.
    if (key === '' || key.length > 65535) continue;
    const st = zone.states.get(key);
    // A key seen for the first time starts empty (nginx's first request of a key has no excess).
    let excess = 0;
    if (st !== undefined) {
      const elapsed = Math.max(0, now - st.last);
      // Drained, plus this request, then floored at 0 (in that order, as nginx computes it).
      excess = Math.max(0, st.excess - (zone.rate * elapsed) / 1000 + 1000);
    }
    if (excess > ref.burst) {
      const shown = (excess / 1000).toFixed(3);
      if (conf.limitReqDryRun) {
        r.limitReqStatus = 'REJECTED_DRY_RUN';
        log(conf.limitReqLogLevel!, `limiting requests, dry run, excess: ${shown} by zone "${zone.name}"`);
        return PASS;
      }
      r.limitReqStatus = 'REJECTED';
      log(conf.limitReqLogLevel!, `limiting requests, excess: ${shown} by zone "${zone.name}"`);
      return { kind: 'reject', status: conf.limitReqStatus! };
    }
    pending.push({ states: zone.states, key, excess, max: zone.maxStates });
    if (excess > ref.delay) {
      const ms = Math.ceil(((excess - ref.delay) * 1000) / zone.rate);
      if (ms > delayMs) {
        delayMs = ms;
        delayExcess = excess;
        delayZone = zone.name;
      }
    }
  }
  for (const p of pending) {
    // Re-inserted, so the Map's order is least recently used first; a full zone forgets the oldest key.
    p.states.delete(p.key);
    if (p.states.size >= p.max) p.states.delete(p.states.keys().next().value!);
    p.states.set(p.key, { excess: p.excess, last: now });
  }
  // No key counted (all empty): no status, as in nginx.
  if (pending.length === 0) return PASS;
  if (delayMs === 0) {
    r.limitReqStatus = 'PASSED';
    return PASS;
  }
  const shown = (delayExcess / 1000).toFixed(3);
  if (conf.limitReqDryRun) {
    r.limitReqStatus = 'DELAYED_DRY_RUN';
    log(lower(conf.limitReqLogLevel!), `delaying requests, dry run, excess: ${shown}, by zone "${delayZone}"`);
    return PASS;
  }
  r.limitReqStatus = 'DELAYED';
  log(lower(conf.limitReqLogLevel!), `delaying request, excess: ${shown}, by zone "${delayZone}"`);
  return { kind: 'delay', ms: delayMs };
}

/** limit_conn: counts the request under each zone's key until the response ends. */
export function checkLimitConn(r: Rq, refs: LimitConnRef[], log: (level: 'info' | 'notice' | 'warn' | 'error', msg: string) => void): LimitOutcome {
  const conf = r.conf;
  const taken: Array<{ counts: Map<string, number>; key: string }> = [];
  for (const ref of refs) {
    const zone = ref.zone!;
    const key = zone.key.eval(r);
    if (key === '' || key.length > 255) continue;
    const n = zone.counts.get(key) ?? 0;
    if (n >= ref.max) {
      if (conf.limitConnDryRun) {
        r.limitConnStatus = 'REJECTED_DRY_RUN';
        log(conf.limitConnLogLevel!, `limiting connections, dry run, by zone "${zone.name}"`);
        continue;
      }
      for (const t of taken) release(t.counts, t.key);
      r.limitConnStatus = 'REJECTED';
      log(conf.limitConnLogLevel!, `limiting connections by zone "${zone.name}"`);
      return { kind: 'reject', status: conf.limitConnStatus! };
    }
    if (n === 0 && zone.counts.size >= zone.maxStates) {
      r.limitConnStatus = 'REJECTED';
      log('error', `could not allocate node in zone "${zone.name}"`);
      for (const t of taken) release(t.counts, t.key);
      return { kind: 'reject', status: conf.limitConnStatus! };
    }
    zone.counts.set(key, n + 1);
    taken.push({ counts: zone.counts, key });
  }
  if (r.limitConnStatus === '') r.limitConnStatus = 'PASSED';
  if (taken.length) {
    const done = (): void => {
      for (const t of taken) release(t.counts, t.key);
    };
    // 'close' follows every response, sent or cut short: the count is returned once.
    r.res.once('close', done);
  }
  return PASS;
}

function release(counts: Map<string, number>, key: string): void {
  const n = (counts.get(key) ?? 1) - 1;
  if (n <= 0) counts.delete(key);
  else counts.set(key, n);
}
