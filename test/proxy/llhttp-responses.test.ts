/**
 * llhttp's response test corpus (../shared/conformance/llhttp-md, the "response" cases) served as raw bytes
 * by a fake uwsgi backend — a socket server in this process that answers each uwsgi request with one case
 * and closes, as a plain uwsgi backend does. What the client of tsgi-proxy must see:
 *  - a response rejected before its first body byte: 502;
 *  - a well-formed response: its final status and exactly its body, framed correctly to the client;
 *  - a response whose body turns malformed after some body bytes: the status, then a body that is visibly
 *    cut (no final chunk / connection closed short), never a clean end;
 *  - bytes after the end of a framed response: ignored.
 * Expected bodies and error positions come from Node 20's own llhttp run over the raw bytes (the parser
 * tsgi-proxy uses); where that llhttp disagrees with the corpus (which follows a newer llhttp), the case is
 * printed as a version difference rather than failed.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { decodePacket } from '../../src/protocol/uwsgi.js';
import { HTTPParser } from 'node:_http_common';
import { SHARED, freePort, rawRequest, startProxy, tempDir, type Proc } from './helpers.js';

const FILE = join(SHARED, 'conformance', 'llhttp-md', 'cases.json');

interface Msg {
  status: string;
  body: string;
  headers_complete?: string;
  complete?: boolean;
  headers: Array<[string, string]>;
}
interface Case {
  id: string;
  title: string;
  meta: { type: string };
  raw_b64: string;
  messages: Msg[];
  error: { offset: number; code: number; reason: string } | null;
}

function statusOf(m: Msg): number {
  return Number(/status=(\d+)/.exec(m.headers_complete ?? '')?.[1] ?? 0);
}

const present = existsSync(FILE);

interface Oracle {
  /** The final status, or 0 when the response is rejected before its first body byte. */
  status: number;
  body: Buffer;
  complete: boolean;
  error: boolean;
}

/** What Node's llhttp makes of the raw bytes, read the way tsgi-proxy reads a plain uwsgi backend. */
function oracle(raw: Buffer): Oracle {
  const p = new HTTPParser();
  p.initialize(HTTPParser.RESPONSE, {}, 0, HTTPParser.kLenientNone);
  const o: Oracle = { status: 0, body: Buffer.alloc(0), complete: false, error: false };
  let status = 0;
  let done = false;
  const parts: Buffer[] = [];
  p[HTTPParser.kOnHeaders] = () => 0;
  p[HTTPParser.kOnHeadersComplete] = (_a: number, _b: number, _h: unknown, _m: unknown, _u: unknown, st: number) => {
    if (done) return 1;
    if (st >= 100 && st < 200 && st !== 101) return 0;
    status = st === 101 ? -1 : st;
    return 0;
  };
  p[HTTPParser.kOnBody] = (b: Buffer) => {
    if (!done) parts.push(Buffer.from(b));
  };
  p[HTTPParser.kOnMessageComplete] = () => {
    if (status !== 0 && !done) {
      done = true;
      o.complete = true;
    }
  };
  p[HTTPParser.kOnExecute] = () => 0;
  const rc = p.execute(raw);
  if (!done) {
    if (rc instanceof Error) o.error = true;
    else if (p.finish() instanceof Error) o.error = true;
  }
  o.body = Buffer.concat(parts);
  o.status = status <= 0 || (o.error && o.body.length === 0) ? 0 : status;
  return o;
}

