'use strict';
// The browser transport: the native WebSocket. No Node modules. A CommonJS module for bundlers,
// or a plain <script> that adds to the PixlIPC global.
(function (root) {
  const commonJS = typeof module === 'object' && module.exports;
  const { splitFrame } = commonJS ? require('./line-splitter') : root.PixlIPC;

  /**
   * The subprotocols that carry `token` (as Kubernetes does): 'pixl-ipc', which the server
   * selects, and 'pixl-ipc.bearer.' + the token's UTF-8 bytes in base64url without padding.
   */
  function tokenProtocols(token) {
    let binary = '';
    for (const byte of new TextEncoder().encode(token)) {
      binary += String.fromCharCode(byte);
    }
    const base64url = root.btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
    return ['pixl-ipc', 'pixl-ipc.bearer.' + base64url];
  }

  function openTransport(url, options, handlers) {
    let target = url;
    let protocols = [];
    if (options.token) {
      // Browsers cannot set headers on a WebSocket: by default the token travels in a
      // Sec-WebSocket-Protocol entry, which proxies do not log as they log URLs.
      const via = options.tokenVia || 'protocol';
      if (via === 'header') {
        throw new TypeError("options.tokenVia 'header' is not possible in a browser: use 'protocol' or 'query'");
      }
      if (via === 'protocol') {
        protocols = tokenProtocols(options.token);
      } else {
        target += (url.includes('?') ? '&' : '?') + 'token=' + encodeURIComponent(options.token);
      }
    }
    // The browser fails the connection unless the server selects 'pixl-ipc' from the list.
    const ws = new root.WebSocket(target, protocols);
    let opened = false;
    let closedReason = 'the server closed the connection';
    ws.onopen = () => {
      opened = true;
      handlers.onOpen();
    };
    ws.onmessage = (event) => {
      const text = typeof event.data === 'string' ? event.data : new TextDecoder().decode(event.data);
      for (const line of splitFrame(text)) {
        handlers.onLine(line);
      }
    };
    ws.onerror = () => {
      const err = new Error(opened ? 'WebSocket error' : 'cannot connect to ' + url);
      closedReason = err.message;
      handlers.onError(err);
    };
    let reported = false;
    const report = (reason) => {
      if (!reported) {
        reported = true;
        handlers.onClose(reason);
      }
    };
    ws.onclose = (event) => report(`${closedReason} (${event.code})`);
    return {
      // The browser gives no flush signal: the line counts as handed over at once.
      write: (line, flushed) => {
        ws.send(line.endsWith('\n') ? line.slice(0, -1) : line);
        if (flushed) {
          queueMicrotask(flushed);
        }
      },
      end: (callback, graceMs) => {
        closedReason = 'closed by the caller';
        if (ws.readyState === root.WebSocket.CLOSED) {
          callback();
          return;
        }
        // A browser cannot cut a WebSocket: after graceMs the close is reported as done anyway.
        let done = false;
        const finish = () => {
          if (!done) {
            done = true;
            clearTimeout(timer);
            callback();
          }
        };
        const timer = setTimeout(() => {
          report(closedReason);
          finish();
        }, graceMs);
        ws.addEventListener('close', finish, { once: true });
        ws.close(1000, 'client closing');
      },
      destroy: () => {
        closedReason = 'closed by the caller';
        try {
          ws.close();
        } finally {
          report(closedReason);
        }
      },
    };
  }

  const api = { openBrowserTransport: openTransport, tokenProtocols };
  if (commonJS) {
    module.exports = api;
  } else {
    root.PixlIPC = Object.assign(root.PixlIPC || {}, api);
  }
})(typeof globalThis !== 'undefined' ? globalThis : this);
