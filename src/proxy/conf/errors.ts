/**
 * Configuration errors of tsgi-proxy. Each renders as the one line nginx's `-t` prints after "[emerg]":
 * what is wrong, then " in FILE:LINE". Callers and tests match on `code`, not on the text.
 */
export type ProxyConfErrorCode =
  | 'SYNTAX' // tokens: unexpected "}", end of file, quotes
  | 'UNKNOWN_DIRECTIVE'
  | 'NOT_ALLOWED_HERE'
  | 'ARG_COUNT'
  | 'DUPLICATE'
  | 'BAD_VALUE'
  | 'NOT_SUPPORTED' // a directive or parameter nginx has and tsgi-proxy does not implement
  | 'FILE' // open() of an include or certificate failed
  | 'HOST_NOT_FOUND'
  | 'CONFLICT';

export interface ConfPos {
  file: string;
  line: number;
}

export class ProxyConfError extends Error {
  readonly code: ProxyConfErrorCode;
  readonly file: string | undefined;
  readonly line: number | undefined;
  readonly detail: string;

  constructor(code: ProxyConfErrorCode, detail: string, pos?: ConfPos) {
    super(pos ? `${detail} in ${pos.file}:${pos.line}` : detail);
    this.name = 'ProxyConfError';
    this.code = code;
    this.file = pos?.file;
    this.line = pos?.line;
    this.detail = detail;
  }
}
