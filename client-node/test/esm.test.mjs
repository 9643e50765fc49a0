// The ESM entry exposes the same names as the CommonJS one.
import test from 'node:test';
import assert from 'node:assert';
import IPCClient, { IPCClient as Named, IPCError, ERRORS, DEFAULTS } from '../wrapper.mjs';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

test('ESM and CommonJS entries export the same client', () => {
  const Common = require('../index.js');
  assert.strictEqual(IPCClient, Common);
  assert.strictEqual(Named, Common);
  assert.strictEqual(IPCError, Common.IPCError);
  assert.strictEqual(ERRORS.TIMEOUT, 'request_timeout');
  assert.strictEqual(DEFAULTS.requestTimeout, 10000);
});
