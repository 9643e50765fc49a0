'use strict';
// The original client's own test list, plus the fixes, on both transports against the real
// server binary.
const test = require('node:test');
const assert = require('node:assert');
const IPCClient = require('..');
const { spawnServer, CountingLogger, sizedMessage, sleep } = require('./helpers');

const call = (client, uri, data) => new Promise((resolve) => client.send(uri, data, (err, result) => resolve([err, result])));

test('a bad socket path fails connect with ipc_socket_err, then send with no_open_stream', async () => {
  const logger = new CountingLogger();
  const client = new IPCClient('/tmp/nosuch_server_unittest.sock', logger);
  const err = await new Promise((resolve) => client.connect(resolve));
  assert.strictEqual(err, 'ipc_socket_err');
  assert.strictEqual(logger.errorCount, 1);
  const [sendErr] = await call(client, '/myapi/test', { message: 'foo' });
  assert.strictEqual(sendErr, 'no_open_stream');
  assert.strictEqual(logger.errorCount, 2);
  await assert.rejects(client.send('/x', {}), (rejected) => rejected === 'no_open_stream');
  await client.close();
});

test('send before connect fails with no_open_stream', async () => {
  const client = new IPCClient('/tmp/whatever.sock', new CountingLogger());
  const [err] = await call(client, '/myapi/test', { message: 'foo' });
  assert.strictEqual(err, 'no_open_stream');
});

test('bad options are a TypeError', () => {
  assert.throws(() => new IPCClient('/x', null, { requestTimeout: 'soon' }), TypeError);
  assert.throws(() => new IPCClient('/x', null, { reconnect: { intervalMs: 0 } }), TypeError);
  assert.throws(() => new IPCClient('/x', null, { messageTransform: 'nope' }), TypeError);
});

