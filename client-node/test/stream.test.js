'use strict';
// Streamed replies (client.stream()) on both transports against the real server binary and its
// built-in /ipcserver/test/stream endpoint ({count, interval}: count items {i}, then {done: count}).
const test = require('node:test');
const assert = require('node:assert');
const IPCClient = require('..');
const { spawnServer, CountingLogger, sleep } = require('./helpers');

const STREAM = '/ipcserver/test/stream';

/** Collects a stream's items; resolves with [items, err] (err null when it ended normally). */
async function collect(replies, limit = Infinity) {
  const items = [];
  try {
    for await (const item of replies) {
      items.push(item);
      if (items.length >= limit) {
        break;
      }
    }
  } catch (err) {
    return [items, err];
  }
  return [items, null];
}

/** A client that records every push and every logged error, so stray lines are seen. */
async function watchedClient(address, options = {}) {
  const logger = new CountingLogger();
  const client = new IPCClient(address, logger, Object.assign({ autoReconnect: 0 }, options));
  const pushes = [];
  client.on('data', (msg) => pushes.push(msg));
  await client.connect();
  return { client, logger, pushes };
}

for (const transport of ['unix', 'ws']) {
  test(`streamed replies on ${transport}`, async (t) => {
    const server = await spawnServer();
    const address = transport === 'unix' ? server.socket : server.url;
    t.after(() => server.kill());

    await t.test('N items, then the final value last', async () => {
      const { client, logger, pushes } = await watchedClient(address);
      const [items, err] = await collect(client.stream(STREAM, { count: 3, interval: 5 }));
      assert.strictEqual(err, null);
      assert.deepStrictEqual(items, [{ i: 0 }, { i: 1 }, { i: 2 }, { done: 3 }]);
      const [none] = await collect(client.stream(STREAM, { count: 0 }));
      assert.deepStrictEqual(none, [{ done: 0 }]);
      assert.deepStrictEqual(pushes, []);
      assert.strictEqual(logger.errorCount, 0);
      assert.strictEqual(client.streams.size, 0, 'nothing left registered');
      await client.close();
    });

    await t.test('a non-streaming route streamed yields its one reply', async () => {
      const { client } = await watchedClient(address);
      const [items, err] = await collect(client.stream('/ipcserver/test/echo', { a: 1 }));
      assert.deepStrictEqual([items, err], [[{ a: 1 }], null]);
      await client.close();
    });

    await t.test('break cancels: the server ends it, its later lines are swallowed, the connection stays usable', async () => {
      const { client, logger, pushes } = await watchedClient(address);
      const replies = client.stream(STREAM, { count: 1000000, interval: 20 });
      const [items, err] = await collect(replies, 2);
      assert.deepStrictEqual([items, err], [[{ i: 0 }, { i: 1 }], null]);
      assert.strictEqual(client.streams.size, 0, 'the id is forgotten at once');
      assert.ok(client.swallowed.has(replies.id), 'its lines are dropped until the final one');
      assert.deepStrictEqual(await client.send('/ipcserver/test/echo', 'after'), 'after');
      // The server answers the cancel with its final `cancelled` line: swallowed, so the id is
      // forgotten (were the stream still running, items would keep coming every 20 ms).
      const deadline = Date.now() + 2000;
      while (client.swallowed.size > 0 && Date.now() < deadline) {
        await sleep(10);
      }
      assert.strictEqual(client.swallowed.size, 0, 'the final line of the cancelled stream arrived');
      await sleep(100);
      assert.deepStrictEqual(pushes, [], 'no line of it shows as a push');
      assert.strictEqual(logger.errorCount, 0, 'nor as an error: ' + logger.errors.join());
      assert.deepStrictEqual(await collect(client.stream(STREAM, { count: 2 })), [[{ i: 0 }, { i: 1 }, { done: 2 }], null]);
      await client.close();
    });

    await t.test('a streaming route called with plain send: stream_required, no stray lines', async () => {
      const { client, logger, pushes } = await watchedClient(address);
      const reply = await client.send(STREAM, { count: 3 });
      assert.strictEqual(reply.code, 'stream_required');
      await sleep(100);
      assert.deepStrictEqual(pushes, []);
      assert.strictEqual(logger.errorCount, 0);
      await client.close();

      const coded = await watchedClient(address, { codeToErr: true });
      await assert.rejects(coded.client.send(STREAM, {}), (err) => err.code === 'stream_required');
      await coded.client.close();
    });

    await t.test('a final line with data.code throws, with or without codeToErr, as in the Rust and PHP clients', async () => {
      for (const options of [{}, { codeToErr: true }]) {
        const { client } = await watchedClient(address, options);
        const [items, err] = await collect(client.stream(STREAM, { count: -1 }));
        assert.deepStrictEqual(items, []);
        assert.ok(err, 'the invalid_data final line must throw');
        // The error is the code string (an IPCError with errorObjects: true), as for send().
        assert.strictEqual(err.code || err, 'invalid_data');
        await client.close();
      }
    });

    await t.test('streams and plain calls interleave on one connection', async () => {
      const { client, pushes } = await watchedClient(address);
      const streams = [1, 3, 7].map((interval, n) => collect(client.stream(STREAM, { count: 5 + n, interval })));
      const plain = Array.from({ length: 20 }, (_, i) => client.send('/ipcserver/test/echo', { i }));
      const [results, replies] = await Promise.all([Promise.all(streams), Promise.all(plain)]);
      results.forEach(([items, err], n) => {
        assert.strictEqual(err, null);
        const count = 5 + n;
        assert.deepStrictEqual(items, Array.from({ length: count }, (_, i) => ({ i })).concat([{ done: count }]));
      });
      replies.forEach((reply, i) => assert.deepStrictEqual(reply, { i }));
      assert.deepStrictEqual(pushes, []);
      await client.close();
    });

    await t.test('the request timeout applies to each line, not the whole stream', async () => {
      const { client, logger, pushes } = await watchedClient(address, { requestTimeout: 300 });
      // 5 items 120 ms apart: 600 ms in all, each line well within 300 ms.
      const [items, err] = await collect(client.stream(STREAM, { count: 5, interval: 120 }));
      assert.strictEqual(err, null);
      assert.strictEqual(items.length, 6);

      const started = Date.now();
      const [slow, timedOut] = await collect(client.stream(STREAM, { count: 3, interval: 1500 }));
      const took = Date.now() - started;
      assert.strictEqual(timedOut, 'request_timeout');
      assert.ok(slow.length <= 1, JSON.stringify(slow));
      assert.ok(took >= 250 && took < 1200, `timed out after ${took} ms`);
      assert.deepStrictEqual(logger.errors, ['request_timeout']);
      assert.deepStrictEqual(await client.send('/ipcserver/test/echo', 1), 1);
      // The cancel went out with the timeout: the stream's `cancelled` line comes and is swallowed.
      const deadline = Date.now() + 2000;
      while (client.swallowed.size > 0 && Date.now() < deadline) {
        await sleep(10);
      }
      assert.strictEqual(client.swallowed.size, 0);
      assert.deepStrictEqual(pushes, []);

      const perCall = await collect(client.stream(STREAM, { count: 2, interval: 400 }, { requestTimeout: 1000 }));
      assert.deepStrictEqual(perCall, [[{ i: 0 }, { i: 1 }, { done: 2 }], null], 'a per-call requestTimeout');
      await client.close();
    });

    await t.test('an error final line throws after the items already yielded', async () => {
      const { client } = await watchedClient(address);
      const replies = client.stream(STREAM, { count: 100, interval: 30 });
      const items = [];
      const err = await (async () => {
        try {
          for await (const item of replies) {
            items.push(item);
            if (items.length === 2) {
              // Cancel behind the iterator's back: the server's `cancelled` final line reaches
              // the stream, which takes a top-level code as its error.
              client.connection.write(JSON.stringify({ ipcReqID: replies.id, ipcCancel: true }) + '\n');
            }
          }
        } catch (e) {
          return e;
        }
        return null;
      })();
      assert.strictEqual(err, 'cancelled');
      assert.deepStrictEqual(items.slice(0, 2), [{ i: 0 }, { i: 1 }]);
      assert.ok(items.length < 100);

      const objects = await watchedClient(address, { errorObjects: true, codeToErr: true });
      const [none, missing] = await collect(objects.client.stream('/ipcserver/no_such_thing', {}));
      assert.deepStrictEqual(none, []);
      assert.ok(missing instanceof IPCClient.IPCError || missing.code === 'no_handler_found', String(missing));
      assert.strictEqual(missing.code, 'no_handler_found', 'codeToErr: data.code is the error');
      await objects.client.close();
      await client.close();
    });

    await t.test('the callback form: items, then onEnd; cancel() stops it', async () => {
      const { client, pushes } = await watchedClient(address);
      const items = [];
      const ended = await new Promise((resolve) =>
        client.stream(STREAM, { count: 3 }, (item) => items.push(item), resolve));
      assert.strictEqual(ended, null);
      assert.deepStrictEqual(items, [{ i: 0 }, { i: 1 }, { i: 2 }, { done: 3 }]);

      const some = [];
      let handle;
      const cancelled = await new Promise((resolve) => {
        handle = client.stream(STREAM, { count: 1000000, interval: 10 }, null, (item) => {
          some.push(item);
          if (some.length === 3) {
            handle.cancel();
          }
        }, resolve);
      });
      assert.strictEqual(cancelled, null);
      assert.deepStrictEqual(some, [{ i: 0 }, { i: 1 }, { i: 2 }]);
      assert.deepStrictEqual(await client.send('/ipcserver/test/echo', 2), 2);

      const failed = await new Promise((resolve) =>
        client.stream(STREAM, { count: 3, interval: 1000 }, { requestTimeout: 100 }, () => {}, resolve));
      assert.strictEqual(failed, 'request_timeout');
      await sleep(50);
      assert.deepStrictEqual(pushes, []);
      await client.close();
    });

    await t.test('a consumer that does not pull: the buffer stays bounded (reading pauses), nothing is lost', async () => {
      const { client } = await watchedClient(address, { maxStreamBufferBytes: 2000 });
      const count = 100000; // ~2.5 MB of item lines
      const replies = client.stream(STREAM, { count });
      assert.deepStrictEqual((await replies.next()).value, { i: 0 });
      await sleep(500);
      // Over the limit, the client stops reading: what it holds is the limit plus the rest of
      // the chunk (UNIX) or frames (WebSocket) it had already read.
      assert.ok(replies.bufferedBytes > 2000, `buffered ${replies.bufferedBytes}`);
      assert.ok(replies.bufferedBytes < 256 * 1024, `buffered ${replies.bufferedBytes}`);
      let n = 1;
      let last;
      for await (const item of replies) {
        if (item.i !== undefined) {
          assert.strictEqual(item.i, n);
        }
        last = item;
        n += 1;
      }
      assert.strictEqual(n, count + 1);
      assert.deepStrictEqual(last, { done: count });
      assert.deepStrictEqual(await client.send('/ipcserver/test/echo', 'still reading'), 'still reading');
      await client.close();
    });

    await t.test('close() with a stream running (and reading paused) fails it with client_closed', async () => {
      const { client } = await watchedClient(address, { maxStreamBufferBytes: 100, closeTimeout: 5000 });
      const replies = client.stream(STREAM, { count: 1000000 });
      await replies.next();
      await sleep(100);
      const started = Date.now();
      await client.close();
      // close() resumes reading and cancels the stream, so the server closes its side soon; the
      // connection is not left to be cut at closeTimeout.
      const took = Date.now() - started;
      assert.ok(took < 4000, `close() took ${took} ms`);
      const [items, err] = await collect(replies);
      assert.ok(items.length > 0);
      assert.strictEqual(err, 'client_closed');
    });
  });
}

