'use strict';
// CommonJS entry: `const IPCClient = require('pixl-ipc-client');`, the drop-in for
// `require('pixl-ipc/client')`.
const EventEmitter = require('node:events');
const { defineClient } = require('./lib/client-core');
const { openTransport } = require('./lib/transport-node');

// Node writes a string of up to 16 KiB of UTF-8 (3 bytes per UTF-16 unit at worst) straight
// from a stack buffer.
const SOCKET_STACK_CHARS = Math.floor(16384 / 3);

const IPCClient = defineClient(EventEmitter, openTransport, {
  defaultUserAgent: () => 'Node/IPCClient' + process.cwd(),
  pid: () => process.pid,
  // A request line as the transport writes it, with its exact UTF-8 size (for the limits).
  // A short line stays text: the socket encodes it in one pass into a buffer on its stack, and
  // counting it here is one fast pass (a Buffer would cost a count, an encoding and an object).
  // A longer line is encoded here once: the socket would count, allocate and copy it, which
  // takes one scan of a 100 KB request more (162K of 3.54M instructions per 100K call).
  encodeLine: (line) => {
    if (line.length <= SOCKET_STACK_CHARS) {
      return { payload: line, bytes: Buffer.byteLength(line, 'utf8') };
    }
    const payload = Buffer.from(line, 'utf8');
    return { payload, bytes: payload.length };
  },
});

module.exports = IPCClient;
