'use strict';
const test = require('node:test');
const assert = require('node:assert');
const { LineSplitter, splitFrame } = require('../lib/line-splitter');

test('JSON and its newline in separate chunks, several lines in one chunk', () => {
  const splitter = new LineSplitter(1024);
  assert.deepStrictEqual(splitter.push(Buffer.from('{"a":1}')), []);
  assert.deepStrictEqual(splitter.push(Buffer.from('\n{"b":2}\n{"c"')), ['{"a":1}', '{"b":2}']);
  assert.deepStrictEqual(splitter.push(Buffer.from(':3}\n')), ['{"c":3}']);
});

test('a multi-byte UTF-8 character split between chunks', () => {
  const bytes = Buffer.from('{"t":"caf\u00e9 \u{1f600}"}\n');
  for (let cut = 1; cut < bytes.length; cut++) {
    const splitter = new LineSplitter(1024);
    const lines = [...splitter.push(bytes.subarray(0, cut)), ...splitter.push(bytes.subarray(cut))];
    assert.deepStrictEqual(lines, ['{"t":"caf\u00e9 \u{1f600}"}'], `cut at ${cut}`);
  }
});

test('an over-long line is reported once, discarded, and the next line survives', () => {
  const reports = [];
  const splitter = new LineSplitter(10, (bytes) => reports.push(bytes));
  assert.deepStrictEqual(splitter.push(Buffer.from('x'.repeat(8))), []);
  assert.deepStrictEqual(splitter.push(Buffer.from('y'.repeat(20))), []);
  assert.deepStrictEqual(splitter.push(Buffer.from('zzz\n{"ok":1}\n')), ['{"ok":1}']);
  assert.strictEqual(reports.length, 1);
  assert.ok(splitter.pendingBytes === 0 && splitter.chunks.length === 0, 'nothing of the long line kept');
});

test('a frame is split into its messages, blank lines dropped', () => {
  assert.deepStrictEqual(splitFrame('{"a":1}\n\n{"b":2}\n'), ['{"a":1}', '{"b":2}']);
  assert.deepStrictEqual(splitFrame('{"a":1}'), ['{"a":1}']);
});

test('a line handler that throws loses no partial line: the next chunk continues it', () => {
  // A caller's callback that throws reaches the socket's 'data' handler; a process kept alive
  // (an uncaughtException handler) must still read the next reply whole.
  const splitter = new LineSplitter(1024, () => {});
  const seen = [];
  const throwOnA = (line) => {
    seen.push(line);
    if (line === '{"a":1}') {
      throw new Error('caller bug');
    }
  };
  assert.throws(() => splitter.each(Buffer.from('{"a":1}\n{"b":'), throwOnA), /caller bug/);
  splitter.each(Buffer.from('2}\n'), throwOnA);
  assert.deepStrictEqual(seen, ['{"a":1}', '{"b":2}']);
});
