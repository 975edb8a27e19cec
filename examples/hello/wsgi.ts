// The guide's app, translated to TypeScript: application(environ, start_response), served by Node workers.
// Beside wsgi.py, `-w wsgi` has two candidates, so say which: `--plugin node` (or `--wsgi-file wsgi.ts`).
type StartResponse = (status: string, headers: Array<[string, string]>) => unknown;

export function application(environ: Record<string, unknown>, start_response: StartResponse): string[] {
  start_response('200 OK', [['Content-Type', 'text/html']]);
  return ["<h1 style='color:blue'>Hello There!</h1>"];
}
