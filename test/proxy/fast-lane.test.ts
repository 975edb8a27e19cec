/**
 * The fast lane (src/proxy/h1fast.ts): plain HTTP/1.x requests without a body are answered without node:http's
 * objects, byte for byte as node:http answers them (the same tsgi-proxy with TSGI_PROXY_FAST_LANE=0 is the
 * reference), and a connection whose request the lane does not serve goes on in node:http from that request.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { decodePacket } from '../../src/protocol/uwsgi.js';
import { FastLane } from '../../src/proxy/h1fast.js';
import { parseResponses, rawHttp } from '../helpers/http-raw.js';
import { freePort, startProxy, tempDir, waitFor, type Proc } from './helpers.js';

/**
 * A uwsgi backend: `/up` answers at once (method and body length in the body), `/stream` in two parts with no
 * length, the second `streamDelayMs` later; `streams` counts the /stream requests it has received.
 */
function backend(path: string, streamDelayMs = 30): Promise<Server & { streams: number }> {
  // A large body (over the lane's copy threshold) that compresses badly: the same bytes for every request.
  let seed = 7;
  const big = Array.from({ length: 120000 }, () => String.fromCharCode(33 + ((seed = (seed * 1103515245 + 12345) % 2147483648) % 90))).join('');
  const server = Object.assign(createServer((s: Socket) => {
    let buf = Buffer.alloc(0);
    s.on('error', () => {});
    s.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      const p = decodePacket(buf, 65535);
      if ('need' in p) return;
      if ('error' in p) return void s.destroy();
      const vars = new Map(p.vars);
      const len = Number(vars.get('CONTENT_LENGTH') || 0);
      if (buf.length < p.headerEnd + len) return;
      if (vars.get('PATH_INFO') === '/stream') {
        server.streams++;
        s.write('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nfirst part, ');
        setTimeout(() => s.end('second part\n'), streamDelayMs);
        return;
      }
      if (vars.get('PATH_INFO') === '/big' || vars.get('PATH_INFO') === '/bigz') {
        s.end(`HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: ${big.length}\r\n\r\n${big}`);
        return;
      }
      s.end(`HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Backend: yes\r\n\r\nup ${vars.get('REQUEST_METHOD')} ${len}\n`);
    });
  }), { streams: 0 });
  return new Promise((res) => server.listen(path, () => res(server)));
}

function conf(dir: string, port: number, log: string): string {
  return `
error_log ${join(dir, log)} debug;
events {}
http {
  access_log off;
  client_header_timeout 1s;
  server {
    listen 127.0.0.1:${port};
    root ${dir}/www;
    location = /ret { return 200 "hello\\n"; }
    location = /up { include uwsgi_params; uwsgi_pass unix:${dir}/b.sock; }
    location = /stream { include uwsgi_params; uwsgi_pass unix:${dir}/b.sock; }
    location = /big { include uwsgi_params; uwsgi_pass unix:${dir}/b.sock; }
    location = /bigz { include uwsgi_params; uwsgi_pass unix:${dir}/b.sock; gzip on; gzip_types text/plain; }
    location = /gz { gzip on; gzip_min_length 1; gzip_types text/plain; return 200 "${'compress me '.repeat(20)}"; }
    location = /moved { return 301 /ret; }
  }
}
`;
}

async function start(dir: string, name: string, fast: boolean): Promise<{ port: number; proc: Proc; log: string }> {
  const port = await freePort();
  writeFileSync(join(dir, `${name}.conf`), conf(dir, port, `${name}-error.log`));
  const proc = await startProxy(dir, `${name}.conf`, port, { TSGI_PROXY_FAST_LANE: fast ? '1' : '0' });
  return { port, proc, log: join(dir, `${name}-error.log`) };
}

/** The bytes a request gets, with what differs between two instances blanked: the Date's value, the port in a Location. */
async function answer(port: number, request: string): Promise<string> {
  const r = await rawHttp(port, request, { idleMs: 2000 });
  const text = r.bytes.toString('latin1').replace(/\r\nDate: [^\r]*/g, '\r\nDate: -').replaceAll(`:${port}/`, ':PORT/');
  return `${text}\n[closed by server: ${r.closedByServer}]`;
}

