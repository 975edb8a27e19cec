import type { Entry } from '../config/origin.js';
import type { Settings } from '../config/resolve.js';

export async function startServer(settings: Settings, _entries: readonly Entry[]): Promise<void> {
  process.stderr.write(`tsgi: would start with ${settings.sockets.length} socket(s)\n`);
}
