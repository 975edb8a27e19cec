/**
 * Loading a Node app and telling its contract.
 *
 * TypeScript files (.ts/.mts/.cts) are loaded through tsx (esbuild's transform, registered for this process
 * before the import), so there is no build step. A module compiled to CommonJS (a .ts file without
 * "type": "module" nearby, a .cjs file) shows its exports under `default`: both places are looked at.
 *
 * The app is the export named by `callable` (default `application`); failing that, the default export, or
 * an export named `fetch`. Its contract, unless `app-contract` says it:
 *   - an object or function with a `fetch` method (a Hono app, `export default { fetch }`), or a function
 *     exported as `fetch`: Fetch;
 *   - an Express app (a function with `handle` and `listen`): listener; a Koa app (`callback()`): listener;
 *   - a function exported under the name `application` (the uWSGI and PEP 3333 name): WSGI;
 *   - any other plain function could be either `(environ, start_response)` or `(req, res)`: an error asks for
 *     `app-contract`.
 */
import { extname } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { AppHandler } from './exchange.js';
import { fetchAdapter, type FetchApp } from './adapters/fetch.js';
import { listenerAdapter, type Listener } from './adapters/listener.js';
import { wsgiAdapter, type WsgiApp, type WsgiOptions } from './adapters/wsgi.js';
import { TYPESCRIPT_EXTENSIONS } from '../app-kind.js';

export type Contract = 'wsgi' | 'fetch' | 'listener';

export class AppLoadError extends Error {
  override name = 'AppLoadError';
}

export interface LoadSpec {
  file: string;
  callable: string;
  contract: Contract | undefined;
  /** The app as the user named it, for messages. */
  name: string;
}

export interface LoadedApp {
  handler: AppHandler;
  contract: Contract;
}

type Namespace = Record<string, unknown>;

/** A CommonJS module compiled from ESM (esbuild, tsc) marks its exports with __esModule: they are the real namespace. */
function unwrapCommonJs(ns: Namespace): Namespace {
  const d = ns.default as Namespace | undefined;
  if (d !== null && typeof d === 'object' && d.__esModule === true) return d;
  return ns;
}

function lookup(ns: Namespace, key: string): unknown {
  if (key in ns && ns[key] !== undefined) return ns[key];
  const d = ns.default as Namespace | undefined;
  if (d !== null && (typeof d === 'object' || typeof d === 'function') && key !== 'default' && key in d) return d[key];
  return undefined;
}

const hasMethod = (v: unknown, name: string): boolean =>
  v !== null && (typeof v === 'object' || typeof v === 'function') && typeof (v as Namespace)[name] === 'function';

function detect(value: unknown, foundAs: string): Contract | string {
  if (foundAs === 'fetch' && typeof value === 'function') return 'fetch';
  if (hasMethod(value, 'fetch')) return 'fetch';
  if (typeof value === 'function' && hasMethod(value, 'handle') && hasMethod(value, 'listen')) return 'listener';
  if (hasMethod(value, 'callback') && hasMethod(value, 'use')) return 'listener';
  if (typeof value === 'function') {
    if (foundAs === 'application') return 'wsgi';
    return `its ${foundAs === 'default' ? 'default export' : `export '${foundAs}'`} is a plain function, which could be (environ, start_response) or (req, res): ` +
      'say which with app-contract = wsgi, listener or fetch';
  }
  return `its ${foundAs === 'default' ? 'default export' : `export '${foundAs}'`} is ${value === null ? 'null' : typeof value}, not an app ` +
    '(a function, an object with fetch(), an Express or Koa app)';
}

function adapt(value: unknown, contract: Contract, foundAs: string, wsgi: WsgiOptions): AppHandler {
  switch (contract) {
    case 'fetch':
      if (hasMethod(value, 'fetch')) return fetchAdapter(value as FetchApp);
      if (typeof value === 'function') return fetchAdapter({ fetch: value as FetchApp['fetch'] });
      break;
    case 'listener':
      if (hasMethod(value, 'callback') && hasMethod(value, 'use')) return listenerAdapter((value as { callback(): Listener }).callback());
      if (typeof value === 'function') return listenerAdapter(value as Listener);
      break;
    case 'wsgi':
      if (typeof value === 'function') return wsgiAdapter(value as WsgiApp, wsgi);
      break;
  }
  throw new AppLoadError(`${foundAs === 'default' ? 'the default export' : `'${foundAs}'`} cannot be called as a ${contract} app (it is ${typeof value})`);
}

let typescriptReady: Promise<unknown> | undefined;

/** Registers tsx's loader (ESM and CommonJS) for this process, once. */
function typescript(): Promise<unknown> {
  const loader = 'tsx'; // its main export registers the ESM and CommonJS hooks
  typescriptReady ??= import(loader);
  return typescriptReady;
}

export async function loadApp(spec: LoadSpec, wsgi: WsgiOptions): Promise<LoadedApp> {
  if (TYPESCRIPT_EXTENSIONS.has(extname(spec.file).toLowerCase())) await typescript();
  const ns = unwrapCommonJs((await import(pathToFileURL(spec.file).href)) as Namespace);
  let foundAs = spec.callable;
  let value = lookup(ns, spec.callable);
  if (value === undefined && spec.callable === 'application') {
    for (const alt of ['default', 'fetch']) {
      value = lookup(ns, alt);
      if (value !== undefined) {
        foundAs = alt;
        break;
      }
    }
  }
  if (value === undefined) {
    const also = spec.callable === 'application' ? ', a default export or a fetch export' : '';
    throw new AppLoadError(`${spec.name}: ${spec.file} has no export named '${spec.callable}'${also} (set callable = NAME or module = MODULE:NAME)`);
  }
  let contract = spec.contract;
  if (contract === undefined) {
    const found = detect(value, foundAs);
    if (found !== 'wsgi' && found !== 'fetch' && found !== 'listener') throw new AppLoadError(`${spec.name}: ${found}`);
    contract = found;
  }
  return { handler: adapt(value, contract, foundAs, wsgi), contract };
}
