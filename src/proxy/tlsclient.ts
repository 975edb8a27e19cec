/**
 * Client certificates (`ssl_verify_client`) and the `$ssl_*` variables of a TLS connection.
 *
 * Node's TLS server verifies the client's chain against the server's `ca` during the handshake but, like
 * nginx, is told not to abort it: the verdict is read when the first request arrives, so a missing or bad
 * certificate gets nginx's 400 page (495/496, which error_page can catch) instead of a failed handshake. The
 * verdict and the certificate's details are computed once per connection and kept on the socket.
 */
import type { X509Certificate } from 'node:crypto';
import type { PeerCertificate, TLSSocket } from 'node:tls';
import type { SslConf } from './conf/model.js';
import type { Rq } from './request.js';

/** OpenSSL's verify error numbers and texts (what nginx logs and puts in $ssl_client_verify), by Node's code. */
export const VERIFY_ERRORS: Record<string, [number, string]> = {
  UNABLE_TO_GET_ISSUER_CERT: [2, 'unable to get issuer certificate'],
  UNABLE_TO_GET_CRL: [3, 'unable to get certificate CRL'],
  CERT_SIGNATURE_FAILURE: [7, 'certificate signature failure'],
  CRL_SIGNATURE_FAILURE: [8, 'CRL signature failure'],
  CERT_NOT_YET_VALID: [9, 'certificate is not yet valid'],
  CERT_HAS_EXPIRED: [10, 'certificate has expired'],
  CRL_NOT_YET_VALID: [11, 'CRL is not yet valid'],
  CRL_HAS_EXPIRED: [12, 'CRL has expired'],
  DEPTH_ZERO_SELF_SIGNED_CERT: [18, 'self-signed certificate'],
  SELF_SIGNED_CERT_IN_CHAIN: [19, 'self-signed certificate in certificate chain'],
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: [20, 'unable to get local issuer certificate'],
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: [21, 'unable to verify the first certificate'],
  CERT_CHAIN_TOO_LONG: [22, 'certificate chain too long'],
  CERT_REVOKED: [23, 'certificate revoked'],
  INVALID_CA: [24, 'invalid CA certificate'],
  PATH_LENGTH_EXCEEDED: [25, 'path length constraint exceeded'],
  INVALID_PURPOSE: [26, 'unsupported certificate purpose'],
  CERT_UNTRUSTED: [27, 'certificate not trusted'],
  CERT_REJECTED: [28, 'certificate rejected'],
};

/** What one connection's client sent, and whether it verified. */
interface ClientCert {
  /** Undefined when the client sent no certificate. */
  readonly x509: X509Certificate | undefined;
  /** OpenSSL's error number and text when verification failed (0 when it passed or nothing was sent). */
  readonly errno: number;
  readonly error: string;
}

type CertSocket = TLSSocket & { _tsgiClientCert?: ClientCert };

const NO_CERT: ClientCert = { x509: undefined, errno: 0, error: '' };

/**
 * The connection's client certificate and its verdict. `depth` is ssl_verify_depth: Node has no such limit,
 * so the chain OpenSSL built is counted here, as OpenSSL counts it (neither the client's certificate nor
 * the trust anchor count).
 */
function clientCert(s: CertSocket, depth: number): ClientCert {
  const known = s._tsgiClientCert;
  if (known !== undefined) return known;
  // The chain first: once getPeerX509Certificate() has run, Node's getPeerCertificate(true) reports the
  // client's certificate without its issuers.
  const intermediates = s.authorized ? chainIntermediates(s.getPeerCertificate(true)) : 0;
  let x509: X509Certificate | undefined;
  try {
    x509 = s.getPeerX509Certificate();
  } catch {
    x509 = undefined;
  }
  let c: ClientCert = NO_CERT;
  if (x509 !== undefined) {
    let code = s.authorized ? '' : String(s.authorizationError ?? 'CERT_REJECTED');
    if (code === '' && intermediates > depth) code = 'CERT_CHAIN_TOO_LONG';
    const e = code === '' ? undefined : VERIFY_ERRORS[code];
    c = { x509, errno: code === '' ? 0 : e?.[0] ?? 50, error: code === '' ? '' : e?.[1] ?? code.toLowerCase().replace(/_/g, ' ') };
  }
  s._tsgiClientCert = c;
  return c;
}

