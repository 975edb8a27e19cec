/** The real nginx in front of every peer: one server block (one port) per peer, in its own prefix dir. */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startGroup, type Managed } from './procs.js';

export const NGINX = '/usr/sbin/nginx';

export interface Upstream {
  port: number;
  socket: string;
  protocol: 'uwsgi' | 'http';
}

export interface NginxOptions {
  /** `worker_processes`: a number or 'auto'. */
  workers: string;
  /** nginx's own access log (the same setting for every peer). */
  accessLog: boolean;
}

export function nginxConfig(prefix: string, upstreams: readonly Upstream[], o: NginxOptions): string {
  const asRoot = process.getuid?.() === 0;
  const servers = upstreams.map((u) => {
    const pass =
      u.protocol === 'uwsgi'
        ? `include /etc/nginx/uwsgi_params;\n      uwsgi_pass unix:${u.socket};`
        : [
            'proxy_set_header Host $http_host;',
            'proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;',
            'proxy_set_header X-Forwarded-Proto $scheme;',
            'proxy_redirect off;',
            `proxy_pass http://unix:${u.socket};`,
          ].join('\n      ');
    return `  server {
    listen 127.0.0.1:${u.port};
    location / {
      ${pass}
    }
  }`;
  });
  return `${asRoot ? 'user www-data;\n' : ''}worker_processes ${o.workers};
pid ${prefix}/nginx.pid;
error_log ${prefix}/logs/error.log;
events { worker_connections 1024; }
http {
  access_log ${o.accessLog ? `${prefix}/logs/access.log` : 'off'};
  client_body_temp_path ${prefix}/client_body;
  proxy_temp_path ${prefix}/proxy;
  uwsgi_temp_path ${prefix}/uwsgi;
  fastcgi_temp_path ${prefix}/fastcgi;
  scgi_temp_path ${prefix}/scgi;
  include /etc/nginx/mime.types;
${servers.join('\n')}
}
`;
}

export function startNginx(prefix: string, upstreams: readonly Upstream[], o: NginxOptions): Managed {
  mkdirSync(join(prefix, 'logs'), { recursive: true });
  const conf = join(prefix, 'nginx.conf');
  writeFileSync(conf, nginxConfig(prefix, upstreams, o));
  return startGroup('nginx', NGINX, ['-p', prefix, '-c', conf, '-e', join(prefix, 'logs/error.log'), '-g', 'daemon off;'], {
    logFile: join(prefix, 'logs/stderr.log'),
  });
}
