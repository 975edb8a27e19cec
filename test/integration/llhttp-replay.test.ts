/**
 * llhttp's own request corpus (../shared/conformance/llhttp-md) replayed against tsgi's HTTP router.
 * Each case: one 200 per complete message (a 400 for an HTTP/1.1 message without Host, which RFC 9112
 * requires), and where the parser reports an error, a 4xx or a closed connection — never a 200.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot, sharedDir, SHARED_MISSING } from '../helpers/paths.js';
import { activatedEnv, freePort, sharedVenv, startTsgi, stopProcess } from '../helpers/procs.js';
import { parseResponses, rawHttp } from '../helpers/http-raw.js';

interface Message { complete: boolean; version: string; headers: Array<[string, string]> }
interface Case { id: string; meta: { type?: string; pause?: string }; raw_b64: string; messages: Message[]; error: { reason: string } | null }

const shared = sharedDir();

test('llhttp request cases against the router: rate printed, no error case ever answered 200', { skip: shared ? false : SHARED_MISSING }, async (t) => {
  const data = JSON.parse(readFileSync(join(shared!, 'conformance/llhttp-md/cases.json'), 'utf8')) as { cases: Case[] };
  const cases = data.cases.filter((c) => c.meta.type === 'request' && !c.meta.pause);
  const port = await freePort();
  const tsgi = await startTsgi(['--http-socket', `127.0.0.1:${port}`, '-p', '2', '--wsgi-file', join(repoRoot, 'test/fixtures/apps/behaviours.py')], {
    env: activatedEnv(sharedVenv()),
  });
  let passed = 0;
  const errorCaseViolations: string[] = [];
  const failures: string[] = [];
  try {
    const results: Array<{ c: Case; statuses: number[] }> = [];
    const queue = [...cases];
    const runOne = async (): Promise<void> => {
      for (let c = queue.shift(); c; c = queue.shift()) {
        // Inputs often stop in the middle of a message on purpose: a quiet second ends the exchange.
        const { bytes } = await rawHttp(port, Buffer.from(c.raw_b64, 'base64'), { idleMs: 1500 });
        results.push({ c, statuses: parseResponses(bytes).map((r) => r.status) });
      }
    };
    await Promise.all(Array.from({ length: 16 }, runOne));
    for (const { c, statuses } of results) {
      const noHost = (m: Message): boolean => m.version === '1.1' && !m.headers.some(([k]) => k.toLowerCase() === 'host');
      const complete = c.messages.filter((m) => m.complete);
      const expected = complete.map((m) => (noHost(m) ? 400 : 200));
      // An unfinished HTTP/1.1 message without Host may be refused as soon as its headers are read.
      const unfinished = c.messages.find((m) => !m.complete);
      if (unfinished && noHost(unfinished) && expected.indexOf(400) === -1 && statuses.length === expected.length + 1 && statuses.at(-1) === 400) expected.push(400);
      // A 400 ends the connection (the server cannot know where the next message starts), so the messages
      // after one are not expected to be answered.
      const firstReject = expected.indexOf(400);
      if (firstReject !== -1) expected.splice(firstReject + 1);
      const got = statuses.slice(0, expected.length);
      let ok = got.length === expected.length && got.every((s, i) => s === expected[i]);
      if (c.error && firstReject === -1) {
        const after = statuses[expected.length];
        if (after === 200) {
          errorCaseViolations.push(`${c.id}: ${c.error.reason}: answered ${statuses.join(',')}`);
          ok = false;
        } else if (after !== undefined && (after < 400 || after > 499)) ok = false;
      } else if (!c.error && statuses.length > expected.length) ok = false;
      if (ok) passed++;
      else failures.push(`${c.id}: expected ${expected.join(',') || 'nothing'}${c.error ? ' then 4xx/close' : ''}, got ${statuses.join(',') || 'nothing'}`);
    }
  } finally {
    await stopProcess(tsgi);
  }
  t.diagnostic(`llhttp request cases: ${passed}/${cases.length} as expected (uWSGI 2.0.21 direct: 76/121, nginx 1.22 → uWSGI: 70/121)`);
  for (const f of failures) t.diagnostic(`  ${f}`);
  t.diagnostic('  (CONNECT asks for a tunnel, which an app server does not offer: tsgi closes the connection)');
  assert.deepEqual(errorCaseViolations, [], 'a request the parser rejects must never be answered 200');
});
