#!/usr/bin/env node
// Builds native/tsgi_native.c (sd_notify's datagram) with the node-gyp bundled with npm. A machine without a
// compiler still installs tsgi: only systemd notification is then unavailable, and tsgi says so when asked.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

const gyp = process.env.npm_config_node_gyp
  ?? [join(process.execPath, '../../lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js')].find(existsSync);
// Node's own headers, when its installation has them (Debian's nodejs, the official tarballs): node-gyp then needs
// no download (the machine may have no network beyond the package registries).
const nodedir = join(process.execPath, '../..');
const local = existsSync(join(nodedir, 'include/node/node_api.h')) ? [`--nodedir=${nodedir}`] : [];
const r = gyp ? spawnSync(process.execPath, [gyp, 'rebuild', ...local], { stdio: 'inherit' }) : { status: 1 };
if (r.status !== 0) {
  console.warn('tsgi: the native helper was not built: systemd notification (NOTIFY_SOCKET) will be unavailable');
}
