'use strict';
// Linux abstract sockets ('@name', 'unix:@name', 'unix://@name') against the real server. Node
// reaches them only when its libuv connects with the address's exact length (libuv 1.48, Node 22
// and later); an older Node gets a clear error at connect, never a connection to another name.
const test = require('node:test');
const assert = require('node:assert');
const crypto = require('node:crypto');
const IPCClient = require('..');
const { abstractName, libuvConnectsAbstractNames } = require('../lib/transport-node');
const { spawnServer } = require('./helpers');

const uniqueName = () => `pixl-ipc-node-${process.pid}-${crypto.randomBytes(4).toString('hex')}`;

test('abstract names are read from @name, unix:@name and unix://@name only', () => {
  assert.strictEqual(abstractName('@app'), 'app');
  assert.strictEqual(abstractName('unix:@app'), 'app');
  assert.strictEqual(abstractName('unix://@app'), 'app');
  assert.strictEqual(abstractName('./@app'), null);
  assert.strictEqual(abstractName('/run/@app.sock'), null);
  assert.strictEqual(libuvConnectsAbstractNames('1.46.0'), false);
  assert.strictEqual(libuvConnectsAbstractNames('1.48.0'), true);
  assert.strictEqual(libuvConnectsAbstractNames('2.0.0'), true);
});

test('an empty abstract name is refused at connect', async () => {
  const client = new IPCClient('unix:@', null, { autoReconnect: 0 });
  await assert.rejects(client.connect(), /name after @ is empty/);
});

test('the real server on an abstract socket, from every spelling', { skip: process.platform !== 'linux' && 'abstract sockets exist only on Linux' }, async (t) => {
  const name = uniqueName();
  const server = await spawnServer({ socket: '@' + name });
  t.after(() => server.kill());
  for (const address of ['@' + name, 'unix:@' + name, 'unix://@' + name]) {
    const client = new IPCClient(address, null, { autoReconnect: 0, requestTimeout: 5000, connectTimeout: 5000 });
    if (libuvConnectsAbstractNames()) {
      await client.connect();
      assert.deepStrictEqual(await client.send('/ipcserver/test/echo', { via: address }), { via: address });
      await client.close();
    } else {
      // Node 20 (libuv 1.46) would connect to the name padded with NULs: refused, clearly.
      await assert.rejects(client.connect(), (err) => {
        assert.match(err.message, new RegExp(`@${name}`));
        assert.match(err.message, /libuv 1\.48\+/);
        return true;
      });
    }
  }
  // The server is there all along: the Rust client test (server/tests/abstract.rs) talks to it.
  await server.stop();
});