describe('llhttp response cases through a fake uwsgi backend', { skip: present ? false : `no conformance data at ${FILE} (set TSGI_SHARED)` }, () => {
  let t: ReturnType<typeof tempDir>;
  let port: number;
  let proxy: Proc;
  let backend: Server;
  const cases: Case[] = present ? (JSON.parse(readFileSync(FILE, 'utf8')) as { cases: Case[] }).cases.filter((c) => c.meta.type === 'response') : [];

  before(async () => {
    t = tempDir('llhttp');
    backend = createServer((s) => {
      let buf = Buffer.alloc(0);
      s.on('data', (d) => {
        buf = Buffer.concat([buf, d]);
        const p = decodePacket(buf, 65535);
        if (!('vars' in p)) return;
        const path = new Map(p.vars).get('PATH_INFO') ?? '';
        const c = cases[Number(path.split('/')[2])];
        s.end(c ? Buffer.from(c.raw_b64, 'base64') : Buffer.from('HTTP/1.1 500 X\r\n\r\n'));
      });
      s.on('error', () => {});
    });
    await new Promise<void>((res) => backend.listen(join(t.dir, 'fake.sock'), res));
    port = await freePort();
    writeFileSync(
      join(t.dir, 'nginx.conf'),
      `events {}\nhttp {\n access_log off;\n error_log ${t.dir}/error.log;\n server {\n  listen 127.0.0.1:${port};\n  location /case/ { include uwsgi_params; uwsgi_tsgi_keepalive off; uwsgi_pass unix:${t.dir}/fake.sock; }\n }\n}\n`,
    );
    proxy = await startProxy(t.dir, 'nginx.conf', port);
  });

  after(async () => {
    await proxy?.stop('SIGQUIT');
    backend?.close();
    t?.cleanup();
  });

  test('every response case: 502 when malformed, else the right status, body and framing', async () => {
    const wrong: string[] = [];
    const versionGaps: string[] = [];
    let n502 = 0;
    for (let i = 0; i < cases.length; i++) {
      const c = cases[i]!;
      const r = await rawRequest(port, `GET /case/${i} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
      const want = oracle(Buffer.from(c.raw_b64, 'base64'));
      const corpusRejects = c.error !== null && !c.messages.some((m) => m.complete && m.headers_complete && !(statusOf(m) >= 100 && statusOf(m) < 200));
      if (corpusRejects !== (want.error && !want.complete)) versionGaps.push(`${c.id} ${c.title}: corpus ${c.error ? 'error' : 'ok'}, node ${process.versions.llhttp} ${want.error ? 'error' : 'ok'}`);
      const raw = r.raw;
      const headEnd = raw.indexOf('\r\n\r\n');
      const rawBody = headEnd < 0 ? '' : raw.slice(headEnd + 4);
      const chunked = /\r\ntransfer-encoding: chunked\r\n/i.test(raw.slice(0, headEnd + 2));
      const noBody = want.status === 204 || want.status === 304;
      const cleanEnd = noBody ? rawBody === '' : chunked ? rawBody.endsWith('0\r\n\r\n') : r.headers.has('content-length') ? Buffer.byteLength(rawBody, 'latin1') === Number(r.headers.get('content-length')) : true;
      let expect: string;
      let ok: boolean;
      if (want.status === 0) {
        expect = '502';
        ok = r.status === 502;
        if (ok) n502++;
      } else if (want.error) {
        expect = `${want.status} then a cut body`;
        ok = r.status === want.status && !cleanEnd && r.body === want.body.toString('latin1').slice(0, r.body.length);
      } else {
        expect = `${want.status} with body ${JSON.stringify(want.body.toString('latin1'))}`;
        ok = r.status === want.status && cleanEnd && (noBody || r.body === want.body.toString('latin1'));
      }
      if (!ok) wrong.push(`${c.id} ${c.title}: expected ${expect}, got ${r.status} ${JSON.stringify(rawBody.slice(0, 60))}`);
    }
    if (versionGaps.length) console.log(`cases where Node's llhttp differs from the corpus:\n${versionGaps.join('\n')}`);
    assert.deepEqual(wrong, []);
    assert.ok(n502 > 10, 'the malformed cases were answered 502');
  });

  test('tsgi-proxy still serves after the malformed cases', async () => {
    const good = cases.findIndex((c) => !c.error && c.messages.length === 1 && statusOf(c.messages[0]!) === 200);
    const r = await rawRequest(port, `GET /case/${good} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
    assert.equal(r.status, 200);
  });
});
