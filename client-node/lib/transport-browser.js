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

  root.PixlIPC = Object.assign(root.PixlIPC || {}, { openBrowserTransport: openTransport });
})(globalThis);
