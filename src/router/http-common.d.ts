// More of node:_http_common (see src/proxy/upstream/llhttp.d.ts for HTTPParser): the method names llhttp's
// method numbers index, and the validators node:http itself uses for header names and values.
declare module 'node:_http_common' {
  export const methods: string[];
  /** True when the string is an HTTP token (a valid header name). */
  export function _checkIsHttpToken(s: string): boolean;
  /** True when the string holds a character a header value may not carry (CR, LF, NUL, ...). */
  export function _checkInvalidHeaderChar(s: string): boolean;
}
