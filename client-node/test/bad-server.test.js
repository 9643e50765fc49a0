'use strict';
// The client against servers that misbehave on purpose (test/bad-servers.js), one bad thing each.
// Every test states the bound it checks; each failed (or hung, cut by `within`) before its fix.
const test = require('node:test');
const assert = require('node:assert');
const IPCClient = require('..');
const { unixServer, wsServer, frame, readFrames, within } = require('./bad-servers');
const { sleep } = require('./helpers');

const call = (client, uri, data) => new Promise((resolve) => client.send(uri, data, (err, result) => resolve([err, result])));
const MiB = 1024 * 1024;

function heapNow() {
  const m = process.memoryUsage();
  return { heap: m.heapUsed + m.external, rss: m.rss };
}

// ---- 1. close() without the server's cooperation -------------------------------------------

test('close() settles within closeTimeout when the UNIX server never closes its side', async (t) => {
  const server = await unixServer(() => {}); // reads, never ends, never closes
  t.after(() => server.close());
  const client = new IPCClient(server.path);
  await client.connect();
  const started = Date.now();
  await within(5000, client.close(), 'close()');
  const took = Date.now() - started;
  t.diagnostic(`UNIX close() against a server that never closes: ${took} ms`);
  assert.ok(took < 1500, `close() took ${took} ms (bound: closeTimeout 1000 ms + 500)`);
  assert.strictEqual(client.state, 'closed');
  assert.strictEqual(server.sockets.size === 0 || [...server.sockets].every((s) => s.readableEnded || s.destroyed), true);
});

test('close() settles within closeTimeout when the WebSocket server ignores the close frame', async (t) => {
  const server = await wsServer((socket, accept) => accept()); // then never answers anything
  t.after(() => server.close());
  const client = new IPCClient(server.url);
  await client.connect();
  const started = Date.now();
  await within(5000, client.close(), 'close()');
  const took = Date.now() - started;
  t.diagnostic(`WebSocket close() against a server that ignores the close frame: ${took} ms`);
  assert.ok(took < 1500, `close() took ${took} ms (bound: closeTimeout 1000 ms + 500)`);
});

test('a process that closed its client exits by itself although the server never closes', async (t) => {
  const server = await unixServer(() => {});
  t.after(() => server.close());
  const { execFile } = require('node:child_process');
  const child = `
const IPCClient = require(${JSON.stringify(require('node:path').join(__dirname, '..'))});
const client = new IPCClient(process.argv[1]);
client.connect().then(() => client.close()).then(() => console.log('closed'));
`;
  const started = Date.now();
  const stdout = await within(
    8000,
    new Promise((resolve, reject) =>
      execFile(process.execPath, ['-e', child, server.path], { timeout: 7000 }, (err, out) => (err ? reject(err) : resolve(out)))
    ),
    'the child process'
  );
  const took = Date.now() - started;
  t.diagnostic(`child process exited ${took} ms after start (close() against a wedged server)`);
  assert.strictEqual(stdout.trim(), 'closed');
  assert.ok(took < 3000, `exited after ${took} ms (bound: node start-up + closeTimeout 1000 ms)`);
});

// ---- 2. WebSocket connect attempts always end ------------------------------------------------

test('connect() fails after connectTimeout when the server never answers the upgrade', async (t) => {
  const server = await wsServer(() => {}); // accepts TCP, never answers
  t.after(() => server.close());
  const client = new IPCClient(server.url, null, { connectTimeout: 300, errorObjects: true });
  const started = Date.now();
  const err = await within(5000, client.connect().then(() => null, (e) => e), 'connect()');
  const took = Date.now() - started;
  t.diagnostic(`connect() to an unanswered upgrade, connectTimeout 300: failed after ${took} ms`);
  assert.ok(err && err.code === 'ipc_socket_err', `got ${err}`);
  assert.ok(took >= 250 && took < 1000, `connect() settled after ${took} ms (bound: connectTimeout 300 ms)`);
  assert.strictEqual(client.state, 'disconnected');
  assert.strictEqual(IPCClient.DEFAULTS.connectTimeout, 10000);
  await client.close();
});

