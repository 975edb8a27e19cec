/**
 * Responses tsgi-proxy makes itself: status lines, the small HTML error pages, and the status codes whose
 * pages carry a body.
 */
import { PRODUCT, VERSION } from './vars.js';

export const REASONS: Record<number, string> = {
  200: 'OK', 201: 'Created', 202: 'Accepted', 204: 'No Content', 206: 'Partial Content',
  301: 'Moved Permanently', 302: 'Moved Temporarily', 303: 'See Other', 304: 'Not Modified', 307: 'Temporary Redirect', 308: 'Permanent Redirect',
  400: 'Bad Request', 401: 'Unauthorized', 402: 'Payment Required', 403: 'Forbidden', 404: 'Not Found', 405: 'Not Allowed', 406: 'Not Acceptable',
  408: 'Request Time-out', 409: 'Conflict', 410: 'Gone', 411: 'Length Required', 412: 'Precondition Failed', 413: 'Request Entity Too Large',
  414: 'Request-URI Too Large', 415: 'Unsupported Media Type', 416: 'Requested Range Not Satisfiable', 421: 'Misdirected Request',
  429: 'Too Many Requests', 494: 'Request Header Or Cookie Too Large', 500: 'Internal Server Error', 501: 'Not Implemented',
  502: 'Bad Gateway', 503: 'Service Temporarily Unavailable', 504: 'Gateway Time-out', 505: 'HTTP Version Not Supported', 507: 'Insufficient Storage',
};

const pageCache = new Map<string, Buffer>();

/** The HTML page for a status (cached per status and server_tokens setting). */
export function errorPage(status: number, tokens: boolean): Buffer | undefined {
  if (status < 300 || status === 304) return undefined;
  const key = `${status}|${tokens}`;
  let b = pageCache.get(key);
  if (!b) {
    const reason = REASONS[status];
    const title = reason ? `${status} ${reason}` : String(status);
    const sig = tokens ? `${PRODUCT}/${VERSION}` : PRODUCT;
    b = Buffer.from(`<html>\r\n<head><title>${title}</title></head>\r\n<body>\r\n<center><h1>${title}</h1></center>\r\n<hr><center>${sig}</center>\r\n</body>\r\n</html>\r\n`);
    pageCache.set(key, b);
  }
  return b;
}

/** Statuses that add_header applies to without "always". */
export function addHeaderApplies(status: number): boolean {
  return status === 200 || status === 201 || status === 204 || status === 206 || status === 301 || status === 302 || status === 303 || status === 304 || status === 307 || status === 308;
}
