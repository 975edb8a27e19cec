/**
 * HTTP/2 directives: `http2 on|off` (nginx 1.25's per-server switch; `listen ... http2` is the older form),
 * http2_max_concurrent_streams, and the buffer and timeout tuning nginx has for its own HTTP/2 code.
 */
import { ProxyConfError } from '../errors.js';
import type { Scope } from '../scope.js';
import { HTTP, SRV, LOC, duplicate, parseFlag, pos, tuning, type DirectiveSpec } from '../table.js';

type Spec = DirectiveSpec<Scope>;
const CTX = HTTP | SRV;

/** A directive whose only value tsgi-proxy can honour is "off" (server push: node:http2 clients rarely want it). */
function offOnly(name: string): Spec {
  return {
    name, ctx: CTX | LOC, args: 1,
    set(_s, d) {
      if (d.args[0] !== 'off') throw new ProxyConfError('NOT_SUPPORTED', `"${name} ${d.args[0]}" is not supported by tsgi-proxy`, pos(d));
    },
  };
}

export const http2Specs: Spec[] = [
  {
    name: 'http2', ctx: CTX, args: 'flag',
    set(s, d) {
      const target = s.srv ?? s.http!;
      if (target.http2On !== undefined) throw duplicate(d);
      target.http2On = parseFlag(d);
    },
  },
  {
    name: 'http2_max_concurrent_streams', ctx: CTX, args: 1,
    set(s, d) {
      const target = s.srv ?? s.http!;
      if (target.http2MaxConcurrentStreams !== undefined) throw duplicate(d);
      const n = /^\d+$/.test(d.args[0]!) ? Number(d.args[0]) : NaN;
      if (!Number.isSafeInteger(n)) throw new ProxyConfError('BAD_VALUE', `"http2_max_concurrent_streams" directive invalid number`, pos(d));
      target.http2MaxConcurrentStreams = n;
    },
  },
  offOnly('http2_push'),
  offOnly('http2_push_preload'),
  tuning('http2_chunk_size', CTX | LOC, 1),
  tuning('http2_body_preread_size', CTX, 1),
  tuning('http2_recv_buffer_size', HTTP, 1),
  tuning('http2_idle_timeout', CTX, 1),
  tuning('http2_recv_timeout', CTX, 1),
  tuning('http2_max_field_size', CTX, 1),
  tuning('http2_max_header_size', CTX, 1),
  tuning('http2_max_requests', CTX, 1),
  tuning('http2_streams_index_size', CTX, 1),
];
