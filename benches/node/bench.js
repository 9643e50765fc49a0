'use strict';
// node bench.js SOCKET SIZE COUNT MODE  -> prints ms per message
// MODE "seq": one request at a time; "burst": all COUNT in flight at once (the original bench).
const IPCClient = require('../../client-node');

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

(async () => {
  const [socket, size, count, mode] = process.argv.slice(2);
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
