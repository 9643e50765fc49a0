'use strict';
// node bench.js SOCKET SIZE COUNT MODE [ORIGINAL]  -> prints ms per message
// MODE "seq": one request at a time; "burst": all COUNT in flight at once (the original bench);
// "bare": no client library, the floor a Node client can reach: one prebuilt request line
// written, the reply line collected and JSON.parse'd, one at a time (issue 17's yardstick).
// ORIGINAL: a folder holding the original pixl-ipc's client.js (and its node_modules) to
// measure instead of ours; both have the same constructor, connect(), send() and close().
const net = require('node:net');
const original = process.argv[6];
const IPCClient = require(original ? require('node:path').resolve(original, 'client.js') : '../../client-node');

function sizedMessage(size) {
  const message = {};
  for (let i = 0; i < size; i++) {
    message['key_' + i] = 'GiveMe'.padEnd(1024, 'Dataz');
  }
  return message;
}

async function run(client, message, count, mode) {
  if (mode === 'burst') {
    await Promise.all(Array.from({ length: count }, () => client.send('/ipcserver/test/echo', message)));
  } else {
    for (let i = 0; i < count; i++) {
      await client.send('/ipcserver/test/echo', message);
    }
  }
}

/** One request at a time over a bare socket: write the prebuilt line, parse the reply line. */
function bare(socket, line, count) {
  return new Promise((resolve, reject) => {
    const conn = net.connect(socket);
    let pending = '';
    let left = count;
    conn.setEncoding('utf8');
    conn.on('error', reject);
    conn.on('data', (chunk) => {
      pending += chunk;
      const end = pending.indexOf('\n');
      if (end < 0) {
        return;
      }
      JSON.parse(pending.slice(0, end));
      pending = pending.slice(end + 1);
      if (--left === 0) {
        conn.end();
        resolve();
      } else {
        conn.write(line);
      }
    });
    conn.on('connect', () => conn.write(line));
  });
}

(async () => {
  const [socket, size, count, mode] = process.argv.slice(2);
  if (mode === 'bare') {
    const line = JSON.stringify({ ipcReqID: 'rq0', uri: '/ipcserver/test/echo', data: sizedMessage(Number(size)) }) + '\n';
    await bare(socket, line, 50); // warm-up
    const started = process.hrtime.bigint();
    await bare(socket, line, Number(count));
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    console.log((ms / Number(count)).toFixed(6));
    return;
  }
  const client = new IPCClient(socket, null, { requestTimeout: 60000 });
  await client.connect();
  const message = sizedMessage(Number(size));
  await run(client, message, 50, mode); // warm-up
  const started = process.hrtime.bigint();
  await run(client, message, Number(count), mode);
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  console.log((ms / Number(count)).toFixed(6));
  await client.close();
})().catch((err) => {
  console.error('bench.js:', err);
  process.exit(1);
});
