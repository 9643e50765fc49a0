'use strict';
// The browser transport: the native WebSocket. No Node modules.
(function (root) {
  const { splitFrame } = root.PixlIPC;

  function openTransport(url, options, handlers) {
    let target = url;
    if (options.token) {
      // Browsers cannot set headers on a WebSocket: the server also accepts ?token=.
      target += (url.includes('?') ? '&' : '?') + 'token=' + encodeURIComponent(options.token);
    }
    const ws = new root.WebSocket(target);
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
    ws.onclose = (event) => handlers.onClose(`${closedReason} (${event.code})`);
    return {
      write: (line) => ws.send(line.endsWith('\n') ? line.slice(0, -1) : line),
      end: (callback) => {
        closedReason = 'closed by the caller';
        if (ws.readyState === root.WebSocket.CLOSED) {
          callback();
          return;
        }
        ws.addEventListener('close', () => callback(), { once: true });
        ws.close(1000, 'client closing');
      },
    };
  }

  root.PixlIPC = Object.assign(root.PixlIPC || {}, { openBrowserTransport: openTransport });
})(globalThis);
