'use strict';
// The token kept out of URLs: the Node entry offers it as a Sec-WebSocket-Protocol entry
// (tokenVia: 'protocol') and the real server accepts it; the header and ?token= ways still work.
const test = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const IPCClient = require('..');
const { tokenProtocols } = require('../lib/transport-node');
const browser = require('../lib/transport-browser');
const { spawnServer } = require('./helpers');

// Non-ASCII, and its base64 has '+' and '/', which base64url turns into '-' and '_'.
const TOKEN = 's3cret-tøken>>>???';

test('the Node and browser entries encode the token entry alike (base64url, no padding)', () => {
  const expected = ['pixl-ipc', 'pixl-ipc.bearer.' + Buffer.from(TOKEN).toString('base64url')];
  assert.deepStrictEqual(tokenProtocols(TOKEN), expected);
  assert.deepStrictEqual(browser.tokenProtocols(TOKEN), expected);
  assert.match(expected[1], /^pixl-ipc\.bearer\.[A-Za-z0-9_-]+$/);
  assert.ok(/[-_]/.test(expected[1]), 'the sample exercises the URL-safe alphabet');
  assert.throws(() => new IPCClient('ws://127.0.0.1:1/', null, { tokenVia: 'cookie' }), TypeError);
});

test('a token in a Sec-WebSocket-Protocol entry is accepted by the real server', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pixl-ipc-token-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.writeFileSync(path.join(dir, 'token'), TOKEN + '\n');
  const server = await spawnServer({ args: ['--ws-token-file', path.join(dir, 'token')] });
  t.after(() => server.kill());

  const attempt = async (options) => {
    const client = new IPCClient(server.url, null, Object.assign({ autoReconnect: 0, requestTimeout: 5000 }, options));
    try {
      await client.connect();
      return await client.send('/ipcserver/test/echo', { via: options.tokenVia || 'default' });
    } catch (err) {
      return { failed: String(err && err.message ? err.message : err) };
    } finally {
      await client.close();
    }
  };
  assert.deepStrictEqual(await attempt({ token: TOKEN, tokenVia: 'protocol' }), { via: 'protocol' });
  const wrong = await attempt({ token: 'wrong', tokenVia: 'protocol' });
  assert.ok(wrong.failed, 'a wrong token is refused');
  assert.deepStrictEqual(await attempt({ tokenVia: 'protocol' }).then((r) => Boolean(r.failed)), true);
  // The other ways still work, with a token a header and a URL can carry as is (the server does
  // not percent-decode ?token=).
  const ascii = fs.mkdtempSync(path.join(os.tmpdir(), 'pixl-ipc-token-'));
  t.after(() => fs.rmSync(ascii, { recursive: true, force: true }));
  fs.writeFileSync(path.join(ascii, 'token'), 'plain-token\n');
  const plain = await spawnServer({ args: ['--ws-token-file', path.join(ascii, 'token')] });
  t.after(() => plain.kill());
  const client = new IPCClient(plain.url, null, { token: 'plain-token', autoReconnect: 0 });
  await client.connect();
  assert.deepStrictEqual(await client.send('/ipcserver/test/echo', 1), 1);
  await client.close();
  const viaQuery = new IPCClient(plain.url, null, { token: 'plain-token', tokenVia: 'query', autoReconnect: 0 });
  await viaQuery.connect();
  assert.deepStrictEqual(await viaQuery.send('/ipcserver/test/echo', 3), 3);
  await viaQuery.close();
  const viaProtocol = new IPCClient(plain.url, null, { token: 'plain-token', tokenVia: 'protocol', autoReconnect: 0 });
  await viaProtocol.connect();
  assert.deepStrictEqual(await viaProtocol.send('/ipcserver/test/echo', 2), 2);
  await viaProtocol.close();
});
