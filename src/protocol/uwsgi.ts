/**
 * The uwsgi wire protocol, request side: pure functions, no sockets.
 *
 * A packet is a 4-byte header — modifier1 (u8), datasize (u16 little-endian), modifier2 (u8) — followed by
 * `datasize` bytes of vars. Each var is: key length (u16 LE), key bytes, value length (u16 LE), value bytes.
 * With modifier1 = 0 (WSGI/CGI vars) the request body follows the packet, CONTENT_LENGTH bytes long.
 *
 * Strings are byte strings: each JS char code 0..255 stands for one byte ('latin1'), which is how node:http
 * hands out request lines and header values and how PEP 3333 says environ strings carry bytes. A caller
 * holding UTF-8 text converts it first: Buffer.from(text, 'utf8').toString('latin1').
 */

/** The largest datasize a u16 can carry. */
export const UWSGI_MAX_DATASIZE = 0xffff;

export type UwsgiVars = Array<[string, string]> | Map<string, string>;

/** Thrown by encodeVars when the vars cannot be represented (stable `code` for callers). */
export class UwsgiEncodeError extends RangeError {
  readonly code: 'UWSGI_TOO_LARGE' | 'UWSGI_NOT_BYTES';
  constructor(code: 'UWSGI_TOO_LARGE' | 'UWSGI_NOT_BYTES', message: string) {
    super(message);
    this.name = 'UwsgiEncodeError';
    this.code = code;
  }
}

const NOT_A_BYTE = /[^\x00-\xff]/;

function checkBytes(s: string, what: string): void {
  if (NOT_A_BYTE.test(s)) throw new UwsgiEncodeError('UWSGI_NOT_BYTES', `uwsgi ${what} has a character above 0xff`);
}

/**
 * Encodes one request packet (header + vars). Throws UwsgiEncodeError when the vars exceed 65535 bytes or a
 * string holds a character above 0xff.
 */
export function encodeVars(vars: UwsgiVars, modifier1 = 0, modifier2 = 0): Buffer {
  let size = 0;
  for (const [k, v] of vars) size += 4 + k.length + v.length;
  if (size > UWSGI_MAX_DATASIZE) {
    throw new UwsgiEncodeError('UWSGI_TOO_LARGE', `uwsgi vars are ${size} bytes, more than the 65535 a packet can carry`);
  }
  const buf = Buffer.allocUnsafe(4 + size);
  buf[0] = modifier1 & 0xff;
  buf.writeUInt16LE(size, 1);
  buf[3] = modifier2 & 0xff;
  let off = 4;
  for (const [k, v] of vars) {
    checkBytes(k, `key "${k}"`);
    checkBytes(v, `value of ${k}`);
    buf.writeUInt16LE(k.length, off);
    off += 2;
    buf.write(k, off, 'latin1');
    off += k.length;
    buf.writeUInt16LE(v.length, off);
    off += 2;
    buf.write(v, off, 'latin1');
    off += v.length;
  }
  return buf;
}

/** Two-byte little-endian lengths as latin1 strings, made once for the lengths vars usually have. */
const LENGTHS: string[] = [];
function u16(n: number): string {
  if (n >= 4096) return String.fromCharCode(n & 0xff, n >>> 8);
  return (LENGTHS[n] ??= String.fromCharCode(n & 0xff, n >>> 8));
}

/**
 * encodeVars for vars held as two parallel lists (the first `count` entries), for callers that build a
 * packet per request: the vars are assembled into one byte string and copied into the packet in one write,
 * which costs a third of writing each key and value on its own. Same output and errors as encodeVars.
 */
export function encodeVarLists(keys: readonly string[], values: readonly string[], count: number, modifier1 = 0, modifier2 = 0): Buffer {
  let size = 0;
  let body = '';
  for (let i = 0; i < count; i++) {
    const k = keys[i]!;
    const v = values[i]!;
    size += 4 + k.length + v.length;
    body += u16(k.length) + k + u16(v.length) + v;
  }
  if (size > UWSGI_MAX_DATASIZE) {
    throw new UwsgiEncodeError('UWSGI_TOO_LARGE', `uwsgi vars are ${size} bytes, more than the 65535 a packet can carry`);
  }
  if (NOT_A_BYTE.test(body)) {
    // Name the first string at fault, as encodeVars does.
    for (let i = 0; i < count; i++) {
      checkBytes(keys[i]!, `key "${keys[i]}"`);
      checkBytes(values[i]!, `value of ${keys[i]}`);
    }
  }
  const buf = Buffer.allocUnsafe(4 + size);
  buf[0] = modifier1 & 0xff;
  buf.writeUInt16LE(size, 1);
  buf[3] = modifier2 & 0xff;
  buf.write(body, 4, 'latin1');
  return buf;
}

export interface UwsgiPacket {
  modifier1: number;
  modifier2: number;
  /** Vars in wire order; repeated keys are kept. */
  vars: Array<[string, string]>;
  /** Offset of the first byte after the packet (where a request body starts). */
  headerEnd: number;
}

/**
 * Decodes one packet from the start of `buf`.
 * - `{need}`: not enough bytes yet; `need` is the total number of bytes the packet requires (≥ 4).
 * - `{error}`: the packet is malformed or larger than `maxSize` bytes of vars; the connection should be dropped.
 * Never throws and never reads outside `buf`.
 */
export function decodePacket(buf: Buffer, maxSize: number): UwsgiPacket | { need: number } | { error: string } {
  if (buf.length < 4) return { need: 4 };
  const modifier1 = buf[0]!;
  const size = buf.readUInt16LE(1);
  const modifier2 = buf[3]!;
  if (size > maxSize) return { error: `uwsgi packet of ${size} bytes is larger than the ${maxSize} allowed` };
  const end = 4 + size;
  if (buf.length < end) return { need: end };
  const vars: Array<[string, string]> = [];
  let off = 4;
  while (off < end) {
    if (off + 2 > end) return { error: `uwsgi var at offset ${off} is truncated (key length)` };
    const klen = buf.readUInt16LE(off);
    off += 2;
    if (off + klen > end) return { error: `uwsgi key at offset ${off} runs past the packet end` };
    const key = buf.toString('latin1', off, off + klen);
    off += klen;
    if (off + 2 > end) return { error: `uwsgi var ${JSON.stringify(key)} is truncated (value length)` };
    const vlen = buf.readUInt16LE(off);
    off += 2;
    if (off + vlen > end) return { error: `uwsgi value of ${JSON.stringify(key)} runs past the packet end` };
    vars.push([key, buf.toString('latin1', off, off + vlen)]);
    off += vlen;
  }
  return { modifier1, modifier2, vars, headerEnd: end };
}