describe('the fast lane', () => {
  const { dir, cleanup } = tempDir('fastlane');
  let back: Server & { streams: number };
  let fast: { port: number; proc: Proc; log: string };
  let slow: { port: number; proc: Proc; log: string };

  before(async () => {
    mkdirSync(join(dir, 'www'));
    writeFileSync(join(dir, 'www/f.txt'), 'a static file\n');
    back = await backend(join(dir, 'b.sock'));
    fast = await start(dir, 'fast', true);
    slow = await start(dir, 'slow', false);
  });

  after(async () => {
    await fast?.proc.stop('SIGQUIT');
    await slow?.proc.stop('SIGQUIT');
    back?.close();
    cleanup();
  });

  test('answers byte for byte as node:http does: pages, static files, a backend (small, large, streamed), gzip, HEAD, 304, 206, HTTP/1.0, Connection: close', async () => {
    const etag = /ETag: ("[^"]+")/.exec(await answer(slow.port, 'GET /f.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'))![1]!;
    const requests = [
      'GET /ret HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
      'HEAD /ret HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
      'GET /f.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
      `GET /f.txt HTTP/1.1\r\nHost: x\r\nIf-None-Match: ${etag}\r\nConnection: close\r\n\r\n`,
      'GET /f.txt HTTP/1.1\r\nHost: x\r\nRange: bytes=2-5\r\nConnection: close\r\n\r\n',
      'GET /missing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
      'GET /up?a=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
      'GET /stream HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
      'GET /gz HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n',
      'GET /big HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
      'GET /bigz HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n',
      'HEAD /big HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
      'GET /moved HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
      'GET /ret HTTP/1.0\r\n\r\n',
      'GET /stream HTTP/1.0\r\n\r\n',
      'GET /ret HTTP/1.0\r\nConnection: keep-alive\r\n\r\n',
      'GET /ret HTTP/1.1\r\nHost: x\r\n\r\n',
    ];
    for (const req of requests) {
      const [a, b] = await Promise.all([answer(fast.port, req), answer(slow.port, req)]);
      assert.equal(a, b, `for ${JSON.stringify(req)}`);
      assert.match(a, /^HTTP\/1\.1 \d{3} /, `for ${JSON.stringify(req)}`);
    }
    // What the lane served stayed in the lane: none of these went to node:http.
    assert.doesNotMatch(readFileSync(fast.log, 'latin1'), /fast lane:/);
  });

  test('pipelined requests in one write, a POST among them, are answered in order; the POST hands the connection to node:http', async () => {
    const batch =
      'GET /ret HTTP/1.1\r\nHost: x\r\n\r\n' +
      'GET /up HTTP/1.1\r\nHost: x\r\n\r\n' +
      'POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello' +
      'GET /f.txt HTTP/1.1\r\nHost: x\r\n\r\n' +
      'GET /ret HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n';
    for (const p of [fast, slow]) {
      const r = await rawHttp(p.port, batch, { idleMs: 5000 });
      assert.ok(r.closedByServer, 'the last request said Connection: close');
      const responses = parseResponses(r.bytes);
      assert.deepEqual(responses.map((x) => `${x.status} ${x.body.toString('latin1').trim()}`), ['200 hello', '200 up GET 0', '200 up POST 5', '200 a static file', '200 hello']);
    }
    await waitFor('the hand-over line', () => /fast lane: a request with content-length: the connection goes on in node:http/.test(readFileSync(fast.log, 'latin1')));
  });

  test('a client that half-closes after pipelined requests, a POST among them, still gets every answer', async () => {
    const batch =
      'GET /ret HTTP/1.1\r\nHost: x\r\n\r\n' +
      'GET /up HTTP/1.1\r\nHost: x\r\n\r\n' +
      'POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc' +
      'GET /ret HTTP/1.1\r\nHost: x\r\n\r\n';
    for (const p of [fast, slow]) {
      const s = connect(p.port, '127.0.0.1');
      const got: Buffer[] = [];
      s.on('data', (d) => got.push(d));
      await new Promise((res) => s.once('connect', res));
      s.end(batch);
      await new Promise((res) => s.once('close', res));
      assert.deepEqual(parseResponses(Buffer.concat(got)).map((x) => `${x.status} ${x.body.toString('latin1').trim()}`), ['200 hello', '200 up GET 0', '200 up POST 3', '200 hello'], `port ${p.port}`);
    }
  });

  test('a head that comes in two writes is served by node:http', async () => {
    const s = connect(fast.port, '127.0.0.1');
    const got: Buffer[] = [];
    s.on('data', (d) => got.push(d));
    await new Promise((res) => s.once('connect', res));
    s.write('GET /ret HTTP/1.1\r\nHo');
    await new Promise((res) => setTimeout(res, 100));
    s.write('st: x\r\nConnection: close\r\n\r\n');
    await new Promise((res) => s.once('close', res));
    const [r] = parseResponses(Buffer.concat(got));
    assert.equal(r?.status, 200);
    assert.equal(r?.body.toString(), 'hello\n');
    await waitFor('the hand-over line', () => /fast lane: a request head not complete in what was read/.test(readFileSync(fast.log, 'latin1')));
  });

  test('what llhttp refuses, and an HTTP/1.1 request without Host, get node:http\'s answers', async () => {
    for (const req of ['GET /ret HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n', 'GET /ret HTTP/1.1\r\n\r\n', 'GET /ret HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n']) {
      const [a, b] = await Promise.all([answer(fast.port, req), answer(slow.port, req)]);
      assert.equal(a, b, `for ${JSON.stringify(req)}`);
      assert.match(a, /^HTTP\/1\.1 (400|501) /, `for ${JSON.stringify(req)}`);
    }
  });

  test('a connection that sends nothing is closed after client_header_timeout', async () => {
    const s = connect(fast.port, '127.0.0.1');
    s.on('error', () => {});
    const closed = new Promise((res) => s.once('close', res));
    await new Promise((res) => s.once('connect', res));
    await closed;
    assert.equal(s.bytesRead, 0);
  });
});

