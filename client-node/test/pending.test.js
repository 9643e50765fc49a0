'use strict';
const test = require('node:test');
const assert = require('node:assert');
const { PendingTable } = require('../lib/pending');

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
