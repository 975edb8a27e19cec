/** TLS directives: certificates and protocols for `listen ... ssl`. */
import { ProxyConfError } from '../errors.js';
import type { Scope } from '../scope.js';
import { HTTP, SRV, MORE, duplicate, parseFlag, pos, tuning, type DirectiveSpec } from '../table.js';
import { isAbsolute, resolve } from 'node:path';

type Spec = DirectiveSpec<Scope>;
const CTX = HTTP | SRV;
const PROTOCOLS = new Set(['SSLv2', 'SSLv3', 'TLSv1', 'TLSv1.1', 'TLSv1.2', 'TLSv1.3']);

function readPem(s: Scope, file: string, d: Parameters<Spec['set']>[1]): { buf: Buffer; path: string } {
  if (file.includes('$')) throw new ProxyConfError('NOT_SUPPORTED', `variables in "${d.name}" directive are not supported by tsgi-proxy`, pos(d));
  const path = isAbsolute(file) ? file : resolve(s.env.confPrefix, file);
  const text = s.env.fs.read(path);
  if (text instanceof Error) throw new ProxyConfError('FILE', `cannot load certificate "${path}": ${text.message}`, pos(d));
  return { buf: Buffer.from(text, 'latin1'), path };
}

/** A file of PEM certificates (or CRLs): refused at -t when it holds none, where Node would fail at start. */
function readCerts(s: Scope, file: string, d: Parameters<Spec['set']>[1], kind = 'CERTIFICATE'): Buffer {
  const r = readPem(s, file, d);
  if (!r.buf.includes(`-----BEGIN ${kind}-----`)) throw new ProxyConfError('FILE', `no ${kind === 'CERTIFICATE' ? 'certificates' : 'CRLs'} in "${r.path}" of the "${d.name}" directive`, pos(d));
  return r.buf;
}

export const sslSpecs: Spec[] = [
  {
    name: 'ssl_certificate', ctx: CTX, args: 1,
    set(s, d) {
      if (s.loc.ssl.certificate) throw duplicate(d);
      const r = readPem(s, d.args[0]!, d);
      s.loc.ssl.certificate = r.buf;
      s.loc.ssl.certificatePath = r.path;
    },
  },
  {
    name: 'ssl_certificate_key', ctx: CTX, args: 1,
    set(s, d) {
      if (s.loc.ssl.certificateKey) throw duplicate(d);
      s.loc.ssl.certificateKey = readPem(s, d.args[0]!, d).buf;
    },
  },
  {
    name: 'ssl_protocols', ctx: CTX, args: [1, MORE],
    set(s, d) {
      for (const a of d.args) if (!PROTOCOLS.has(a)) throw new ProxyConfError('BAD_VALUE', `invalid value "${a}" in "ssl_protocols" directive`, pos(d));
      s.loc.ssl.protocols = d.args;
    },
  },
  { name: 'ssl_ciphers', ctx: CTX, args: 1, set: (s, d) => void (s.loc.ssl.ciphers = d.args[0]!) },
  { name: 'ssl_prefer_server_ciphers', ctx: CTX, args: 'flag', set: (s, d) => void (s.loc.ssl.preferServerCiphers = parseFlag(d)) },
  {
    name: 'ssl', ctx: CTX, args: 'flag',
    set(_s, d) {
      throw new ProxyConfError('NOT_SUPPORTED', 'the "ssl" directive is not supported by tsgi-proxy, use the "ssl" parameter of the "listen" directive instead', pos(d));
    },
  },
  {
    name: 'ssl_verify_client', ctx: CTX, args: 1,
    set(s, d) {
      const v = d.args[0]!;
      if (v !== 'on' && v !== 'off' && v !== 'optional' && v !== 'optional_no_ca') throw new ProxyConfError('BAD_VALUE', `invalid value "${v}"`, pos(d));
      s.loc.ssl.verifyClient = v;
      s.loc.ssl.verifyClientPos = pos(d);
    },
  },
  { name: 'ssl_client_certificate', ctx: CTX, args: 1, set: (s, d) => void (s.loc.ssl.clientCertificate = readCerts(s, d.args[0]!, d)) },
  { name: 'ssl_trusted_certificate', ctx: CTX, args: 1, set: (s, d) => void (s.loc.ssl.trustedCertificate = readCerts(s, d.args[0]!, d)) },
  { name: 'ssl_crl', ctx: CTX, args: 1, set: (s, d) => void (s.loc.ssl.crl = readCerts(s, d.args[0]!, d, 'X509 CRL')) },
  {
    name: 'ssl_verify_depth', ctx: CTX, args: 1,
    set(s, d) {
      const a = d.args[0]!;
      if (!/^\d+$/.test(a)) throw new ProxyConfError('BAD_VALUE', `"ssl_verify_depth" directive invalid number`, pos(d));
      s.loc.ssl.verifyDepth = Number(a);
    },
  },
  { name: 'ssl_stapling', ctx: CTX, args: 'flag', set: (s, d) => void (s.loc.ssl.stapling = parseFlag(d)) },
  { name: 'ssl_stapling_verify', ctx: CTX, args: 'flag', set: (s, d) => void (s.loc.ssl.staplingVerify = parseFlag(d)) },
  {
    name: 'ssl_stapling_file', ctx: CTX, args: 1,
    set(s, d) {
      const path = isAbsolute(d.args[0]!) ? d.args[0]! : resolve(s.env.confPrefix, d.args[0]!);
      const text = s.env.fs.read(path);
      if (text instanceof Error) throw new ProxyConfError('FILE', `cannot open "${path}": ${text.message}`, pos(d));
      s.loc.ssl.staplingFile = Buffer.from(text, 'latin1');
    },
  },
  {
    name: 'ssl_stapling_responder', ctx: CTX, args: 1,
    set(s, d) {
      const url = d.args[0]!;
      if (!/^http:\/\/[^/\s]+/.test(url)) throw new ProxyConfError('BAD_VALUE', `invalid URL prefix in OCSP responder "${url}" in resolver`, pos(d));
      s.loc.ssl.staplingResponder = url;
    },
  },
  tuning('ssl_session_cache', CTX, [1, 2]),
  tuning('ssl_session_timeout', CTX, 1),
  tuning('ssl_session_tickets', CTX, 'flag'),
  tuning('ssl_dhparam', CTX, 1),
  tuning('ssl_ecdh_curve', CTX, 1),
];
