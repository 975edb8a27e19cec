/**
 * A stand-in for a tsgi worker until tsgi has the persistent link: a Node uwsgi server answering the
 * guide's hello page, speaking the link contract of docs/protocol-keepalive.md when the request offers it
 * (and plain uwsgi otherwise). Used only by the benchmark, labelled as a stand-in in its output.
 * Usage: node standin-tsgi.js SOCKET_PATH
 */
import { createServer, type Socket } from 'node:net';
import { unlinkSync } from 'node:fs';
import { decodePacket } from '../../src/protocol/uwsgi.js';

const BODY = "<h1 style='color:blue'>Hello There!</h1>";
const KEEP = Buffer.from(`HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: ${BODY.length}\r\nX-Tsgi-Keepalive: 1\r\n\r\n${BODY}`);
const PLAIN = Buffer.from(`HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n${BODY}`);

const path = process.argv[2]!;
try {
  unlinkSync(path);
} catch {
  // none
}
createServer((s: Socket) => {
  let buf: Buffer | null = null;
  s.on('data', (d: Buffer) => {
    buf = buf ? Buffer.concat([buf, d]) : d;
    for (;;) {
      const p = decodePacket(buf, 65535);
      if ('need' in p) return;
      if ('error' in p) {
        s.destroy();
        return;
      }
      let len = 0;
      let keep = false;
      for (const [k, v] of p.vars) {
        if (k === 'CONTENT_LENGTH') len = Number(v) || 0;
        else if (k === 'TSGI_KEEPALIVE') keep = v === '1';
      }
      if (buf.length < p.headerEnd + len) return;
      buf = buf.length === p.headerEnd + len ? null : buf.subarray(p.headerEnd + len);
      if (keep) s.write(KEEP);
      else {
        s.end(PLAIN);
        return;
      }
      if (!buf) return;
    }
  });
  s.on('error', () => {});
}).listen(path);
