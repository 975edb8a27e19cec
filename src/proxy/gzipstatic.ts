/**
 * gzip_static: for a GET or HEAD of FILE, FILE.gz is sent instead (Content-Encoding: gzip; the type from
 * FILE's name; length, Last-Modified and ETag of the .gz) when the client may have it — `on`: the same test
 * as the gzip module (Accept-Encoding naming gzip without q=0, gzip_http_version, gzip_proxied with Via,
 * gzip_disable); `always`: whatever the client says. As nginx 1.22.1 does: no Accept-Ranges and Range is not
 * applied to the .gz; with `on` and gzip_vary, Vary: Accept-Encoding goes on the answer whenever FILE.gz exists
 * (the plain file's too, for a client that did not get the .gz); `always` adds no Vary.
 */
import type { Rq } from './request.js';

/** nginx's reading of Accept-Encoding: the token "gzip" (not "*"), its q-value not zero. */
function acceptsGzip(h: string | string[] | undefined): boolean {
  if (h === undefined) return false;
  const v = (Array.isArray(h) ? h.join(', ') : h).toLowerCase();
  let from = 0;
  for (;;) {
    const i = v.indexOf('gzip', from);
    if (i < 0) return false;
    from = i + 4;
    const before = i === 0 ? ',' : v[i - 1]!;
    const after = v[i + 4] ?? ',';
    if ((before !== ',' && before !== ' ') || (after !== ',' && after !== ';' && after !== ' ')) continue;
    const rest = v.slice(i + 4);
    const q = /^\s*;\s*q\s*=\s*([0-9.]+)/.exec(rest);
    if (q && !(Number(q[1]) > 0)) return false;
    return true;
  }
}

/** The gzip module's test of the request (ngx_http_gzip_ok), with what the gzip module here supports. */
export function gzipOk(r: Rq): boolean {
  const c = r.conf;
  const req = r.req;
  if (!acceptsGzip(req.headers['accept-encoding'])) return false;
  if (req.httpVersionMajor < 1 || (req.httpVersionMajor === 1 && req.httpVersionMinor === 0 && c.gzipHttpVersion === '1.1')) return false;
  if (req.headers.via !== undefined && c.gzipProxied !== 'any') return false;
  const ua = req.headers['user-agent'];
  if (ua && c.gzipDisable!.some((re) => re.test(ua))) return false;
  return true;
}
