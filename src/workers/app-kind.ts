/**
 * Which kind of worker serves the app: Python workers for a Python app, Node workers for a TypeScript or
 * JavaScript one. `plugins = python|node` says it outright; otherwise the app's file does:
 *   - `wsgi-file` by its extension (.py, or .ts/.mts/.cts/.js/.mjs/.cjs);
 *   - `module = wsgi` by what is in the directory: wsgi.py (or the package wsgi/) and wsgi.ts, wsgi.mts,
 *     wsgi.js, wsgi.mjs. No Node file: Python (the module may also be installed in the virtualenv).
 *     A Python file and a Node file: an error asking for `plugin = python|node`.
 */
import { existsSync, statSync } from 'node:fs';
import { extname, join, resolve } from 'node:path';
import type { Settings } from '../config/resolve.js';

export type WorkerKind = 'python' | 'node';

/** Extensions tried for `module = NAME`, in this order. */
export const NODE_MODULE_EXTENSIONS = ['.ts', '.mts', '.js', '.mjs'] as const;
/** Extensions that make a `wsgi-file` a Node app. */
export const NODE_FILE_EXTENSIONS = new Set(['.ts', '.mts', '.cts', '.js', '.mjs', '.cjs']);
export const TYPESCRIPT_EXTENSIONS = new Set(['.ts', '.mts', '.cts']);

export class AppKindError extends Error {
  override name = 'AppKindError';
}

export interface AppChoice {
  kind: WorkerKind;
  /** The Node app's file (absolute); undefined for a Python app. */
  file: string | undefined;
}

function isFile(p: string): boolean {
  try {
    return statSync(p).isFile();
  } catch {
    return false;
  }
}

/** Decides the worker kind for `settings`, with relative paths taken from `cwd` (after chdir). */
export function chooseApp(settings: Settings, cwd: string): AppChoice {
  const { module, wsgiFile } = settings.python;
  const plugin = settings.plugin;
  if (wsgiFile !== undefined) {
    const ext = extname(wsgiFile).toLowerCase();
    const nodeFile = NODE_FILE_EXTENSIONS.has(ext);
    if (plugin === 'python' && nodeFile) throw new AppKindError(`wsgi-file ${wsgiFile} is a ${ext} file, which Python workers cannot run (plugin = python)`);
    if (plugin === 'node' && ext === '.py') throw new AppKindError(`wsgi-file ${wsgiFile} is a Python file, which Node workers cannot run (plugin = node)`);
    if (nodeFile || plugin === 'node') return { kind: 'node', file: resolve(cwd, wsgiFile) };
    return { kind: 'python', file: undefined };
  }
  if (module === undefined) return { kind: plugin ?? 'python', file: undefined };

  const rel = module.replace(/\./g, '/');
  const nodeFiles = NODE_MODULE_EXTENSIONS.map((ext) => join(cwd, rel + ext)).filter(isFile);
  if (plugin === 'python') return { kind: 'python', file: undefined };
  const tried = NODE_MODULE_EXTENSIONS.map((ext) => rel + ext).join(', ');
  if (nodeFiles.length > 1) {
    const names = nodeFiles.map((f) => f.slice(cwd.length + 1)).join(' and ');
    throw new AppKindError(`module ${module}: ${names} are both in ${cwd}; say which with wsgi-file = FILE`);
  }
  if (plugin === 'node') {
    if (nodeFiles.length === 0) throw new AppKindError(`module ${module}: none of ${tried} is in ${cwd} (plugin = node)`);
    return { kind: 'node', file: nodeFiles[0] };
  }
  if (nodeFiles.length === 0) return { kind: 'python', file: undefined };
  const pythonDirs = [...settings.python.pythonpath.map((p) => resolve(cwd, p)), cwd];
  const pythonFile = pythonDirs
    .flatMap((d) => [join(d, `${rel}.py`), join(d, rel, '__init__.py')])
    .find((p) => existsSync(p));
  if (pythonFile) {
    throw new AppKindError(
      `module ${module}: both ${pythonFile.slice(pythonFile.lastIndexOf('/') + 1) === '__init__.py' ? `${rel}/` : `${rel}.py`} and ` +
        `${nodeFiles[0]!.slice(cwd.length + 1)} could be the app; set plugin = python or plugin = node`,
    );
  }
  return { kind: 'node', file: nodeFiles[0] };
}
