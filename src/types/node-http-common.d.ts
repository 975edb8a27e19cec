// Node's own llhttp binding and the helpers node:http builds on, exported (undocumented) by the builtin
// node:_http_common. tsgi's HTTP router parses client requests with it and tsgi-proxy parses upstream
// responses with it: the same parser, with the same strictness, as node:http. Typed with the members used.
declare module 'node:_http_common' {
  export class HTTPParser {
    static REQUEST: number;
    static RESPONSE: number;
    static kOnMessageBegin: number;
    static kOnHeaders: number;
    static kOnHeadersComplete: number;
    static kOnBody: number;
    static kOnMessageComplete: number;
    static kOnExecute: number;
    static kLenientNone: number;
    initialize(type: number, resource: object, maxHeaderSize?: number, lenient?: number): void;
    execute(data: Buffer): number | Error;
    finish(): Error | undefined;
    close(): void;
    /**
     * Makes the parser the reader of a socket's native handle: received bytes go to llhttp in C++, without
     * the stream's JavaScript; kOnExecute is then called after each read with the bytes parsed or an Error.
     * The end of the stream and read errors still reach the socket as usual.
     */
    consume(handle: object): void;
    /** Gives the handle's reads back to the socket. */
    unconsume(): void;
    /** The buffer of the read being parsed (consumed mode): what follows an upgrade head is read from it. */
    getCurrentBuffer(): Buffer;
    free(): void;
    remove(): void;
    [key: number]: unknown;
  }
  /** The method names llhttp's method numbers index. */
  export const methods: string[];
  /** True when the string is an HTTP token (a valid header name). */
  export function _checkIsHttpToken(s: string): boolean;
  /** True when the string holds a character a header value may not carry (CR, LF, NUL, ...). */
  export function _checkInvalidHeaderChar(s: string): boolean;
}
