/** Where a configuration value came from: every error message names it. */
export type Origin =
  | { kind: 'argv'; index: number }
  | { kind: 'file'; file: string; line: number }
  | { kind: 'env'; name: string }
  | { kind: 'default' };

export function describeOrigin(o: Origin): string {
  switch (o.kind) {
    case 'argv':
      return `command line (argument ${o.index + 1})`;
    case 'file':
      return `${o.file}:${o.line}`;
    case 'env':
      return `environment variable ${o.name}`;
    case 'default':
      return 'built-in default';
  }
}

/** One `key = value` as read from a source, before it is interpreted by the option table. */
export interface Entry {
  key: string;
  value: string;
  origin: Origin;
  /** A flag given on the command line without a value (`--master`, `-L`): Python's uwsgi.opt shows it as True. */
  flag?: true;
  /** The name as written on the command line when it is an alias of `key` (`--workers` for processes). */
  written?: string;
}
