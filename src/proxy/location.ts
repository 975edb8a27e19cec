/**
 * Finding the location for a URI, in nginx's order: an exact (=) match wins at once; otherwise the longest
 * matching prefix is remembered, and its nested locations are searched the same way; unless that prefix
 * was marked ^~, regex locations are then tried in configuration order — the innermost level's first —
 * and the first match wins; if none matches, the remembered prefix is used.
 * A URI equal to a pass location's name minus its trailing "/" is answered with a 301 to the name, unless
 * a location has exactly that URI as its name.
 */
import type { LocationConf } from './conf/model.js';

export interface Found {
  location: LocationConf | null;
  captures: RegExpExecArray | null;
  /** Answer 301 to uri + "/" (the auto redirect of pass locations). */
  redirectSlash: boolean;
}

type Rc = 'exact' | 'redirect' | 'regex' | 'prefix' | 'none';

function findIn(list: LocationConf[], uri: string, out: Found): Rc {
  let best: LocationConf | null = null;
  let redirect: LocationConf | null = null;
  for (const l of list) {
    if (l.kind === 'exact') {
      if (l.name === uri) {
        out.location = l;
        out.captures = null;
        return 'exact';
      }
      continue;
    }
    if (l.kind !== 'prefix' && l.kind !== 'noregex') continue;
    if (uri.startsWith(l.name)) {
      if (!best || l.name.length > best.name.length) best = l;
    } else if (l.autoRedirect && l.name.length === uri.length + 1 && l.name.startsWith(uri)) redirect = l;
  }
  if (redirect && !(best && best.name === uri)) {
    out.location = redirect;
    out.captures = null;
    out.redirectSlash = true;
    return 'redirect';
  }
  if (best) {
    out.location = best;
    out.captures = null;
    if (best.children.length) {
      const inner = findIn(best.children, uri, out);
      if (inner === 'exact' || inner === 'redirect' || inner === 'regex') return inner;
    }
    if (best.kind === 'noregex') return 'prefix';
  }
  for (const l of list) {
    if (l.kind !== 'regex') continue;
    const m = l.regex!.exec(uri);
    if (m) {
      out.location = l;
      out.captures = m;
      if (l.children.length) {
        const inner = findIn(l.children, uri, out);
        // A nested regex match replaces the captures; a nested prefix keeps the outer captures.
        if (inner === 'prefix' || inner === 'none') out.captures = out.captures ?? m;
      }
      return 'regex';
    }
  }
  return best ? 'prefix' : 'none';
}

export function findLocation(list: LocationConf[], uri: string): Found {
  const out: Found = { location: null, captures: null, redirectSlash: false };
  findIn(list, uri, out);
  return out;
}
