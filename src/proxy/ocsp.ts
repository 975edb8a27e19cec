/**
 * OCSP stapling (`ssl_stapling`): the server's certificate status, fetched from the CA's responder and sent to
 * clients in the TLS handshake so that they need not ask the CA themselves.
 *
 * As in nginx, the status is fetched when a handshake first asks for it, so that handshake goes without; the
 * response is kept until shortly before its nextUpdate (an hour at most, five minutes at least, five minutes
 * after a failure) and only a "good" status is ever stapled. `ssl_stapling_file` staples a fixed response from
 * the first handshake. Node has no OCSP API beyond the handshake hook, so the request is built and the
 * response read here, with a small DER reader: just the fields stapling needs.
 */
import { createHash, verify as verifySignature, X509Certificate } from 'node:crypto';
import http from 'node:http';

// ---- a minimal DER reader ----

interface Tlv {
  tag: number;
  /** Where the element starts (its tag byte), where its content starts and where it ends. */
  at: number;
  start: number;
  end: number;
}

function tlv(b: Buffer, at: number): Tlv {
  if (at + 2 > b.length) throw new Error('truncated DER');
  const tag = b[at]!;
  let len = b[at + 1]!;
  let start = at + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4 || start + n > b.length) throw new Error('bad DER length');
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + b[start + i]!;
    start += n;
  }
  if (start + len > b.length) throw new Error('truncated DER');
  return { tag, at, start, end: start + len };
}

/** The elements inside a constructed element. */
function children(b: Buffer, parent: Tlv): Tlv[] {
  const out: Tlv[] = [];
  for (let at = parent.start; at < parent.end;) {
    const t = tlv(b, at);
    out.push(t);
    at = t.end;
  }
  return out;
}

function enc(tag: number, content: Buffer): Buffer {
  const n = content.length;
  const len = n < 0x80 ? Buffer.from([n]) : n < 0x100 ? Buffer.from([0x81, n]) : Buffer.from([0x82, n >> 8, n & 0xff]);
  return Buffer.concat([Buffer.from([tag]), len, content]);
}

const SEQ = 0x30;
/** sha1's AlgorithmIdentifier: OCSP's CertID hashes are SHA-1 by convention (RFC 6960's default). */
const SHA1_ALG = Buffer.from('300906052b0e03021a0500', 'hex');

/** Certificate fields: tbsCertificate's serial (INTEGER, whole), subject (Name, whole) and public key bits. */
function certFields(der: Buffer): { serial: Buffer; subject: Buffer; keyBits: Buffer } {
  const cert = tlv(der, 0);
  const tbs = children(der, children(der, cert)[0]!);
  let i = tbs[0]!.tag === 0xa0 ? 1 : 0; // [0] version
  const serial = tbs[i++]!;
  i++; // signature algorithm
  i++; // issuer
  i++; // validity
  const subject = tbs[i++]!;
  const spki = children(der, tbs[i]!);
  const bits = spki[1]!;
  return { serial: der.subarray(serial.at, serial.end), subject: der.subarray(subject.at, subject.end), keyBits: der.subarray(bits.start + 1, bits.end) };
}

/** The CertID that names `cert` (issued by `issuer`) in requests and responses. */
function certId(cert: Buffer, issuer: Buffer): Buffer {
  const c = certFields(cert);
  const i = certFields(issuer);
  const nameHash = createHash('sha1').update(i.subject).digest();
  const keyHash = createHash('sha1').update(i.keyBits).digest();
  return enc(SEQ, Buffer.concat([SHA1_ALG, enc(0x04, nameHash), enc(0x04, keyHash), c.serial]));
}

/** An OCSPRequest for one certificate, no nonce (responses are shared by every client, as nginx's). */
export function ocspRequest(cert: Buffer, issuer: Buffer): Buffer {
  return enc(SEQ, enc(SEQ, enc(SEQ, enc(SEQ, certId(cert, issuer)))));
}

function generalizedTime(b: Buffer, t: Tlv): number {
  const s = b.toString('latin1', t.start, t.end);
  const m = /^(\d{4})(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)(?:\.\d+)?Z$/.exec(s);
  if (!m) throw new Error(`bad time ${s}`);
  return Date.UTC(+m[1]!, +m[2]! - 1, +m[3]!, +m[4]!, +m[5]!, +m[6]!);
}

