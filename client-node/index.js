'use strict';
// CommonJS entry: `const IPCClient = require('pixl-ipc-client');`, the drop-in for
// `require('pixl-ipc/client')`.
const EventEmitter = require('node:events');
const { defineClient } = require('./lib/client-core');
const { openTransport } = require('./lib/transport-node');

const IPCClient = defineClient(EventEmitter, openTransport, {
  defaultUserAgent: () => 'Node/IPCClient' + process.cwd(),
  pid: () => process.pid,
  // A request line as the transport writes it, with its exact UTF-8 size (for the limits).
  // It stays text: the socket encodes it in one pass (into a buffer on its stack up to 16 KiB),
  // and counting it here is one fast pass. Encoding it here into a Buffer cost a count, an
  // encoding pass and a Buffer (external memory, which brings GCs sooner): 5% more CPU per call
  // at 20K and 100K, 16% at 10K, measured in one process alternating both.
  encodeLine: (line) => ({ payload: line, bytes: Buffer.byteLength(line, 'utf8') }),
});

module.exports = IPCClient;
