/**
 * stub_status next to the real nginx (Debian's 1.22.1): the same connections in the same states (one idle,
 * one half way through its request head, one kept alive after a request), then the page from both, byte for
 * byte; with one worker the $connections_* variables too, and with two workers the page still sums the
 * server (tsgi-proxy asks every worker through the master; nginx reads shared memory). 405 for POST.
 * Without nginx (or root) tsgi-proxy is checked against the numbers nginx gave.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { have, rawRequest, tempDir, startSideBySide, type Proc } from './helpers.js';

const withNginx = have('/usr/sbin/nginx') && process.getuid?.() === 0;

const conf = (workers: number) => (port: number): string => `worker_processes ${workers};
events {}
http {
  access_log off;
  server {
    listen 127.0.0.1:${port};
    location / { return 200 "ok\\n"; }
    location /stub {
      stub_status;
      add_header X-Vars "$connections_active $connections_reading $connections_writing $connections_waiting";
    }
  }
  server {
    listen 127.0.0.1:${port};
    server_name other;
    stub_status;
  }
}
`;

function open(port: number): Promise<Socket> {
  return new Promise((res, rej) => {
    const s = connect(port, '127.0.0.1', () => res(s));
    s.on('error', rej);
  });
}

/** Drives the connections, then returns the page (and the variables header) and a POST's status. */
async function scenario(port: number): Promise<string[]> {
  const out: string[] = [];
  const page = async (host = 'localhost'): Promise<void> => {
    const r = await rawRequest(port, `GET /stub HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);
    out.push(`${r.status} ${r.headers.get('content-type')} ${r.headers.get('x-vars') ?? '-'}\n${r.body}`);
  };
  await page();
  const socks: Socket[] = [];
  try {
    socks.push(await open(port)); // idle: waiting
    const half = await open(port);
    socks.push(half);
    half.write('GET / HTTP/1.1\r\nHost: x\r\n'); // reading
    const kept = await open(port);
    socks.push(kept);
    await new Promise<void>((res) => {
      kept.once('data', () => res());
      kept.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n'); // answered, then waiting
    });
    await sleep(300);
    await page();
    // A server-level stub_status answers for any URI of that server.
    await page('other');
    const post = await rawRequest(port, 'POST /stub HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
    out.push(String(post.status));
  } finally {
    for (const s of socks) s.destroy();
  }
  await sleep(300);
  await page();
  return out;
}

/** What nginx answered (the readiness check's connection is the first accepted one). */
const SEEN_ONE = [
  '200 text/plain 1 0 1 0\nActive connections: 1 \nserver accepts handled requests\n 2 2 1 \nReading: 0 Writing: 1 Waiting: 0 \n',
  '200 text/plain 4 1 1 2\nActive connections: 4 \nserver accepts handled requests\n 6 6 4 \nReading: 1 Writing: 1 Waiting: 2 \n',
  '200 text/plain -\nActive connections: 4 \nserver accepts handled requests\n 7 7 5 \nReading: 1 Writing: 1 Waiting: 2 \n',
  '405',
  '200 text/plain 1 0 1 0\nActive connections: 1 \nserver accepts handled requests\n 9 9 7 \nReading: 0 Writing: 1 Waiting: 0 \n',
];

for (const workers of [1, 2]) {
  describe(`stub_status next to nginx, worker_processes ${workers}`, () => {
    let t: ReturnType<typeof tempDir> | undefined;
    let proxy: Proc | undefined;
    let nginx: Proc | undefined;

    after(async () => {
      await proxy?.stop('SIGQUIT');
      await nginx?.stop('SIGQUIT');
      t?.cleanup();
    });

    test('the same page as nginx for the same connections', async () => {
      t = tempDir('stub');
      const both = await startSideBySide(t.dir, conf(workers), withNginx);
      ({ proxy, nginx } = both);
      // With two workers the variables are each worker's own (docs/proxy.md): only the page is compared.
      const strip = (list: string[]): string[] => (workers === 1 ? list : list.map((s) => s.replace(/^(200 text\/plain) [^\n]*/, '$1')));
      const ours = strip(await scenario(both.ports.proxy));
      if (nginx) assert.deepEqual(ours, strip(await scenario(both.ports.nginx)));
      assert.deepEqual(ours, strip(SEEN_ONE));
    });
  });
}

describe('stub_status counters outlive a reload, as nginx\'s shared memory does', () => {
  let t: ReturnType<typeof tempDir> | undefined;
  let proxy: Proc | undefined;
  let nginx: Proc | undefined;

  after(async () => {
    await proxy?.stop('SIGQUIT');
    await nginx?.stop('SIGQUIT');
    t?.cleanup();
  });

  test('accepts and requests go on counting after SIGHUP', async () => {
    t = tempDir('stubhup');
    const both = await startSideBySide(t.dir, conf(2), withNginx);
    ({ proxy, nginx } = both);
    const run = async (port: number, p: Proc): Promise<string[]> => {
      for (let i = 0; i < 5; i++) await rawRequest(port, 'GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
      const page = async (): Promise<string> => (await rawRequest(port, 'GET /stub HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')).body;
      const before = await page();
      p.child.kill('SIGHUP');
      // The old workers leave once idle; the page is asked for after they have.
      await sleep(2000);
      return [before, await page()];
    };
    const ours = await run(both.ports.proxy, proxy);
    if (nginx) assert.deepEqual(ours, await run(both.ports.nginx, nginx));
    assert.match(ours[0]!, / 7 7 6 \n/);
    assert.match(ours[1]!, / 8 8 7 \n/);
  });
});