test('a stuck reconnect attempt times out and the retry loop goes on', async (t) => {
  // Upgrade 1 is answered, 2 hangs for ever, 3 and later are answered.
  const server = await wsServer((socket, accept, count) => {
    if (count !== 2) accept();
  });
  t.after(() => server.close());
  const client = new IPCClient(server.url, null, { connectTimeout: 300, autoReconnect: 50 });
  await client.connect();
  const reconnected = new Promise((resolve) => client.once('reconnect', resolve));
  [...server.sockets].forEach((s) => s.destroy()); // drop connection 1
  await sleep(200);
  assert.strictEqual(server.upgrades(), 2, 'attempt 2 is under way');
  const stateWhileStuck = client.state;
  const started = Date.now();
  await within(5000, reconnected, 'reconnect');
  assert.ok(Date.now() - started < 1000, 'reconnected within connectTimeout + autoReconnect');
  assert.strictEqual(stateWhileStuck, 'reconnecting');
  assert.strictEqual(client.state, 'connected');
  assert.strictEqual(server.upgrades(), 3);
  await client.close();
});

// ---- 3. A server that stops reading ----------------------------------------------------------

test('requests that timed out before being written are dropped; the write queue is bounded', async (t) => {
  let received = 0;
  let serverSocket;
  const server = await unixServer((socket) => {
    serverSocket = socket;
    socket.pause(); // stops reading
    socket.on('data', (chunk) => {
      for (let at = chunk.indexOf(10); at !== -1; at = chunk.indexOf(10, at + 1)) received += 1;
    });
  });
  t.after(() => server.close());
  const client = new IPCClient(server.path, null, { requestTimeout: 500 });
  await client.connect();
  const payload = 'x'.repeat(256 * 1024); // one string shared by every call: only the client's copies count
  const before = heapNow();
  let peak = before;
  const sampler = setInterval(() => {
    const now = heapNow();
    peak = { heap: Math.max(peak.heap, now.heap), rss: Math.max(peak.rss, now.rss) };
  }, 5);
  const outcomes = [];
  const calls = Array.from({ length: 400 }, () => {
    const sent = Date.now();
    return new Promise((resolve) => client.send('/slow', payload, (err) => resolve(outcomes.push([err, Date.now() - sent]))));
  });
  await Promise.all(calls);
  clearInterval(sampler);
  serverSocket.resume(); // the server reads again
  await sleep(1000);
  const growth = (peak.heap - before.heap) / MiB;
  const refused = outcomes.filter(([err]) => err === 'write_queue_full').length;
  t.diagnostic(`${refused} refused at once (write_queue_full), ${outcomes.length - refused} timed out; server got ${received} of 400 requests after resuming; peak heap+external growth ${growth.toFixed(1)} MiB, rss growth ${((peak.rss - before.rss) / MiB).toFixed(1)} MiB`);
  assert.ok(received <= 20, `${received} requests written although their callers had given up (bound: what the socket held, <= 20)`);
  assert.ok(growth < 160, `peak growth ${growth.toFixed(1)} MiB (bound: 2 x 64 MiB queue + slack)`);
  const full = outcomes.filter(([err]) => err === 'write_queue_full');
  const timedOut = outcomes.filter(([err]) => err === 'request_timeout');
  assert.ok(full.length >= 100, `${full.length} calls over maxWriteQueueBytes (64 MiB) failed`);
  assert.ok(full.every(([, ms]) => ms < 200), 'write_queue_full is immediate');
  assert.strictEqual(full.length + timedOut.length, 400);
  assert.strictEqual(client.queuedBytes, 0, 'nothing left queued');
  await client.close();
});

test('a call over a small maxWriteQueueBytes fails at once with write_queue_full', async (t) => {
  const server = await unixServer((socket) => socket.pause());
  t.after(() => server.close());
  const client = new IPCClient(server.path, null, { requestTimeout: 300, maxWriteQueueBytes: 1 * MiB });
  // Closed also when an assertion fails: its reconnect loop would keep the test process alive.
  t.after(() => client.close());
  await client.connect();
  const payload = 'y'.repeat(200 * 1024);
  const results = await Promise.all(
    Array.from({ length: 60 }, () => {
      const sent = Date.now();
      return new Promise((resolve) => client.send('/x', payload, (err) => resolve([err, Date.now() - sent])));
    })
  );
  const full = results.filter(([err]) => err === 'write_queue_full');
  assert.ok(full.length > 0, 'some calls refused');
  assert.ok(full.every(([, ms]) => ms < 100), 'refused at once');
});

// ---- 4. The real reason, at once -------------------------------------------------------------

test('UNIX: a reply that is not JSON but carries the id fails its call at once with bad_reply', async (t) => {
  const server = await unixServer((socket, lines) =>
    lines((line) => {
      const { ipcReqID, data } = JSON.parse(line);
      socket.write(data === 'broken' ? `{"ipcReqID":"${ipcReqID}","data":{nope\n` : JSON.stringify({ ipcReqID, data }) + '\n');
    })
  );
  t.after(() => server.close());
  const client = new IPCClient(server.path, null, { requestTimeout: 2000 });
  await client.connect();
  const started = Date.now();
  const [err] = await call(client, '/x', 'broken');
  assert.strictEqual(err, 'bad_reply');
  assert.ok(Date.now() - started < 500, 'at once, not after requestTimeout');
  assert.deepStrictEqual(await call(client, '/x', 'fine'), [null, 'fine'], 'the connection survives');
  await client.close();
});

