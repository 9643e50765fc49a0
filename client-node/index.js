'use strict';
// CommonJS entry: `const IPCClient = require('pixl-ipc-client');`, the drop-in for
// `require('pixl-ipc/client')`.
const EventEmitter = require('node:events');
const { defineClient } = require('./lib/client-core');
const { openTransport } = require('./lib/transport-node');

const IPCClient = defineClient(EventEmitter, openTransport, {
  defaultUserAgent: () => 'Node/IPCClient' + process.cwd(),
  pid: () => process.pid,
  byteLength: (text) => Buffer.byteLength(text, 'utf8'),
});

module.exports = IPCClient;
