import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { decodePacket, encodeVarLists, encodeVars, UwsgiEncodeError } from '../../src/protocol/uwsgi.js';

test('a uwsgi packet carries modifiers, little-endian sizes and vars in order', () => {
  const buf = encodeVars([['A', 'bc'], ['D', '']], 5, 7);
  assert.deepEqual([...buf], [5, 12, 0, 7, 1, 0, 0x41, 2, 0, 0x62, 0x63, 1, 0, 0x44, 0, 0]);
  const back = decodePacket(buf, 65535);
  assert.deepEqual(back, { modifier1: 5, modifier2: 7, vars: [['A', 'bc'], ['D', '']], headerEnd: 16 });
});

test('a Map of vars encodes the same as the pair list', () => {
  const pairs: Array<[string, string]> = [['REQUEST_METHOD', 'GET'], ['PATH_INFO', '/x']];
  assert.deepEqual(encodeVars(new Map(pairs)), encodeVars(pairs));
});

test('bytes above 0x7f survive a round trip as latin1 byte strings', () => {
  const utf8 = Buffer.from('/caf\u00e9', 'utf8').toString('latin1');
  const got = decodePacket(encodeVars([['PATH_INFO', utf8]]), 65535);
  assert.ok('vars' in got);
  assert.equal(Buffer.from(got.vars[0]![1], 'latin1').toString('utf8'), '/caf\u00e9');
});

test('vars larger than 65535 bytes are refused with a typed error', () => {
  assert.throws(() => encodeVars([['K', 'x'.repeat(65535)]]), (e: unknown) => e instanceof UwsgiEncodeError && e.code === 'UWSGI_TOO_LARGE');
});

test('a string that is not a byte string is refused with a typed error', () => {
  assert.throws(() => encodeVars([['K', '\u20ac']]), (e: unknown) => e instanceof UwsgiEncodeError && e.code === 'UWSGI_NOT_BYTES');
});

test('a short buffer asks for exactly the bytes the packet needs', () => {
  const buf = encodeVars([['KEY', 'value']]);
  assert.deepEqual(decodePacket(buf.subarray(0, 2), 65535), { need: 4 });
  assert.deepEqual(decodePacket(buf.subarray(0, 6), 65535), { need: buf.length });
});

test('a packet larger than the allowed size is an error before its bytes arrive', () => {
  const buf = encodeVars([['KEY', 'x'.repeat(100)]]);
  const got = decodePacket(buf.subarray(0, 4), 50);
  assert.ok('error' in got && /larger than the 50/.test(got.error));
});

test('truncated vars inside a complete packet are errors, not reads past the end', () => {
  // datasize 5: key length 1, key "A", then a value length claiming 9 bytes.
  const bad = Buffer.from([0, 5, 0, 0, 1, 0, 0x41, 9, 0]);
  const got = decodePacket(bad, 65535);
  assert.ok('error' in got && /runs past/.test(got.error), JSON.stringify(got));
  const oddTail = Buffer.from([0, 1, 0, 0, 7]);
  assert.ok('error' in decodePacket(oddTail, 65535));
});

test('the body after the packet is left for the caller at headerEnd', () => {
  const packet = encodeVars([['CONTENT_LENGTH', '4']]);
  const got = decodePacket(Buffer.concat([packet, Buffer.from('body')]), 65535);
  assert.ok('headerEnd' in got);
  assert.equal(got.headerEnd, packet.length);
});

test('fuzz: random bytes never throw and every answer is consistent', () => {
  for (let i = 0; i < 20000; i++) {
    const len = i % 64;
    const buf = randomBytes(len);
    if (len >= 3 && i % 3 === 0) buf.writeUInt16LE(len - 4 >= 0 ? Math.max(0, len - 4) : 0, 1);
    const got = decodePacket(buf, 65535);
    if ('need' in got) assert.ok(got.need > buf.length);
    else if ('vars' in got) {
      assert.ok(got.headerEnd <= buf.length);
      // A decoded packet re-encodes to the same bytes.
      assert.deepEqual(encodeVars(got.vars, got.modifier1, got.modifier2), buf.subarray(0, got.headerEnd));
    } else assert.equal(typeof got.error, 'string');
  }
});

test('fuzz: random vars round-trip through encode and decode', () => {
  for (let i = 0; i < 2000; i++) {
    const vars: Array<[string, string]> = [];
    const n = i % 12;
    for (let j = 0; j < n; j++) vars.push([randomBytes(j * 3).toString('latin1'), randomBytes((i * 7 + j) % 300).toString('latin1')]);
    const got = decodePacket(encodeVars(vars), 65535);
    assert.ok('vars' in got);
    assert.deepEqual(got.vars, vars);
  }
});

test('encodeVarLists writes the same packet as encodeVars and fails the same way', () => {
  const pairs: Array<[string, string]> = [['REQUEST_METHOD', 'GET'], ['PATH_INFO', '/caf\xe9'], ['EMPTY', ''], ['LONG', 'v'.repeat(5000)]];
  const keys = [...pairs.map((p) => p[0]), 'IGNORED'];
  const values = [...pairs.map((p) => p[1]), 'past count'];
  assert.deepEqual(encodeVarLists(keys, values, pairs.length, 5, 7), encodeVars(pairs, 5, 7));
  assert.deepEqual(encodeVarLists([], [], 0), encodeVars([]));
  assert.throws(() => encodeVarLists(['K'], ['x'.repeat(65535)], 1), (e: unknown) => e instanceof UwsgiEncodeError && e.code === 'UWSGI_TOO_LARGE');
  assert.throws(() => encodeVarLists(['K', 'J'], ['ok', 'snow \u2603'], 2), (e: unknown) => e instanceof UwsgiEncodeError && e.code === 'UWSGI_NOT_BYTES' && e.message === 'uwsgi value of J has a character above 0xff');
});