const SIG_HASH: Record<string, string | null> = {
  '2a864886f70d010105': 'sha1', '2a864886f70d01010b': 'sha256', '2a864886f70d01010c': 'sha384', '2a864886f70d01010d': 'sha512',
  '2a8648ce3d040302': 'sha256', '2a8648ce3d040303': 'sha384', '2a8648ce3d040304': 'sha512', '2b6570': null,
};
const OCSP_BASIC = '2b0601050507300101';
const OCSP_SIGNING = '1.3.6.1.5.5.7.3.9';

export interface OcspStatus {
  status: 'good' | 'revoked' | 'unknown';
  thisUpdate: number;
  nextUpdate: number | undefined;
}

/**
 * Reads an OCSPResponse for `cert`: its status and times. With `verify`, the signature must be the issuer's or
 * that of a responder certificate the issuer signed for OCSP (RFC 6960 4.2.2.2). Throws with the reason.
 */
export function readOcspResponse(der: Buffer, cert: Buffer, issuer: Buffer, verify: boolean): OcspStatus {
  const top = children(der, tlv(der, 0));
  const status = der[top[0]!.start]!;
  if (status !== 0) throw new Error(`OCSP response not successful (${status})`);
  const bytes = children(der, children(der, top[1]!)[0]!);
  if (der.toString('hex', bytes[0]!.start, bytes[0]!.end) !== OCSP_BASIC) throw new Error('OCSP response of an unknown type');
  const basicDer = der.subarray(bytes[1]!.start, bytes[1]!.end);
  const basic = children(basicDer, tlv(basicDer, 0));
  const tbs = basic[0]!;
  const data = children(basicDer, tbs);
  let i = data[0]!.tag === 0xa0 ? 1 : 0;
  i++; // responderID
  i++; // producedAt
  const wanted = certId(cert, issuer);
  let found: OcspStatus | undefined;
  for (const single of children(basicDer, data[i]!)) {
    const f = children(basicDer, single);
    if (!basicDer.subarray(f[0]!.at, f[0]!.end).equals(wanted)) continue;
    const st = f[1]!.tag === 0x80 ? 'good' : f[1]!.tag === 0xa1 ? 'revoked' : 'unknown';
    const thisUpdate = generalizedTime(basicDer, f[2]!);
    const next = f.find((x) => x.tag === 0xa0);
    found = { status: st, thisUpdate, nextUpdate: next ? generalizedTime(basicDer, children(basicDer, next)[0]!) : undefined };
  }
  if (!found) throw new Error('the certificate is not in the OCSP response');
  if (verify) {
    const alg = children(basicDer, basic[1]!)[0]!;
    const oid = basicDer.toString('hex', alg.start, alg.end);
    if (!(oid in SIG_HASH)) throw new Error('OCSP response signed with an unknown algorithm');
    const sig = basicDer.subarray(basic[2]!.start + 1, basic[2]!.end);
    const signed = basicDer.subarray(tbs.at, tbs.end);
    const issuerX = new X509Certificate(issuer);
    const signers = [issuerX];
    const certs = basic[3];
    if (certs !== undefined) {
      for (const c of children(basicDer, children(basicDer, certs)[0]!)) {
        const x = new X509Certificate(basicDer.subarray(c.at, c.end));
        // A delegated responder: issued (and signed) by our issuer, for OCSP signing.
        if (x.checkIssued(issuerX) && x.verify(issuerX.publicKey) && (x.keyUsage ?? []).includes(OCSP_SIGNING)) signers.push(x);
      }
    }
    if (!signers.some((x) => verifySignature(SIG_HASH[oid] ?? null, signed, x.publicKey, sig))) throw new Error('OCSP response signature is not valid');
  }
  return found;
}

/** The OCSP responder URL of a certificate (its Authority Information Access), if it names one over http. */
export function responderUrl(cert: X509Certificate): string | undefined {
  const m = /OCSP - URI:(http:\/\/[^\s]+)/.exec(cert.infoAccess ?? '');
  return m?.[1];
}