describe('the fast lane at a graceful stop', () => {
  test('an idle kept-alive connection is closed and the worker exits; a request in progress is answered first', async () => {
    const { dir, cleanup } = tempDir('fastlane-stop');
    const back = await backend(join(dir, 'b.sock'), 500);
    mkdirSync(join(dir, 'www'));
    const p = await start(dir, 'stop', true);
    try {
      const idle = connect(p.port, '127.0.0.1');
      idle.on('error', () => {});
      const idleData: Buffer[] = [];
      idle.on('data', (d) => idleData.push(d));
      const idleClosed = new Promise((res) => idle.once('close', res));
      idle.write('GET /ret HTTP/1.1\r\nHost: x\r\n\r\n');
      await waitFor('the first answer', () => Buffer.concat(idleData).includes('hello\n'));
      // A request whose backend answers in two parts is in progress when the stop comes.
      const busy = rawHttp(p.port, 'GET /stream HTTP/1.1\r\nHost: x\r\n\r\n', { idleMs: 10000 });
      await waitFor('the backend to get the request', () => back.streams === 1);
      p.proc.child.kill('SIGQUIT');
      await idleClosed;
      const r = await busy;
      assert.ok(r.closedByServer);
      const [resp] = parseResponses(r.bytes);
      assert.equal(resp?.body.toString(), 'first part, second part\n');
      assert.equal(await p.proc.exited, 0);
    } finally {
      await p.proc.stop('SIGKILL');
      back.close();
      cleanup();
    }
  });
});

describe('the fast lane\'s response against node:http\'s, for what a handler may do', () => {
  /** A node:http server answering with `handler`, with the lane (FastLane installed) or without. */
  async function serve(handler: (req: IncomingMessage, res: ServerResponse) => void, lane: boolean): Promise<{ port: number; close: () => void }> {
    const server = createHttpServer({ keepAliveTimeout: 0 }, handler);
    if (lane) new FastLane(server, handler, { maxHeaderSize: 0, headersTimeoutMs: 60000, onHandOver: null });
    await new Promise<void>((res) => server.listen(0, '127.0.0.1', res));
    return { port: (server.address() as { port: number }).port, close: () => server.close() };
  }

  const handlers: Record<string, (req: IncomingMessage, res: ServerResponse) => void> = {
    'end() twice, the second with a body': (_req, res) => {
      res.on('error', () => {});
      res.writeHead(200, ['Content-Type', 'text/plain', 'Content-Length', '3']);
      res.end(Buffer.from('one'));
      res.end(Buffer.from('two'));
    },
    'write() after end()': (_req, res) => {
      res.on('error', () => {});
      res.writeHead(200, ['Content-Length', '2']);
      res.end(Buffer.from('ok'));
      res.write(Buffer.from('late'));
    },
    'shouldKeepAlive turned off after the head': (_req, res) => {
      res.writeHead(200, ['Content-Length', '2']);
      res.shouldKeepAlive = false;
      res.end(Buffer.from('ok'));
    },
    'shouldKeepAlive off before the head': (_req, res) => {
      res.shouldKeepAlive = false;
      res.writeHead(200, ['Content-Length', '2']);
      res.end(Buffer.from('ok'));
    },
    'no length: chunked, then a write() that makes it node:http\'s': (_req, res) => {
      res.writeHead(200, ['Content-Type', 'text/plain']);
      res.write(Buffer.from('part one, '));
      res.end(Buffer.from('part two'));
    },
    'a write() that makes it node:http\'s, then keep-alive off after the head': (_req, res) => {
      res.writeHead(200, ['Content-Length', '4']);
      res.write(Buffer.from('ab'));
      res.shouldKeepAlive = false;
      res.end(Buffer.from('cd'));
    },
    'setHeader() then end() without writeHead': (_req, res) => {
      res.setHeader('X-Set', 'yes');
      res.end(Buffer.from('implicit head'));
    },
    'a 204 with a body given': (_req, res) => {
      res.writeHead(204, ['X-A', 'b']);
      res.end(Buffer.from('dropped'));
    },
    'an object of headers': (_req, res) => {
      res.writeHead(201, 'Made', { 'Content-Type': 'text/plain', 'Content-Length': '4' });
      res.end(Buffer.from('made'));
    },
  };

  for (const [name, handler] of Object.entries(handlers)) {
    test(name, async () => {
      const a = await serve(handler, true);
      const b = await serve(handler, false);
      try {
        // Two requests on one connection: the second shows whether the first left the connection open.
        const req = 'GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n';
        const [x, y] = await Promise.all([answer(a.port, req), answer(b.port, req)]);
        assert.equal(x.replaceAll(`:${a.port}/`, ':PORT/'), y.replaceAll(`:${b.port}/`, ':PORT/'));
      } finally {
        a.close();
        b.close();
      }
    });
  }
});
