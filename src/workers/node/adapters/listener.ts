/**
 * The Node listener contract: `(req, res)` as node:http calls it (an Express app, Koa's `app.callback()`,
 * a plain handler). The model *is* node's request and response, so there is nothing to adapt.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AppHandler } from '../exchange.js';

export type Listener = (req: IncomingMessage, res: ServerResponse) => unknown;

export function listenerAdapter(app: Listener): AppHandler {
  return app;
}
