'use strict';
const test = require('node:test');
const assert = require('node:assert');
const { PendingTable, Fifo } = require('../lib/pending');

test('a reply settles its request once; a timed-out id is remembered as expired', async () => {
  const table = new PendingTable(1000);
  const outcomes = [];
  table.add('rq0', (err, data) => outcomes.push([err, data]), 1000, () => {});
  table.take('rq0')(null, 1);
  assert.deepStrictEqual(outcomes, [[null, 1]]);
  assert.strictEqual(table.take('rq0'), null);

  table.add('rq1', (err) => outcomes.push([err]), 10, (callback) => callback('request_timeout'));
  await new Promise((resolve) => setTimeout(resolve, 30));
  assert.deepStrictEqual(outcomes.slice(1), [['request_timeout']], 'the timeout settles it');
  assert.strictEqual(table.take('rq1'), 'expired', 'a late reply is recognised');
  assert.strictEqual(table.size, 0);
  table.clear();
});

test('settleAll fails every waiting request exactly once', () => {
  const table = new PendingTable(1000);
  const errors = [];
  for (let i = 0; i < 3; i++) {
    table.add('rq' + i, (err) => errors.push(err), 10000, () => {});
  }
  assert.strictEqual(table.settleAll('connection_closed'), 3);
  assert.deepStrictEqual(errors, ['connection_closed', 'connection_closed', 'connection_closed']);
  assert.strictEqual(table.settleAll('again'), 0);
});

// One timer serves every request (armed for the earliest deadline): these pin down that it is
// re-armed for a shorter timeout added later, that a request added after the table emptied
// still times out, and that no timeout fires before its time.
test('timeouts: a shorter one added later fires first, none early', async () => {
  const table = new PendingTable(1000);
  const fired = [];
  const started = performance.now();
  const add = (id, ms) => table.add(id, () => {}, ms, () => fired.push([id, performance.now() - started]));
  add('long', 400);
  add('short', 40);
  add('never', Infinity);
  await new Promise((resolve) => setTimeout(resolve, 150));
  assert.deepStrictEqual(fired.map(([id]) => id), ['short'], 'the short one, alone');
  assert.ok(fired[0][1] >= 40, `short fired after ${fired[0][1]} ms, not before 40`);
  await new Promise((resolve) => setTimeout(resolve, 350));
  assert.deepStrictEqual(fired.map(([id]) => id), ['short', 'long']);
  assert.ok(fired[1][1] >= 400, `long fired after ${fired[1][1]} ms, not before 400`);
  assert.ok(table.has('never'), 'no timeout: still waiting');
  assert.strictEqual(table.settleAll('closed'), 1);
  table.clear();
});

test('timeouts: a request added after a reply emptied the table still times out', async () => {
  const table = new PendingTable(1000);
  const fired = [];
  table.add('rq0', () => {}, 30, () => fired.push('rq0'));
  table.take('rq0'); // answered: the timer stays armed for rq0's deadline
  await new Promise((resolve) => setTimeout(resolve, 20));
  table.add('rq1', () => {}, 60, () => fired.push('rq1'));
  await new Promise((resolve) => setTimeout(resolve, 40));
  assert.deepStrictEqual(fired, [], 'rq0 was answered; rq1 is not due yet');
  await new Promise((resolve) => setTimeout(resolve, 60));
  assert.deepStrictEqual(fired, ['rq1']);
  assert.strictEqual(table.take('rq1'), 'expired');
  table.clear();
});

test('timeouts: many requests with one timeout all fire, in order, once', async () => {
  const table = new PendingTable(1000);
  const fired = [];
  for (let i = 0; i < 50; i++) {
    table.add('rq' + i, () => {}, 20 + (i % 5), () => fired.push(i));
    if (i % 7 === 0) table.take('rq' + i);
  }
  await new Promise((resolve) => setTimeout(resolve, 120));
  const expected = Array.from({ length: 50 }, (_, i) => i).filter((i) => i % 7 !== 0);
  assert.deepStrictEqual([...fired].sort((a, b) => a - b), expected, 'every unanswered one, once');
  assert.strictEqual(table.size, 0);
  table.clear();
});

test('Fifo hands items back in order, across its compaction', () => {
  const fifo = new Fifo();
  const expected = [];
  let next = 0;
  // Push three, take two, many times: the head passes the compaction threshold repeatedly.
  for (let round = 0; round < 3000; round++) {
    for (let i = 0; i < 3; i++) {
      fifo.push(next);
      expected.push(next++);
    }
    for (let i = 0; i < 2; i++) {
      assert.strictEqual(fifo.shift(), expected.shift());
    }
    assert.strictEqual(fifo.length, expected.length);
  }
  while (expected.length > 0) {
    assert.strictEqual(fifo.shift(), expected.shift());
  }
  assert.strictEqual(fifo.length, 0);
  assert.strictEqual(fifo.shift(), undefined);
});
