'use strict';
// Streamed replies: one request, many replies. Start the server first, e.g.
//   pixl-ipc-server --socket /tmp/pixl-ipc.sock
// then: node examples/stream.js /tmp/pixl-ipc.sock   (or a ws:// URL)
const IPCClient = require('pixl-ipc-client');

async function main(address) {
  const client = new IPCClient(address, null, { requestTimeout: 5000 });
  await client.connect();
  try {
    // Every item, then the final line's value ({done: 5}) last. The request timeout applies to
    // the wait for each line; an error final line throws here after the items before it.
    for await (const item of client.stream('/ipcserver/test/stream', { count: 5, interval: 100 })) {
      console.log('item', item);
    }

    // Stopping early: `break` sends the cancel; the server stops the handler, and whatever it
    // still sends for this stream is dropped quietly.
    for await (const stats of client.stream('/ipcserver/stats/watch', { interval: 200 })) {
      console.log('stats', stats);
      break;
    }

    // The callback form: onItem for each item (return a promise to slow the stream down), then
    // onEnd(err) once. handle.cancel() stops it early (onEnd(null) follows).
    await new Promise((resolve, reject) => {
      const handle = client.stream('/ipcserver/test/stream', { count: 1000, interval: 10 }, (item) => {
        console.log('callback item', item);
        if (item.i === 2) {
          handle.cancel();
        }
      }, (err) => (err ? reject(err) : resolve()));
    });
  } finally {
    await client.close();
  }
}

main(process.argv[2] || '/tmp/pixl-ipc.sock').catch((err) => {
  console.error('failed:', err);
  process.exitCode = 1;
});