for (const transport of ['unix', 'ws']) {
  test(`on ${transport}`, async (t) => {
    const server = await spawnServer();
    const address = transport === 'unix' ? server.socket : server.url;
    t.after(() => server.kill());

    await t.test('echo, 1 MiB echo, delay, unknown uri with callbacks', async () => {
      const logger = new CountingLogger();
      const client = new IPCClient(address, logger);
      await new Promise((resolve, reject) => client.connect((err) => (err ? reject(err) : resolve())));
      let [err, result] = await call(client, '/ipcserver/test/echo', { message: 'foo', echo: true, bar: 9 });
      assert.strictEqual(err, null);
      assert.deepStrictEqual(result, { message: 'foo', echo: true, bar: 9 });
      const big = sizedMessage(1024);
      [err, result] = await call(client, '/ipcserver/test/echo', big);
      assert.strictEqual(err, null);
      assert.ok(JSON.stringify(result).length >= 1024 * 1024);
      assert.deepStrictEqual(result, big);
      [err, result] = await call(client, '/ipcserver/test/delay', { delay: 10 });
      assert.deepStrictEqual([err, result], [null, { delay: 10 }]);
      [err, result] = await call(client, '/ipcserver/no_such_thing', { foo: 10 });
      assert.strictEqual(err, null);
      assert.strictEqual(result.code, 'no_handler_found');
      assert.ok(result.message);
      assert.strictEqual(logger.errorCount, 0);
      await client.close();
    });

    await t.test('async/await, many requests in flight', async () => {
      const client = new IPCClient(address);
      await client.connect();
      const replies = await Promise.all(Array.from({ length: 500 }, (_, i) => client.send('/ipcserver/test/echo', { i })));
      replies.forEach((reply, i) => assert.deepStrictEqual(reply, { i }));
      await client.close();
    });

    await t.test('a timeout fails once and the late reply causes no second error', async () => {
      const logger = new CountingLogger();
      const client = new IPCClient(address, logger, { requestTimeout: 100 });
      await client.connect();
      let calls = 0;
      const err = await new Promise((resolve) =>
        client.send('/ipcserver/test/delay', { delay: 300 }, (e) => {
          calls += 1;
          resolve(e);
        })
      );
      assert.strictEqual(err, 'request_timeout');
      assert.strictEqual(logger.errorCount, 1);
      await sleep(350);
      assert.strictEqual(calls, 1, 'the callback ran once');
      assert.deepStrictEqual(logger.errors, ['request_timeout'], 'the late reply logged no error');
      await client.close();
    });

    await t.test("a timeout logs the original's text, with the uri, through the user's logger", async () => {
      const lines = [];
      // A user's own logger: the original's shape, nothing from the test helpers.
      const logger = { debug() {}, error: (code, message) => lines.push([code, message]) };
      const client = new IPCClient(address, logger, { requestTimeout: 50 });
      await client.connect();
      try {
        await assert.rejects(client.send('/ipcserver/test/delay', { delay: 200 }), (err) => err === 'request_timeout');
        assert.deepStrictEqual(lines, [['request_timeout', 'IPCClient request expired: /ipcserver/test/delay']]);
      } finally {
        await client.close();
      }
    });

    await t.test('custom user agent, codeToErr and messageTransform', async () => {
      const ua = new IPCClient(address, null, { userAgent: 'shortClient' });
      await ua.connect();
      assert.deepStrictEqual(await ua.send('/ipcserver/test/echo', { x: 1 }), { x: 1 });
      await ua.close();

      const coded = new IPCClient(address, null, { codeToErr: true });
      await coded.connect();
      const [err, data] = await call(coded, '/nope', {});
      assert.strictEqual(err.code, 'no_handler_found');
      assert.strictEqual(data.code, 'no_handler_found');
      const [topErr] = await call(coded, '', {});
      assert.strictEqual(topErr.code, 'no_uri', 'a top-level code is the whole message');
      await coded.close();

      const seen = [];
      const transformed = new IPCClient(address, null, {
        codeToErr: true,
        messageTransform: (msg) => {
          seen.push(msg.ipcReqID);
          return [null, { wrapped: msg.data }];
        },
      });
      await transformed.connect();
      assert.deepStrictEqual(await transformed.send('/nope', {}), {
        wrapped: { code: 'no_handler_found', message: 'No handler found for /nope' },
      }, 'messageTransform overrides codeToErr');
      assert.deepStrictEqual(seen, ['rq0']);
      await transformed.close();
    });

    await t.test('a subclass that overrides send and calls super.send keeps working', async () => {
      class Tagged extends IPCClient {
        send(uri, data, callback) {
          return super.send(uri, Object.assign({ tagged: true }, data), callback);
        }
      }
      const client = new Tagged(address);
      await client.connect();
      assert.deepStrictEqual(await client.send('/ipcserver/test/echo', { a: 1 }), { tagged: true, a: 1 });
      const [err, result] = await call(client, '/ipcserver/test/echo', { b: 2 });
      assert.deepStrictEqual([err, result], [null, { tagged: true, b: 2 }]);
      await client.close();
    });

    await t.test('errorObjects gives IPCError values with a code', async () => {
      const client = new IPCClient(address, null, { requestTimeout: 50, errorObjects: true });
      await client.connect();
      await assert.rejects(client.send('/ipcserver/test/delay', { delay: 200 }), (err) => {
        assert.ok(err instanceof IPCClient.IPCError);
        assert.strictEqual(err.code, 'request_timeout');
        return true;
      });
      await client.close();
    });

    await t.test('an over-long request is refused without being sent', async () => {
      const client = new IPCClient(address, null, { maxMessageBytes: 1024 });
      await client.connect();
      const [err] = await call(client, '/ipcserver/test/echo', { text: 'x'.repeat(2000) });
      assert.strictEqual(err, 'message_too_large');
      assert.deepStrictEqual(await client.send('/ipcserver/test/echo', 1), 1);
      await client.close();
    });
  });
}

