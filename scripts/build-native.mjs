#!/usr/bin/env node
// Builds native/tsgi_native.c (sd_notify's datagram) with the node-gyp bundled with npm. A machine without a
// compiler still installs tsgi: only systemd notification is then unavailable, and tsgi says so when asked.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

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

// The Python worker's C speedups (native/tsgi_speedups.c → python/tsgi_worker/_speedups<EXT_SUFFIX>), built for each
// interpreter tsgi is likely to run (Debian's, and the first python3 on PATH) that has its headers (python3-dev).
// The file name carries the interpreter's ABI tag, so an interpreter only ever loads its own build; one without a
// build runs the same code in Python (protocol.parse_vars_py), slower.
const here = fileURLToPath(new URL('..', import.meta.url));
const built = new Set();
for (const python of ['/usr/bin/python3', 'python3']) {
  const probe = spawnSync(python, ['-c', 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX")); print(sysconfig.get_paths()["include"])'], { encoding: 'utf8' });
  if (probe.status !== 0) continue;
  const [suffix, include] = probe.stdout.trim().split('\n');
  if (!suffix || !include || built.has(suffix)) continue;
  if (!existsSync(join(include, 'Python.h'))) {
    console.warn(`tsgi: the Python worker's C speedups were not built for ${python}: no ${join(include, 'Python.h')} (python3-dev); it runs them in Python`);
    continue;
  }
  const out = join(here, 'python/tsgi_worker', `_speedups${suffix}`);
  const cc = spawnSync(process.env.CC || 'cc', ['-O2', '-shared', '-fPIC', '-Wall', `-I${include}`, join(here, 'native/tsgi_speedups.c'), '-o', out], { stdio: 'inherit' });
  if (cc.status === 0) built.add(suffix);
  else console.warn(`tsgi: the Python worker's C speedups were not built for ${python} (no C compiler?); it runs them in Python`);
}
