/**
 * What a directive handler sees: the context it is in and the objects of that context, plus what the loader
 * provides (file access, prefix, variable registry, warnings).
 */
import type { ConfPos } from './errors.js';
import type { ConfNode } from './parse.js';
import type { DirectiveTable } from './table.js';
import type { PassConf, HttpConf, LocConf, LocationConf, MainConf, ScriptOp, ServerConf, UpstreamConf, UpstreamServerConf } from './model.js';
import type { VarRegistry } from '../vars.js';

/** File access used while loading, so a worker can re-read the exact bytes the master read (a snapshot). */
export interface ConfFs {
  /** Contents as a latin1 byte string, or an Error with errno text. */
  read(path: string): string | Error;
  /** Sorted matches of a glob pattern with * ? [..] (no match: []). */
  glob(pattern: string): string[];
  exists(path: string): boolean;
}

export interface LoadEnv {
  prefix: string;
  /** Directory of the main configuration file: relative include/ssl paths start here. */
  confPrefix: string;
  fs: ConfFs;
  warn: (message: string, pos: ConfPos) => void;
  /** Names of the include files read, in order (for -T). */
  filesRead: string[];
  /** Host names to resolve after the walk (upstream servers). */
  pendingResolve: Array<{ server: UpstreamServerConf; host: string; port: number; pos: ConfPos }>;
  includeDepth: number;
  /** Static uwsgi_pass/proxy_pass targets, bound to upstreams once every upstream block is known. */
  pendingPass: Array<{ pass: PassConf; hostPart: string; node: ConfNode; scope: Scope }>;
  /** https:// and suwsgi:// passes with their location's settings, checked once inherited (checkUpstreamTls). */
  tlsPasses: Array<{ pass: PassConf; loc: LocConf }>;
}

export interface Scope {
  ctx: number;
  main: MainConf;
  http: HttpConf | undefined;
  srv: ServerConf | undefined;
  /** The LocConf of the current level (http, server, location or if). */
  loc: LocConf;
  location: LocationConf | undefined;
  /** The rewrite script of the current level. */
  script: ScriptOp[];
  ups: UpstreamConf | undefined;
  types: Map<string, string> | undefined;
  reg: VarRegistry;
  env: LoadEnv;
  table: DirectiveTable<Scope>;
  /** Walks a child block in a new context. */
  walk(scope: Scope, list: ConfNode[], ctx: number): void;
}
