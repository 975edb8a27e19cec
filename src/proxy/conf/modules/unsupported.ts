/**
 * nginx directives tsgi-proxy does not implement, by name, so a config that uses one gets
 * `"gzip" directive is not supported by tsgi-proxy` with file:line instead of "unknown directive".
 * The argument count is not checked: any use is refused. Names are facts about nginx's modules.
 */
import { ProxyConfError } from '../errors.js';
import type { Scope } from '../scope.js';
import { ANY, MORE, pos, type DirectiveSpec } from '../table.js';

const NAMES = `gunzip
ssi ssi_types
fastcgi_pass fastcgi_param scgi_pass grpc_pass memcached_pass
proxy_store uwsgi_store quic http3
max_headers mirror flv mp4 image_filter
perl js_content js_import slice secure_link dav_methods
ssl_password_file
proxy_ssl_password_file proxy_ssl_crl proxy_ssl_conf_command uwsgi_ssl_password_file uwsgi_ssl_crl uwsgi_ssl_conf_command stream mail load_module
ssl_engine`.split(/\s+/);

export const unsupportedSpecs: DirectiveSpec<Scope>[] = NAMES.map((name) => ({
  name,
  ctx: ANY,
  args: [0, MORE] as const,
  refused: true,
  set(_s: Scope, d) {
    throw new ProxyConfError('NOT_SUPPORTED', `"${name}" directive is not supported by tsgi-proxy`, pos(d));
  },
}));