test('UNIX: a broken or too-long push that merely quotes a request id never fails that call', async (t) => {
  const server = await unixServer((socket, lines) =>
    lines((line) => {
      const { ipcReqID, data } = JSON.parse(line);
      // Pushes that mention the id inside their data, then the real reply.
      socket.write(`{"type":"push","data":{"about":{"ipcReqID":"${ipcReqID}"}},,}\n`);
      socket.write(`{"type":"push","data":{"about":{"ipcReqID":"${ipcReqID}"},"blob":"${'a'.repeat(9 * MiB)}"}}\n`);
      socket.write(JSON.stringify({ ipcReqID, data }) + '\n');
    })
  );
  t.after(() => server.close());
  const client = new IPCClient(server.path, null, { requestTimeout: 3000 });
  await client.connect();
  assert.deepStrictEqual(await call(client, '/x', 'mine'), [null, 'mine']);
  await client.close();
});

test('UNIX: a reply over maxReplyBytes fails its call at once; the connection survives', async (t) => {
  const server = await unixServer((socket, lines) =>
    lines((line) => {
      const { ipcReqID, data } = JSON.parse(line);
      const body = data === 'huge' ? 'z'.repeat(9 * MiB) : data; // over the 8 MiB default
      socket.write(JSON.stringify({ ipcReqID, data: body }) + '\n');
    })
  );
  t.after(() => server.close());
  const client = new IPCClient(server.path, null, { requestTimeout: 3000 });
  await client.connect();
  const started = Date.now();
  const [err] = await call(client, '/x', 'huge');
  assert.strictEqual(err, 'reply_too_large');
  assert.ok(Date.now() - started < 1000, 'at once');
  assert.deepStrictEqual(await call(client, '/x', 'small'), [null, 'small']);
  await client.close();
});

function wsEcho(bad) {
  return wsServer((socket, accept) => {
    accept();
    readFrames(socket, (text) => {
      const { ipcReqID, data } = JSON.parse(text);
      if (data === 'echo') {
        socket.write(frame(1, JSON.stringify({ ipcReqID, data })));
      } else {
        bad(socket, ipcReqID, data);
      }
    });
  });
}

test('WebSocket: a close frame while TCP stays open fails the calls in flight at once', async (t) => {
  const server = await wsEcho((socket) => {
    const body = Buffer.concat([Buffer.from([0x03, 0xf3]), Buffer.from('handler gone')]); // 1011
    socket.write(frame(8, body)); // and TCP stays open
  });
  t.after(() => server.close());
  const client = new IPCClient(server.url, null, { requestTimeout: 3000, autoReconnect: 0, errorObjects: true });
  await client.connect();
  const started = Date.now();
  const [err] = await call(client, '/x', 'close-please');
  const took = Date.now() - started;
  assert.strictEqual(err.code, 'connection_closed');
  assert.match(err.message, /1011 handler gone/);
  t.diagnostic(`close frame without TCP close: call failed after ${took} ms`);
  assert.ok(took < 500, `failed after ${took} ms (bound: at once, not the 30 s close wait or the 3 s timeout)`);
  await within(3000, client.close(), 'close()');
});

test('WebSocket: a protocol violation fails the calls in flight at once with the reason', async (t) => {
  const server = await wsEcho((socket) => socket.write(frame(1, 'x', { rsv1: true }))); // RSV1 without an extension
  t.after(() => server.close());
  const client = new IPCClient(server.url, null, { requestTimeout: 3000, autoReconnect: 0, errorObjects: true });
  await client.connect();
  assert.deepStrictEqual(await call(client, '/x', 'echo'), [null, 'echo']);
  const started = Date.now();
  const [err] = await call(client, '/x', 'violate');
  assert.strictEqual(err.code, 'connection_closed');
  assert.match(err.message, /RSV1/);
  assert.ok(Date.now() - started < 500, 'at once');
  await within(3000, client.close(), 'close()');
});