/** CA certificates between the client's certificate and the root of the chain Node reports. */
function chainIntermediates(leaf: PeerCertificate & { issuerCertificate?: PeerCertificate }): number {
  let n = 0;
  let c = leaf as PeerCertificate & { issuerCertificate?: PeerCertificate };
  while (c.issuerCertificate !== undefined && c.issuerCertificate !== c && n < 100) {
    c = c.issuerCertificate as typeof c;
    n++;
  }
  // The root (self-signed) is the trust anchor. Node completes the chain from the store of the context the
  // handshake began with, so after an SNI switch the root may be missing: then every issuer listed counts.
  return c.issuerCertificate === c ? Math.max(0, n - 1) : n;
}

/**
 * ssl_verify_client for a request on a TLS connection: 496 when a required certificate is missing, 495 when
 * one was sent and does not verify (on, optional), else 0. `log` gets nginx's error-log line.
 */
export function verifyClient(r: Rq, ssl: SslConf, log: (msg: string) => void): number {
  const mode = ssl.verifyClient;
  if (mode === undefined || mode === 'off') return 0;
  const c = clientCert(r.req.socket as CertSocket, ssl.verifyDepth ?? 1);
  if (mode === 'optional_no_ca') return 0;
  if (c.errno !== 0) {
    log(`client SSL certificate verify error: (${c.errno}:${c.error}) while reading client request headers`);
    return 495;
  }
  if (c.x509 === undefined && mode === 'on') {
    log('client sent no required SSL certificate while reading client request headers');
    return 496;
  }
  return 0;
}

function tls(r: Rq): CertSocket | undefined {
  const s = r.req.socket as CertSocket;
  return s.encrypted ? s : undefined;
}

function cert(r: Rq): ClientCert {
  const s = tls(r);
  // A server that does not verify would not have asked for one (the socket asks when another server on it does).
  if (s === undefined || r.server.loc.ssl.verifyClient === 'off') return NO_CERT;
  return clientCert(s, r.server.loc.ssl.verifyDepth ?? 1);
}

/** RFC 2253 form ("CN=x,O=y"): Node lists the parts in certificate order, escaped, one per line. */
function dn(lines: string): string {
  return lines.split('\n').reverse().join(',');
}

/** The old "/O=y/CN=x" form: certificate order, nothing escaped. */
function dnLegacy(lines: string): string {
  return lines.split('\n').map((p) => '/' + p.replace(/\\(.)/g, '$1')).join('');
}

const DAY_MS = 86400000;

/** The `$ssl_*` variables nginx's ssl module defines (those tsgi-proxy can know). */
export const SSL_VARIABLES: Record<string, (r: Rq) => string> = {
  ssl_protocol: (r) => tls(r)?.getProtocol() ?? '',
  ssl_cipher: (r) => tls(r)?.getCipher().name ?? '',
  ssl_session_reused: (r) => (tls(r) === undefined ? '' : tls(r)!.isSessionReused() ? 'r' : '.'),
  ssl_server_name: (r) => {
    const n = tls(r)?.servername;
    return typeof n === 'string' ? n : '';
  },
  ssl_client_verify: (r) => {
    if (tls(r) === undefined) return '';
    const c = cert(r);
    return c.x509 === undefined ? 'NONE' : c.errno !== 0 ? `FAILED:${c.error}` : 'SUCCESS';
  },
  ssl_client_s_dn: (r) => (cert(r).x509 ? dn(cert(r).x509!.subject) : ''),
  ssl_client_i_dn: (r) => (cert(r).x509 ? dn(cert(r).x509!.issuer) : ''),
  ssl_client_s_dn_legacy: (r) => (cert(r).x509 ? dnLegacy(cert(r).x509!.subject) : ''),
  ssl_client_i_dn_legacy: (r) => (cert(r).x509 ? dnLegacy(cert(r).x509!.issuer) : ''),
  ssl_client_serial: (r) => cert(r).x509?.serialNumber ?? '',
  ssl_client_fingerprint: (r) => cert(r).x509?.fingerprint.replace(/:/g, '').toLowerCase() ?? '',
  ssl_client_v_start: (r) => cert(r).x509?.validFrom ?? '',
  ssl_client_v_end: (r) => cert(r).x509?.validTo ?? '',
  ssl_client_v_remain: (r) => {
    const x = cert(r).x509;
    if (!x) return '';
    const left = Date.parse(x.validTo) - Date.now();
    return String(left <= 0 ? 0 : Math.floor(left / DAY_MS));
  },
  ssl_client_raw_cert: (r) => cert(r).x509?.toString() ?? '',
  // The deprecated form: every line after the first begins with a tab, so it fits in one header.
  ssl_client_cert: (r) => cert(r).x509?.toString().replace(/\n$/, '').replace(/\n/g, '\n\t') ?? '',
  ssl_client_escaped_cert: (r) => (cert(r).x509 ? encodeURIComponent(cert(r).x509!.toString()) : ''),
};