for (const transport of ['unix', 'ws']) {
  test(`server killed with requests in flight: each settles (${transport})`, async () => {
    const server = await spawnServer();
    const address = transport === 'unix' ? server.socket : server.url;
    const client = new IPCClient(address, null, { autoReconnect: 0 });
    await client.connect();
    const inFlight = Array.from({ length: 10 }, () => call(client, '/ipcserver/test/delay', { delay: 10000 }));
    await sleep(100);
    const killed = Date.now();
    await server.kill();
    const outcomes = await Promise.all(inFlight);
    assert.ok(Date.now() - killed < 1000, 'settled promptly, not at the request timeout');
    outcomes.forEach(([err]) => assert.strictEqual(err, 'connection_closed'));
    await client.close();
  });

  test(`server restarted: the client reconnects, also after a clean close (${transport})`, async () => {
    const first = await spawnServer();
    const port = new URL(first.url).port;
    const address = transport === 'unix' ? first.socket : first.url;
    const client = new IPCClient(address, null, { reconnect: { intervalMs: 50, growthRate: 1.5, maxRetries: 100 } });
    await client.connect();
    assert.deepStrictEqual(await client.send('/ipcserver/test/echo', 'before'), 'before');
    const reconnected = new Promise((resolve) => client.once('reconnect', resolve));
    await first.stop(); // SIGTERM: the server closes cleanly (the original only reconnected after errors)
    const second = await spawnServer({ socket: first.socket, args: ['--ws', `127.0.0.1:${port}`] });
    try {
      await reconnected;
      assert.deepStrictEqual(await client.send('/ipcserver/test/echo', 'after'), 'after');
    } finally {
      await client.close();
      await second.kill();
    }
  });
}

test('pushes arrive as data events', async () => {
  const server = await spawnServer();
  try {
    // The binary has no push trigger; a request without an id gets a reply without one, which
    // the client treats exactly like a push.
    const client = new IPCClient(server.socket);
    await client.connect();
    const pushed = new Promise((resolve) => client.once('data', resolve));
    client.connection.write('{"uri":"/ipcserver/test/echo","data":{"pushed":true}}\n');
    assert.deepStrictEqual(await pushed, { ipcReqID: null, data: { pushed: true } });
    await client.close();
  } finally {
    await server.kill();
  }
});

test('requests and cancels go over a WebSocket as text frames, the line without its newline', async () => {
  const { WebSocketServer } = require('ws');
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, handleProtocols: () => 'pixl-ipc' });
  await new Promise((resolve) => wss.once('listening', resolve));
  const frames = [];
  wss.on('connection', (ws) => ws.on('message', (data, isBinary) => {
    frames.push({ isBinary, text: data.toString('utf8') });
    const request = JSON.parse(data.toString('utf8'));
    if (!request.ipcStream && !request.ipcCancel) {
      ws.send(JSON.stringify({ ipcReqID: request.ipcReqID, data: request.data }));
    }
  }));
  const client = new IPCClient(`ws://127.0.0.1:${wss.address().port}/`, null, { requestTimeout: 5000 });
  await client.connect();
  assert.deepStrictEqual(await client.send('/echo', { text: 'é∑😀' }), { text: 'é∑😀' });
  const stream = client.stream('/stream', {}, () => {}, () => {});
  while (frames.length < 2) {
    await sleep(10);
  }
  stream.cancel();
  while (frames.length < 3) {
    await sleep(10);
  }
  await client.close();
  await new Promise((resolve) => wss.close(resolve));
  assert.deepStrictEqual(frames.map((frame) => frame.isBinary), [false, false, false]);
  for (const frame of frames) {
    assert.ok(!frame.text.endsWith('\n'), frame.text);
  }
  assert.deepStrictEqual(JSON.parse(frames[0].text).data, { text: 'é∑😀' });
  assert.strictEqual(JSON.parse(frames[2].text).ipcCancel, true);
});
