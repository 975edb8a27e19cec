/**
 * HTTPS on the router and the router in front of other instances (docs/https.md): `https` and `https-socket`
 * (ADDR,CERT,KEY[,CIPHERS[,CA]], a leading `!` on CA making a client certificate mandatory, as uWSGI reads it),
 * `http-to-https` (a listener that redirects every request to https), `http-to` (requests go to other uwsgi
 * servers instead of this instance's workers) and the TLS settings that go with them. Only parsing here: the
 * master reads the files (before dropping privileges) in src/master/tls.ts.
 */
import { ConfigError } from './errors.js';
import type { Origin } from './origin.js';
import type { SocketAddress } from './resolve.js';

/** One `https`/`https-socket` value, files not read yet. */
export interface TlsSpec {
  cert: string;
  key: string;
  /** OpenSSL cipher list; undefined: Node's default. */
  ciphers: string | undefined;
  /** Client CA file; undefined: no client certificate asked for. */
  clientCa: string | undefined;
  /** `!CA`: a client without a valid certificate is refused at the handshake (else one is only checked when sent). */
  requireClientCert: boolean;
}

/** TLS settings shared by every HTTPS listener. */
export interface TlsSettings {
  /** https-export-cert: the client certificate (PEM) as HTTPS_CC. */
  exportCert: boolean;
  /** https-session-context: the TLS session id context (undefined: the listener's address, as uWSGI names its context). */
  sessionContext: string | undefined;
  /** ssl-sessions-timeout (seconds). */
  sessionTimeout: number;
  /** ssl-verify-depth: most CA certificates between a client certificate and the trusted CA. */
  verifyDepth: number;
}

export interface HttpToTarget {
  address: SocketAddress;
  text: string;
  origin: Origin;
}

/** Splits `ADDR,CERT,KEY[,CIPHERS[,CA]]`; the address is parsed by the caller. */
export function parseHttpsValue(value: string, origin: Origin, option: string): { addr: string; tls: TlsSpec } {
  const parts = value.split(',');
  const bad = (why: string): ConfigError => new ConfigError('BAD_VALUE', `'${value}': ${why}`, origin, option);
  if (parts.length < 3 || !parts[1] || !parts[2]) throw bad('expected ADDR,CERT,KEY[,CIPHERS[,CA]] (a certificate and a key file)');
  if (parts.length > 5) throw bad('expected at most 5 fields: ADDR,CERT,KEY,CIPHERS,CA');
  const addr = parts[0]!;
  if (addr.startsWith('=')) {
    throw new ConfigError('NOT_IMPLEMENTED', `'${value}': =N names a shared-socket, which tsgi does not implement; give the address itself (the master binds it before dropping privileges)`, origin, option);
  }
  let ca = parts[4] || undefined;
  let required = false;
  if (ca?.startsWith('!')) {
    required = true;
    ca = ca.slice(1);
    if (!ca) throw bad("'!' must be followed by the client CA file");
  }
  return { addr, tls: { cert: parts[1]!, key: parts[2]!, ciphers: parts[3] || undefined, clientCa: ca, requireClientCert: required } };
}
