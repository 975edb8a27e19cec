/**
 * Responses tsgi-proxy makes itself: status lines, the small HTML error pages, the status codes whose pages
 * carry a body, and the Date header.
 */
import { PRODUCT, VERSION } from './vars.js';

/** nginx's status-line reasons. A code not listed goes out with an empty reason ("HTTP/1.1 203 "), as in nginx. */
export const REASONS: Record<number, string> = {
  200: 'OK', 201: 'Created', 202: 'Accepted', 204: 'No Content', 206: 'Partial Content',
  301: 'Moved Permanently', 302: 'Moved Temporarily', 303: 'See Other', 304: 'Not Modified', 307: 'Temporary Redirect', 308: 'Permanent Redirect',
  400: 'Bad Request', 401: 'Unauthorized', 402: 'Payment Required', 403: 'Forbidden', 404: 'Not Found', 405: 'Not Allowed', 406: 'Not Acceptable',
  408: 'Request Time-out', 409: 'Conflict', 410: 'Gone', 411: 'Length Required', 412: 'Precondition Failed', 413: 'Request Entity Too Large',
  414: 'Request-URI Too Large', 415: 'Unsupported Media Type', 416: 'Requested Range Not Satisfiable', 421: 'Misdirected Request',
  429: 'Too Many Requests', 500: 'Internal Server Error', 501: 'Not Implemented',
  502: 'Bad Gateway', 503: 'Service Temporarily Unavailable', 504: 'Gateway Time-out', 505: 'HTTP Version Not Supported', 507: 'Insufficient Storage',
};

/** nginx's own codes for request errors: they go out as 400, with a page that says which. */
const AS_400: Record<number, string> = {
  494: 'Request Header Or Cookie Too Large',
  495: 'The SSL certificate error',
  496: 'No required SSL certificate was sent',
  497: 'The plain HTTP request was sent to HTTPS port',
};

/** The page titles that are not the status line's words. */
const TITLES: Record<number, string> = { 302: '302 Found', 401: '401 Authorization Required' };

/** Codes that have a page; others are answered with an empty body, as nginx does. */
const PAGES = new Set([301, 302, 303, 307, 308, 400, 401, 402, 403, 404, 405, 406, 408, 409, 410, 411, 412, 413, 414, 415, 416, 421, 429, 494, 495, 496, 497, 500, 501, 502, 503, 504, 505, 507]);

/** The status code written on the wire for `code` (494-497 are sent as 400). */
export function wireStatus(code: number): number {
  return AS_400[code] !== undefined ? 400 : code;
}

/** The reason phrase of the status line for a wire status. */
export function statusReason(code: number): string {
  return REASONS[code] ?? '';
}

const pageCache = new Map<string, Buffer>();

/** The HTML page for a status (cached per status and server_tokens setting); undefined when it has none. */
export function errorPage(status: number, tokens: boolean): Buffer | undefined {
  if (!PAGES.has(status)) return undefined;
  const key = `${status}|${tokens}`;
  let b = pageCache.get(key);
  if (!b) {
    const what = AS_400[status];
    // 494-497: titled with the cause, headed "400 Bad Request" with the cause under it.
    const title = what !== undefined ? `400 ${what}` : TITLES[status] ?? `${status} ${REASONS[status]}`;
    const heading = what !== undefined ? `<center><h1>400 Bad Request</h1></center>\r\n<center>${what}</center>` : `<center><h1>${title}</h1></center>`;
    const sig = tokens ? `${PRODUCT}/${VERSION}` : PRODUCT;
    b = Buffer.from(`<html>\r\n<head><title>${title}</title></head>\r\n<body>\r\n${heading}\r\n<hr><center>${sig}</center>\r\n</body>\r\n</html>\r\n`);
    pageCache.set(key, b);
  }
  return b;
}

let dateSecond = -1;
let dateValue = '';

/** The Date header's value, made once per second. */
export function httpDate(): string {
  const now = Date.now();
  const second = Math.floor(now / 1000);
  if (second !== dateSecond) {
    dateSecond = second;
    dateValue = new Date(second * 1000).toUTCString();
  }
  return dateValue;
}

/** Statuses that add_header applies to without "always". */
export function addHeaderApplies(status: number): boolean {
  return status === 200 || status === 201 || status === 204 || status === 206 || status === 301 || status === 302 || status === 303 || status === 304 || status === 307 || status === 308;
}
