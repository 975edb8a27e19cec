/**
 * The https listeners' certificates, read by the master before it drops privileges (as uWSGI builds its TLS
 * contexts while still root: a key file readable by root only keeps working) and checked there by building
 * the context once, so a bad file or cipher list stops the start with one line. The router gets the PEM text
 * over its IPC channel (never in its environment, which /proc shows).
 */
import { readFileSync } from 'node:fs';
import tls from 'node:tls';
import { ConfigError } from '../config/errors.js';
import type { SocketSpec } from '../config/resolve.js';

/** What the router needs to serve one https listener. */
export interface TlsMaterial {
  cert: string;
  key: string;
  ca: string | undefined;
  ciphers: string | undefined;
  requireClientCert: boolean;
}

function readPem(spec: SocketSpec, what: string, file: string): string {
  try {
    return readFileSync(file, 'latin1');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : code === 'EISDIR' ? 'is a directory' : String(code);
    throw new ConfigError('BAD_VALUE', `${what} ${file}: cannot read (${why})`, spec.origin, spec.option);
  }
}

/** Reads and checks the files of an https socket; throws a ConfigError naming the option and the file. */
export function loadTls(spec: SocketSpec): TlsMaterial {
  const t = spec.tls!;
  const cert = readPem(spec, 'certificate', t.cert);
  const key = readPem(spec, 'key', t.key);
  const ca = t.clientCa === undefined ? undefined : readPem(spec, 'client CA', t.clientCa);
  const fail = (what: string, err: unknown): ConfigError =>
    new ConfigError('BAD_VALUE', `${what}: ${(err as Error).message.replace(/^error:[0-9A-F]+:/i, '')}`, spec.origin, spec.option);
  // Each part on its own first, so that the line names the file at fault.
  try {
    tls.createSecureContext({ cert });
  } catch (err) {
    throw fail(`certificate ${t.cert} is not a PEM certificate`, err);
  }
  try {
    tls.createSecureContext({ key });
  } catch (err) {
    throw fail(`key ${t.key} is not a PEM private key (or is encrypted)`, err);
  }
  try {
    tls.createSecureContext({ cert, key });
  } catch (err) {
    throw fail(`key ${t.key} does not match certificate ${t.cert}`, err);
  }
  if (ca !== undefined) {
    try {
      tls.createSecureContext({ ca });
      if (!/-----BEGIN CERTIFICATE-----/.test(ca)) throw new Error('no PEM certificate in it');
    } catch (err) {
      throw fail(`client CA ${t.clientCa} is not a PEM certificate`, err);
    }
  }
  if (t.ciphers !== undefined) {
    try {
      tls.createSecureContext({ ciphers: t.ciphers });
    } catch (err) {
      throw fail(`cipher list '${t.ciphers}' is not one OpenSSL knows`, err);
    }
  }
  return { cert, key, ca, ciphers: t.ciphers, requireClientCert: t.requireClientCert };
}
