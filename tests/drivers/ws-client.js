'use strict';
// A WebSocket client that is not ours (the `ws` package), driven by the Rust tests:
//   node ws-client.js URL EXPECTED_REPLIES < requests
// Each stdin line is sent as one text frame ("binary:" prefix: a binary frame). Each frame that
// comes back is printed as one JSON line {"binary": bool, "payload": "..."}; the program exits 0
// after EXPECTED_REPLIES frames, or 1 on error or after 10 s.
const WebSocket = require('ws');
const readline = require('node:readline');

const [url, expected] = process.argv.slice(2);
const want = Number(expected);
const socket = new WebSocket(url);
const fail = (why) => {
  console.error(`ws-client: ${why}`);
  process.exit(1);
};
setTimeout(() => fail(`timed out with ${received} of ${want} replies`), 10000).unref();

let received = 0;
socket.on('error', (err) => fail(err.message));
socket.on('message', (payload, isBinary) => {
  console.log(JSON.stringify({ binary: isBinary, payload: payload.toString('utf8') }));
  received += 1;
  if (received === want) {
    socket.close(1000, 'done');
  }
});
socket.on('close', (code) => process.exit(received === want ? 0 : fail(`closed (${code}) after ${received} replies`)));
socket.on('open', () => {
  const lines = readline.createInterface({ input: process.stdin });
  lines.on('line', (line) => {
    if (line.startsWith('binary:')) {
      socket.send(Buffer.from(line.slice('binary:'.length)), { binary: true });
    } else if (line.length > 0) {
      socket.send(line);
    }
  });
});
