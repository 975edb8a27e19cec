/**
 * What the router's https listeners and a Node worker's https server share (docs/https.md): the TLS server
 * options for uWSGI's `ADDR,CERT,KEY,CIPHERS,CA` and its '!' rule, the client-certificate checks Node does not
 * make itself (an optional certificate that does not verify, ssl-verify-depth), and the vars uWSGI's https
 * router adds for a client certificate.
 */
import { X509Certificate } from 'node:crypto';
import type tls from 'node:tls';

/** The certificates (read by the master, src/master/tls.ts) and settings of one https listener. */
export interface ListenerTls {
  cert: string;
  key: string;
  ca: string | undefined;
  ciphers: string | undefined;
  requireClientCert: boolean;
  exportCert: boolean;
  sessionContext: string | undefined;
  sessionTimeout: number;
  verifyDepth: number;
}

/** The vars of a client certificate, computed once per connection. */
export interface CertVars {
  keys: string[];
  values: string[];
}

export function tlsServerOptions(t: ListenerTls, name: string, timeoutMs: number): tls.TlsOptions {
  return {
    cert: t.cert,
    key: t.key,
    ciphers: t.ciphers,
    // uWSGI's rule: with a CA a client certificate is asked for and checked; '!CA' refuses a client without one.
    ca: t.ca,
    requestCert: t.ca !== undefined,
    rejectUnauthorized: t.ca !== undefined && t.requireClientCert,
    // OpenSSL takes at most 32 bytes of session id context.
    sessionIdContext: (t.sessionContext ?? name).slice(0, 32),
    sessionTimeout: t.sessionTimeout,
    handshakeTimeout: timeoutMs,
  };
}

/**
 * CA certificates between a verified client certificate and the trust anchor, as OpenSSL's verify depth counts
 * them (Node has no verify-depth setting, so ssl-verify-depth is checked on the chain once it is verified).
 */
function intermediates(peer: tls.DetailedPeerCertificate): number {
  let n = 0;
  let c = peer;
  const seen = new Set<string>();
  while (c.issuerCertificate !== undefined && c.issuerCertificate !== c && !seen.has(c.fingerprint256)) {
    seen.add(c.fingerprint256);
    c = c.issuerCertificate;
    n++;
  }
  // The last one is the trusted CA itself, which the depth does not count.
  return Math.max(0, n - 1);
}

/**
 * After the handshake: a client certificate that was sent but does not verify, or whose chain is longer than
 * ssl-verify-depth, ends the connection (null); otherwise the certificate's vars, or undefined without one.
 */
export function checkClient(socket: tls.TLSSocket, t: ListenerTls, name: string, log: (line: string) => void): CertVars | undefined | null {
  if (t.ca === undefined) return undefined;
  const peer = socket.getPeerCertificate(true);
  if (peer === null || peer.raw === undefined) return undefined;
  const from = `${socket.remoteAddress}:${socket.remotePort}`;
  if (!socket.authorized) {
    log(`https ${name}: client ${from} sent a certificate that does not verify (${String(socket.authorizationError)}); connection closed`);
    socket.destroy();
    return null;
  }
  if (intermediates(peer) > t.verifyDepth) {
    log(`https ${name}: client ${from} sent a certificate chain over ssl-verify-depth ${t.verifyDepth}; connection closed`);
    socket.destroy();
    return null;
  }
  return clientCertVars(peer.raw, t.exportCert);
}

/** The vars uWSGI's https router adds for a client certificate: its subject, the DER bytes and (https-export-cert) the PEM. */
function clientCertVars(raw: Buffer, exportCert: boolean): CertVars {
  const x509 = new X509Certificate(raw);
  const keys = ['HTTPS_DN', 'HTTPS_CLIENT_CERTIFICATE'];
  const values = ['/' + x509.subject.split('\n').join('/'), raw.toString('latin1')];
  if (exportCert) {
    keys.push('HTTPS_CC');
    values.push(x509.toString());
  }
  return { keys, values };
}
