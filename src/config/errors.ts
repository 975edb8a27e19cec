import { describeOrigin, type Origin } from './origin.js';

/** Stable codes, so callers and tests match on the code rather than on message text. */
export type ConfigErrorCode =
  | 'UNKNOWN_OPTION'
  | 'NOT_IMPLEMENTED'
  | 'BAD_VALUE'
  | 'MISSING_VALUE'
  | 'FILE_NOT_FOUND'
  | 'SECTION_NOT_FOUND'
  | 'SYNTAX'
  | 'CONFLICT'
  | 'APP';

/** A configuration problem: rendered as exactly one line naming where, what option, and what is wrong. */
export class ConfigError extends Error {
  readonly code: ConfigErrorCode;
  readonly origin: Origin | undefined;
  readonly option: string | undefined;
  readonly detail: string;

  constructor(code: ConfigErrorCode, detail: string, origin?: Origin, option?: string) {
    const where = origin ? `${describeOrigin(origin)}: ` : '';
    const what = option !== undefined ? `option '${option}': ` : '';
    super(`${where}${what}${detail}`);
    this.name = 'ConfigError';
    this.code = code;
    this.origin = origin;
    this.option = option;
    this.detail = detail;
  }
}