for (const transport of ['unix', 'ws']) {
  test(`server killed mid-stream: the loop throws connection_closed at once (${transport})`, async () => {
    const server = await spawnServer();
    const address = transport === 'unix' ? server.socket : server.url;
    const { client } = await watchedClient(address);
    try {
      const replies = client.stream(STREAM, { count: 1000000, interval: 20 });
      const items = [];
      let killedAt = 0;
      const err = await (async () => {
        try {
          for await (const item of replies) {
            items.push(item);
            if (items.length === 2) {
              killedAt = Date.now();
              server.kill();
            }
          }
        } catch (e) {
          return e;
        }
        return null;
      })();
      assert.strictEqual(err, 'connection_closed');
      assert.ok(Date.now() - killedAt < 1000, 'settled promptly, not at the request timeout');
      assert.ok(items.length >= 2);
      await assert.rejects(collect(client.stream(STREAM, {})).then(([, e]) => Promise.reject(e)), (e) => e === 'no_open_stream');
    } finally {
      await client.close();
      await server.kill();
    }
  });
}

test('stream() arguments are checked', () => {
  const client = new IPCClient('/tmp/whatever.sock');
  assert.throws(() => client.stream(STREAM, {}, 'nope'), TypeError);
  assert.throws(() => client.stream(STREAM, {}, {}, 'nope'), TypeError);
  assert.throws(() => client.stream(STREAM, {}, () => {}, 'nope'), TypeError);
  assert.throws(() => client.stream(STREAM, {}, { requestTimeout: -1 }), RangeError);
  assert.throws(() => client.stream(STREAM, {}, { maxStreamBufferBytes: 0 }), RangeError);
  assert.throws(() => new IPCClient('/x', null, { maxStreamBufferBytes: 1.5 }), RangeError);
});

test('stream() with no connection throws no_open_stream from the loop, and sends nothing until iterated', async () => {
  const client = new IPCClient('/tmp/whatever.sock', new CountingLogger());
  const replies = client.stream(STREAM, {});
  assert.strictEqual(replies.id, null, 'nothing sent before the first next()');
  const [items, err] = await collect(replies);
  assert.deepStrictEqual([items, err], [[], 'no_open_stream']);
});
