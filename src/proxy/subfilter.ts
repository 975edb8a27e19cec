/**
 * sub_filter: replaces strings in response bodies of the sub_filter_types (text/html always among them), as
 * nginx's sub module does — checked against nginx 1.22.1 in test/proxy/nginx-sub-filter.test.ts:
 * - the search strings are compared ignoring ASCII case only; both strings may hold variables, evaluated once
 *   when the response head is sent (a search string that comes out empty is left out);
 * - at each place in the body the earliest match wins, and among matches at the same place the first
 *   sub_filter written; the replaced text is not searched again;
 * - sub_filter_once on (the default) uses each search string once;
 * - a match split between two reads is found: text that may begin a match is held back until it is known;
 * - the head loses Content-Length (the body goes chunked), and with sub_filter_last_modified off (the default)
 *   Last-Modified and ETag; with it on, the ETag becomes weak. A static file's Range is not applied.
 * - nginx 1.22.1 applies it to any status (its own error pages included) and does not look at
 *   Content-Encoding: a compressed backend response is searched as bytes, as there.
 */
import type { ServerResponse } from 'node:http';
import type { LocConf } from './conf/model.js';
import type { Rq } from './request.js';

export function asciiLower(s: string): string {
  return /[A-Z]/.test(s) ? s.replace(/[A-Z]+/g, (m) => m.toLowerCase()) : s;
}

/** Whether a response of `type` (a Content-Type value) is filtered at this location (with `r`: and some search
 * string comes out non-empty for this request). */
export function subFilterApplies(c: LocConf, type: string, r?: Rq): boolean {
  if (c.subFilters === undefined) return false;
  const semi = type.indexOf(';');
  const t = asciiLower((semi < 0 ? type : type.slice(0, semi)).trim());
  const set = c.subFilterTypes;
  if (t !== 'text/html' && (set === undefined || !(set.has('*') || set.has(t)))) return false;
  return r === undefined || c.subFilters.some((f) => f.find.eval(r) !== '');
}

/** The streaming search and replace of one response. */
export class SubMatcher {
  private pending = '';
  private readonly used: boolean[];
  private left: number;
  private readonly maxLen: number;

  constructor(private readonly pats: string[], private readonly reps: string[], private readonly once: boolean) {
    this.used = pats.map(() => false);
    this.left = pats.length;
    this.maxLen = Math.max(...pats.map((p) => p.length));
  }

  /** The text that can go out now; `final`: the body ends here. */
  push(chunk: string, final: boolean): string {
    const text = this.pending === '' ? chunk : this.pending + chunk;
    this.pending = '';
    if (this.left === 0) return text;
    const low = asciiLower(text);
    const len = text.length;
    const next: number[] = this.pats.map(() => -2);
    let out = '';
    let pos = 0;
    for (;;) {
      if (this.left === 0) return out + text.slice(pos);
      let best = -1;
      let bi = -1;
      for (let k = 0; k < this.pats.length; k++) {
        if (this.used[k]) continue;
        let i = next[k]!;
        if (i !== -1 && i < pos) next[k] = i = low.indexOf(this.pats[k]!, pos);
        if (i >= 0 && (best < 0 || i < best)) {
          best = i;
          bi = k;
        }
      }
      const hold = final ? len : this.partialFrom(low, pos);
      if (best >= 0 && best < hold) {
        out += text.slice(pos, best) + this.reps[bi]!;
        pos = best + this.pats[bi]!.length;
        if (this.once) {
          this.used[bi] = true;
          this.left--;
        }
        continue;
      }
      this.pending = text.slice(hold);
      return out + text.slice(pos, hold);
    }
  }

  /** The first place at or after `pos` from which the rest of the text could begin a search string. */
  private partialFrom(low: string, pos: number): number {
    const len = low.length;
    for (let p = Math.max(pos, len - this.maxLen + 1); p < len; p++) {
      const tail = low.slice(p);
      for (let k = 0; k < this.pats.length; k++) {
        if (!this.used[k] && this.pats[k]!.length > tail.length && this.pats[k]!.startsWith(tail)) return p;
      }
    }
    return len;
  }
}

/**
 * Called from sendHead when the location has sub_filter: decides for this response, edits the head in place
 * and returns the function that routes the body through the matcher (called once every other body filter is
 * in place), or undefined when the response is left alone.
 */
export function prepareSubFilter(r: Rq, list: string[]): ((res: ServerResponse) => void) | undefined {
  const c = r.conf;
  let type = '';
  for (let i = 0; i < list.length; i += 2) {
    const k = list[i]!.toLowerCase();
    if (k === 'content-type') type = list[i + 1]!;
    else if (k === 'content-length' && list[i + 1]!.trim() === '0') return undefined;
  }
  if (!subFilterApplies(c, type)) return undefined;
  const pats: string[] = [];
  const reps: string[] = [];
  for (const f of c.subFilters!) {
    const p = asciiLower(f.find.eval(r));
    if (p === '') continue;
    pats.push(p);
    reps.push(f.replacement.eval(r));
  }
  // Every search string came out empty: the response is left as it is, head included (nginx too).
  if (pats.length === 0) return undefined;
  const lastModified = c.subFilterLastModified === true;
  for (let i = 0; i < list.length; i += 2) {
    const k = list[i]!.toLowerCase();
    if (k === 'content-length' || (!lastModified && (k === 'last-modified' || k === 'etag'))) {
      list.splice(i, 2);
      i -= 2;
    } else if (k === 'etag' && !list[i + 1]!.startsWith('W/')) list[i + 1] = 'W/' + list[i + 1]!;
  }
  if (r.method === 'HEAD') return undefined;
  const m = new SubMatcher(pats, reps, c.subFilterOnce !== false);
  return (res) => wrap(res, m);
}

function wrap(res: ServerResponse, m: SubMatcher): void {
  const write = res.write.bind(res) as (chunk: Buffer) => boolean;
  const end = res.end.bind(res) as (chunk?: Buffer) => ServerResponse;
  const text = (chunk: unknown): string =>
    chunk === undefined || chunk === null || typeof chunk === 'function' ? '' : Buffer.isBuffer(chunk) ? chunk.toString('latin1') : String(chunk);
  (res as unknown as { write: (c: unknown) => boolean }).write = (chunk: unknown) => {
    const out = m.push(text(chunk), false);
    return out === '' ? true : write(Buffer.from(out, 'latin1'));
  };
  (res as unknown as { end: (c?: unknown) => ServerResponse }).end = (chunk?: unknown) => {
    const out = m.push(text(chunk), true);
    return out === '' ? end() : end(Buffer.from(out, 'latin1'));
  };
}
