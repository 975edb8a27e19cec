/**
 * The worker → router frames of the link protocol (docs/protocol-link.md): a pure, incremental decoder.
 * Every frame is a type byte and a 24-bit little-endian payload length, then the payload.
 */
export const FRAME_HELLO = 1;
export const FRAME_HEAD = 2;
export const FRAME_BODY = 3;
export const FRAME_END = 4;
export const FRAME_ABORT = 5;
export const FRAME_GOODBYE = 6;

export interface FrameSink {
  hello(pid: number): void;
  head(status: string, headers: string[]): void;
  body(chunk: Buffer): void;
  end(): void;
  abort(): void;
  goodbye(): void;
  /** The stream is not the link protocol; the link must be closed. */
  protocolError(message: string): void;
}

/** Parses a HEAD payload: status, then name/value pairs, each u16-LE-length-prefixed latin-1. */
export function parseHead(p: Buffer): { status: string; headers: string[] } | undefined {
  if (p.length < 2) return undefined;
  let off = 2;
  const slen = p.readUInt16LE(0);
  if (off + slen > p.length) return undefined;
  const status = p.toString('latin1', off, off + slen);
  off += slen;
  const headers: string[] = [];
  while (off < p.length) {
    if (off + 2 > p.length) return undefined;
    const nlen = p.readUInt16LE(off);
    off += 2;
    if (off + nlen + 2 > p.length) return undefined;
    const name = p.toString('latin1', off, off + nlen);
    off += nlen;
    const vlen = p.readUInt16LE(off);
    off += 2;
    if (off + vlen > p.length) return undefined;
    headers.push(name, p.toString('latin1', off, off + vlen));
    off += vlen;
  }
  return { status, headers };
}

/**
 * Feeds received bytes, calls the sink for every complete frame. BODY payloads are handed out as views of
 * the received buffers (no copy) when they arrive whole, which is the common case.
 */
export class FrameDecoder {
  private pending: Buffer | undefined;

  constructor(private readonly sink: FrameSink) {}

  push(chunk: Buffer): void {
    let buf = chunk;
    if (this.pending) {
      buf = Buffer.concat([this.pending, chunk]);
      this.pending = undefined;
    }
    let off = 0;
    const len = buf.length;
    while (off + 4 <= len) {
      const type = buf[off]!;
      const size = buf[off + 1]! | (buf[off + 2]! << 8) | (buf[off + 3]! << 16);
      const start = off + 4;
      if (type === FRAME_BODY && size > 0 && start + size > len && start < len) {
        // A large body frame split across reads: pass on what is here, keep waiting for the rest.
        const have = len - start;
        this.sink.body(buf.subarray(start, len));
        // Rewrite the remaining frame as a smaller BODY frame header for the bytes still to come.
        const rest = size - have;
        const header = Buffer.allocUnsafe(4);
        header[0] = FRAME_BODY;
        header[1] = rest & 0xff;
        header[2] = (rest >> 8) & 0xff;
        header[3] = (rest >> 16) & 0xff;
        this.pending = header;
        return;
      }
      if (start + size > len) break;
      const payload = buf.subarray(start, start + size);
      off = start + size;
      switch (type) {
        case FRAME_BODY:
          if (size > 0) this.sink.body(payload);
          break;
        case FRAME_HEAD: {
          const h = parseHead(payload);
          if (!h) return this.sink.protocolError('malformed HEAD frame');
          this.sink.head(h.status, h.headers);
          break;
        }
        case FRAME_END:
          this.sink.end();
          break;
        case FRAME_ABORT:
          this.sink.abort();
          break;
        case FRAME_HELLO:
          if (size !== 4) return this.sink.protocolError('malformed HELLO frame');
          this.sink.hello(payload.readUInt32LE(0));
          break;
        case FRAME_GOODBYE:
          this.sink.goodbye();
          break;
        default:
          return this.sink.protocolError(`unknown frame type ${type}`);
      }
    }
    if (off < len) this.pending = buf.subarray(off);
  }
}
