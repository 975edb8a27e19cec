// Node's own llhttp binding, the parser node:http uses for responses. Exported (undocumented) by
// node:_http_common; typed here with the members tsgi-proxy uses.
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
    free(): void;
    remove(): void;
    [key: number]: unknown;
  }
}
