'use strict';
// Browser entry. Load, in this order, with plain <script> tags (no bundler, no Node modules):
//   lib/constants.js lib/line-splitter.js lib/pending.js lib/client-core.js
//   lib/emitter.js lib/transport-browser.js browser.js
// then use `new PixlIPCClient('ws://127.0.0.1:7070/')` exactly like the Node client.
(function (root) {
  const { defineClient, Emitter, openBrowserTransport } = root.PixlIPC;
  root.PixlIPCClient = defineClient(Emitter, openBrowserTransport, {
    defaultUserAgent: () => 'Browser/IPCClient' + (root.location ? root.location.pathname : ''),
    pid: () => 0,
    byteLength: (text) => new TextEncoder().encode(text).length,
  });
})(globalThis);