test('WebSocket: a frame that is not JSON but carries the id fails its call at once', async (t) => {
  const server = await wsEcho((socket, id) => socket.write(frame(1, `{"ipcReqID":"${id}","data":[1,2`)));
  t.after(() => server.close());
  const client = new IPCClient(server.url, null, { requestTimeout: 2000 });
  await client.connect();
  const started = Date.now();
  assert.deepStrictEqual(await call(client, '/x', 'broken'), ['bad_reply', undefined]);
  assert.ok(Date.now() - started < 500, 'at once');
  assert.deepStrictEqual(await call(client, '/x', 'echo'), [null, 'echo']);
  await client.close();
});

// ---- 5. Options out of range -----------------------------------------------------------------

test('requestTimeout 3e9 or Infinity does not fail calls after 1 ms', async (t) => {
  const server = await unixServer(() => {}); // never answers
  t.after(() => server.close());
  for (const requestTimeout of [3e9, Infinity]) {
    const client = new IPCClient(server.path, null, { requestTimeout });
    await client.connect();
    const outcome = await Promise.race([call(client, '/x', 1), sleep(200).then(() => 'still waiting')]);
    assert.strictEqual(outcome, 'still waiting', `requestTimeout ${requestTimeout}`);
    await client.close();
  }
});

test('autoReconnect 3e9 does not reconnect every 1 ms', async (t) => {
  let connections = 0;
  const server = await unixServer((socket) => {
    connections += 1;
    setTimeout(() => socket.destroy(), 20); // every connection is dropped
  });
  t.after(() => server.close());
  const client = new IPCClient(server.path, null, { autoReconnect: 3e9 });
  await client.connect();
  await sleep(300);
  assert.ok(connections <= 1, `${connections} connections in 300 ms (bound: 1, the next attempt is 24.8 days away)`);
  t.diagnostic(`autoReconnect 3e9: ${connections} connection(s) in 300 ms`);
  assert.strictEqual(client.state, 'reconnecting');
  await client.close();
});

test('every option is validated at construction with a TypeError or RangeError', () => {
  const bad = [
    [{ autoReconnect: NaN }, RangeError],
    [{ autoReconnect: -1 }, RangeError],
    [{ autoReconnect: Infinity }, RangeError],
    [{ requestTimeout: NaN }, RangeError],
    [{ requestTimeout: -5 }, RangeError],
    [{ requestTimeout: 'soon' }, TypeError],
    [{ expireRequest: NaN }, RangeError],
    [{ maxMessageBytes: 0 }, RangeError],
    [{ maxMessageBytes: 1.5 }, RangeError],
    [{ maxReplyBytes: NaN }, RangeError],
    [{ maxWriteQueueBytes: -1 }, RangeError],
    [{ connectTimeout: 0 }, RangeError],
    [{ closeTimeout: NaN }, RangeError],
    [{ logStatsInterval: NaN }, RangeError],
    [{ reconnect: { intervalMs: NaN } }, RangeError],
    [{ reconnect: { intervalMs: 10, jitter: NaN } }, RangeError],
    [{ reconnect: { intervalMs: 10, jitter: 2 } }, RangeError],
    [{ reconnect: { intervalMs: 10, maxDelayMs: NaN } }, RangeError],
    [{ reconnect: { intervalMs: 10, growthRate: Infinity } }, RangeError],
    [{ reconnect: { intervalMs: 10, maxRetries: -1 } }, RangeError],
    [{ userAgent: 5 }, TypeError],
    [{ autoReconnect: 1e-300 }, RangeError],
    [{ logStatsInterval: 1e-9 }, RangeError],
    [{ reconnect: { intervalMs: 1e-300 } }, RangeError],
    [{ maxMessageBytes: 1e300 }, RangeError],
    [{ errorObjects: 'no' }, TypeError],
    [{ codeToErr: 'yes' }, TypeError],
    [{ ca: 5 }, TypeError],
  ];
  for (const [options, kind] of bad) {
    assert.throws(() => new IPCClient('/x', null, options), kind, JSON.stringify(options) + ' ' + String(Object.values(options)[0]));
  }
  // The original's values still work.
  for (const options of [{}, { requestTimeout: 0 }, { autoReconnect: 0 }, { autoReconnect: false }, { logStatsInterval: null }, { logStatsInterval: 0 }, { expireRequest: 0 }]) {
    new IPCClient('/x', null, options);
  }
});

test('state says disconnected once reconnecting has given up', async (t) => {
  const server = await unixServer((socket) => setTimeout(() => socket.destroy(), 20));
  const client = new IPCClient(server.path, null, { reconnect: { intervalMs: 20, maxRetries: 2 } });
  await client.connect();
  assert.strictEqual(client.state, 'connected');
  await server.close(); // later attempts are refused
  const gaveUp = new Promise((resolve) => client.once('reconnect_failed', resolve));
  await within(3000, gaveUp, 'reconnect_failed');
  assert.strictEqual(client.state, 'disconnected');
  await client.close();
  assert.strictEqual(client.state, 'closed');
});

