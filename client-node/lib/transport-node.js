'use strict';
// Node transports: a UNIX socket (newline-delimited JSON) or a WebSocket (the `ws` package).
const net = require('node:net');
const WebSocket = require('ws');
const { LineSplitter, splitFrame } = require('./line-splitter');

/**
 * Opens a connection to `address` and reports through `handlers`:
 * onOpen(), onLine(text), onTooLong(bytes), onError(err), onClose(reason).
 * Returns {write(line), end(callback)}.
 */
function openTransport(address, options, handlers) {
  if (/^wss?:\/\//.test(address)) {
    return openWebSocket(address, options, handlers);
  }
  return openUnix(address, options, handlers);
}

function openUnix(path, options, handlers) {
  const socket = net.createConnection(path);
  const splitter = new LineSplitter(options.maxMessageBytes, handlers.onTooLong);
  let closedReason = 'the server closed the connection';
  socket.on('connect', () => handlers.onOpen());
  socket.on('data', (chunk) => {
    for (const line of splitter.push(chunk)) {
      handlers.onLine(line);
    }
  });
  socket.on('error', (err) => {
    closedReason = err.message;
    handlers.onError(err);
  });
  socket.on('close', () => handlers.onClose(closedReason));
  return {
    write: (line) => socket.write(line),
    end: (callback) => {
      closedReason = 'closed by the caller';
      if (socket.destroyed) {
        callback();
        return;
      }
      socket.once('close', () => callback());
      socket.end();
    },
  };
}

function openWebSocket(url, options, handlers) {
  const headers = {};
  if (options.token) {
    headers.authorization = 'Bearer ' + options.token;
  }
  const ws = new WebSocket(url, {
    headers,
    ca: options.ca || undefined,
    servername: options.servername || undefined,
    maxPayload: options.maxMessageBytes,
  });
  let closedReason = 'the server closed the connection';
  ws.on('open', () => handlers.onOpen());
  ws.on('message', (payload) => {
    for (const line of splitFrame(payload.toString('utf8'))) {
      handlers.onLine(line);
    }
  });
  ws.on('unexpected-response', (request, response) => {
    const err = new Error(`the server refused the upgrade with HTTP ${response.statusCode}`);
    err.statusCode = response.statusCode;
    closedReason = err.message;
    handlers.onError(err);
    ws.terminate();
  });
  ws.on('error', (err) => {
    closedReason = err.message;
    handlers.onError(err);
  });
  ws.on('close', (code, reason) => {
    const why = reason && reason.length ? `${code} ${reason}` : String(code);
    handlers.onClose(closedReason === 'the server closed the connection' ? `${closedReason} (${why})` : closedReason);
  });
  return {
    // A message per frame, without the line's newline.
    write: (line) => ws.send(line.endsWith('\n') ? line.slice(0, -1) : line),
    end: (callback) => {
      closedReason = 'closed by the caller';
      if (ws.readyState === WebSocket.CLOSED) {
        callback();
        return;
      }
      ws.once('close', () => callback());
      ws.close(1000, 'client closing');
    },
  };
}

module.exports = { openTransport };
