'use strict';
// Browser entry, two ways:
// - with a bundler (esbuild, webpack, Vite...): `import { IPCClient } from 'pixl-ipc-client'`
//   resolves here through the "browser" export condition (or the "browser" field);
// - with plain <script> tags, no bundler, in this order:
//     lib/constants.js lib/line-splitter.js lib/pending.js lib/client-core.js
//     lib/emitter.js lib/transport-browser.js browser.js
//   then `new PixlIPCClient('ws://127.0.0.1:7070/')` (a global) exactly like the Node client.
(function (root) {
  const commonJS = typeof module === 'object' && module.exports;
  const { defineClient, Emitter, openBrowserTransport } = commonJS
    ? Object.assign({}, require('./lib/client-core'), require('./lib/emitter'), require('./lib/transport-browser'))
    : root.PixlIPC;
  const IPCClient = defineClient(Emitter, openBrowserTransport, {
    defaultUserAgent: () => 'Browser/IPCClient' + (root.location ? root.location.pathname : ''),
    pid: () => 0,
    // WebSocket.send() takes the text (a Uint8Array would go as a binary frame); the count is
    // its UTF-8 length.
    encodeLine: (line) => ({ payload: line, bytes: new TextEncoder().encode(line).length }),
  });
  if (commonJS) {
    module.exports = IPCClient;
  } else {
    root.PixlIPCClient = IPCClient;
  }
})(typeof globalThis !== 'undefined' ? globalThis : this);