// ---- 6. Parse amplification ------------------------------------------------------------------
// The client runs in a child process so that its peak RSS (getrusage maxRSS) is its own, not
// this process's with the server's 24 MiB in it. The child connects to argv[1], makes one call
// with argv[2] as data after a warm-up call (rq0), prints {err, baselineMaxRssMiB, peakRssMiB}
// and exits without close(), so what is measured does not depend on item 1's fix.
const PEAK_RSS_CHILD = `
const IPCClient = require(${JSON.stringify(require('node:path').join(__dirname, '..'))});
(async () => {
  const client = new IPCClient(process.argv[1], null, { requestTimeout: 20000 });
  await client.connect();
  await client.send('/x', 'echo');
  const baseline = process.resourceUsage().maxRSS / 1024;
  let err = null;
  try {
    await client.send('/x', process.argv[2]);
  } catch (e) {
    err = e;
  }
  const peak = process.resourceUsage().maxRSS / 1024;
  const report = { err, baselineMaxRssMiB: baseline, peakRssMiB: peak };
  process.stdout.write(JSON.stringify(report) + '\\n', () => process.exit(0));
})();
`;

function peakRssOfCall(address, data) {
  const { execFile } = require('node:child_process');
  return new Promise((resolve, reject) =>
    execFile(process.execPath, ['-e', PEAK_RSS_CHILD, address, data], { timeout: 30000 }, (err, stdout) =>
      err ? reject(err) : resolve(JSON.parse(stdout))
    )
  );
}

// 24 MiB of `{}`s: well under the server's 64 MiB limit, ~12x that once parsed.
const amplifierBody = () => `[${'{},'.repeat((24 * MiB) / 3 - 1)}{}]`;

test('UNIX: a 24 MiB reply of tiny objects is refused before parsing (maxReplyBytes 8 MiB default)', async (t) => {
  const amplifier = Buffer.from(`{"ipcReqID":"rq1","data":${amplifierBody()}}\n`);
  const server = await unixServer((socket, lines) =>
    lines((line) => {
      const { ipcReqID, data } = JSON.parse(line);
      socket.write(data === 'amplify' ? amplifier : JSON.stringify({ ipcReqID, data }) + '\n');
    })
  );
  t.after(() => server.close());
  const run = await peakRssOfCall(server.path, 'amplify');
  const growth = run.peakRssMiB - run.baselineMaxRssMiB;
  t.diagnostic(`UNIX 24 MiB of {}: ${run.err || 'parsed'}; client peak RSS ${run.peakRssMiB.toFixed(1)} MiB, +${growth.toFixed(1)} MiB over its baseline`);
  assert.strictEqual(run.err, 'reply_too_large');
  assert.ok(growth < 48, `client peak RSS grew ${growth.toFixed(1)} MiB (bound: < 48 MiB; parsing it cost ~283 MiB)`);
});

test('WebSocket: a 24 MiB frame of tiny objects is refused before parsing; the connection survives', async (t) => {
  const amplifier = frame(1, `{"ipcReqID":"rq1","data":${amplifierBody()}}`);
  const server = await wsEcho((socket) => socket.write(amplifier));
  t.after(() => server.close());
  const run = await peakRssOfCall(server.url, 'amplify');
  const growth = run.peakRssMiB - run.baselineMaxRssMiB;
  t.diagnostic(`WebSocket 24 MiB of {}: ${run.err || 'parsed'}; client peak RSS ${run.peakRssMiB.toFixed(1)} MiB, +${growth.toFixed(1)} MiB over its baseline`);
  assert.strictEqual(run.err, 'reply_too_large');
  assert.ok(growth < 96, `client peak RSS grew ${growth.toFixed(1)} MiB (bound: the 24 MiB frame, its text and copies, < 96 MiB)`);
});

test('WebSocket: after a refused reply the connection still serves calls', async (t) => {
  const amplifier = frame(1, `{"ipcReqID":"rq0","data":"${'q'.repeat(9 * MiB)}"}`);
  const server = await wsEcho((socket) => socket.write(amplifier));
  t.after(() => server.close());
  const client = new IPCClient(server.url, null, { requestTimeout: 5000 });
  await client.connect();
  assert.deepStrictEqual(await call(client, '/x', 'big'), ['reply_too_large', undefined]);
  assert.deepStrictEqual(await call(client, '/x', 'echo'), [null, 'echo']);
  await client.close();
});