/** The certificates of a PEM file, DER, in order. */
export function pemCerts(pem: Buffer | undefined): Buffer[] {
  if (pem === undefined) return [];
  const out: Buffer[] = [];
  const re = /-----BEGIN CERTIFICATE-----([^-]+)-----END CERTIFICATE-----/g;
  for (let m; (m = re.exec(pem.toString('latin1'))) !== null;) out.push(Buffer.from(m[1]!.replace(/\s+/g, ''), 'base64'));
  return out;
}

/**
 * What stapling needs of a server's certificates, found when the configuration is loaded: the issuer (in the
 * certificate file's chain, else among ssl_trusted_certificate) and the responder (ssl_stapling_responder, else
 * the certificate's own). `problem` is nginx's warning when stapling cannot work (it is then off).
 */
export function staplingSetup(certificate: Buffer, trusted: Buffer | undefined, responder: string | undefined, path: string):
  { issuer?: Buffer; url?: string; problem?: string } {
  const chain = pemCerts(certificate);
  if (chain.length === 0) return { problem: `"ssl_stapling" ignored, no certificate in "${path}"` };
  const leaf = new X509Certificate(chain[0]!);
  const issuer = [...chain.slice(1), ...pemCerts(trusted)].find((c) => leaf.checkIssued(new X509Certificate(c)));
  if (issuer === undefined) return { problem: `"ssl_stapling" ignored, issuer certificate not found for certificate "${path}"` };
  const url = responder ?? responderUrl(leaf);
  if (url === undefined) return { problem: `"ssl_stapling" ignored, no OCSP responder URL in the certificate "${path}"` };
  return { issuer, url };
}

/** One certificate's stapled status: what a handshake gets, and when to ask the responder again. */
export class Stapler {
  private response: Buffer | undefined;
  private validUntil = 0;
  private refreshAt = 0;
  private loading = false;

  constructor(
    readonly cert: Buffer,
    readonly issuer: Buffer,
    readonly url: string | undefined,
    readonly verify: boolean,
    readonly timeoutMs: number,
    readonly log: (level: 'error' | 'warn', msg: string) => void,
    fixed?: Buffer,
  ) {
    if (fixed !== undefined) {
      this.response = fixed;
      this.validUntil = Infinity;
      this.refreshAt = Infinity;
    }
  }

  /** For a handshake that asks: the response to staple, if there is a valid one; starts a refresh when due. */
  current(now = Date.now()): Buffer | undefined {
    if (now >= this.refreshAt && !this.loading) this.fetch();
    return now < this.validUntil ? this.response : undefined;
  }

  private fetch(): void {
    if (this.url === undefined) return;
    this.loading = true;
    const body = ocspRequest(this.cert, this.issuer);
    const done = (err: string | undefined, der?: Buffer): void => {
      this.loading = false;
      const t = Date.now();
      if (err !== undefined || der === undefined) {
        this.log('error', `${err ?? 'no response'} while requesting certificate status, responder: ${this.url}`);
        this.refreshAt = t + 300000;
        return;
      }
      try {
        const st = readOcspResponse(der, this.cert, this.issuer, this.verify);
        if (st.status !== 'good') throw new Error(`certificate status "${st.status}" in the OCSP response`);
        const valid = st.nextUpdate ?? Infinity;
        if (valid <= t) throw new Error('OCSP response is out of date');
        this.response = der;
        this.validUntil = valid;
        // Ask again before it expires: not later than in an hour, not sooner than in five minutes.
        this.refreshAt = Math.max(Math.min(valid - 300000, t + 3600000), t + 300000);
      } catch (e) {
        this.log('error', `${(e as Error).message} while requesting certificate status, responder: ${this.url}`);
        this.refreshAt = t + 300000;
      }
    };
    const req = http.request(this.url, { method: 'POST', headers: { 'Content-Type': 'application/ocsp-request', 'Content-Length': body.length }, timeout: this.timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size > 1 << 20) req.destroy(new Error('OCSP response too large'));
        else chunks.push(c);
      });
      res.on('end', () => (res.statusCode === 200 ? done(undefined, Buffer.concat(chunks)) : done(`OCSP responder sent status ${res.statusCode}`)));
      res.on('error', (e) => done(e.message));
    });
    req.on('timeout', () => req.destroy(new Error('OCSP responder timed out')));
    req.on('error', (e) => done(e.message));
    req.end(body);
  }
}
