'use strict';
// Node transports: a UNIX socket (newline-delimited JSON) or a WebSocket (the `ws` package).
const net = require('node:net');
const WebSocket = require('ws');
const { LineSplitter, splitFrame, EDGE_BYTES } = require('./line-splitter');

/**
 * Opens a connection to `address` and reports through `handlers`:
 * onOpen(), onLine(text), onTooLong(bytes, head, tail), onError(err), onClose(reason) (once).
 * Returns {write(line, flushed), end(callback, graceMs), destroy(), pause(), resume()}.
 */
function openTransport(address, options, handlers) {
  if (/^wss?:\/\//.test(address)) {
    return openWebSocket(address, options, handlers);
  }
  return openUnix(address, options, handlers);
}

/**
 * The name of a Linux abstract socket written '@name', 'unix:@name' or 'unix://@name', or null
 * for anything else (a file whose name starts with '@' is './@name').
 */
function abstractName(address) {
  const match = /^(?:unix:(?:\/\/)?)?@([\s\S]*)$/.exec(address);
  return match ? match[1] : null;
}

/** libuv 1.48 (Node 22) connects to an abstract name with its exact length; older libuv pads
 * the address with NUL bytes to 108, which names a different socket. */
function libuvConnectsAbstractNames(version = process.versions.uv) {
  const [major, minor] = String(version).split('.').map(Number);
  return major > 1 || (major === 1 && minor >= 48);
}

/** What net.createConnection() takes for `address`; throws when it cannot be reached here. */
function unixTarget(address) {
  const name = abstractName(address);
  if (name === null) {
    return address;
  }
  if (name === '') {
    throw new Error(`the abstract socket name after @ is empty (${address})`);
  }
  if (process.platform !== 'linux') {
    throw new Error(`abstract sockets (@name) exist only on Linux, not on ${process.platform} (${address})`);
  }
  if (!libuvConnectsAbstractNames()) {
    throw new Error(`cannot connect to the abstract socket @${name}: this Node (${process.version}, libuv ${process.versions.uv}) pads abstract addresses, which names another socket; Node 22 or later (libuv 1.48+) connects to them`);
  }
  return '\0' + name;
}

function openUnix(path, options, handlers) {
  const socket = net.createConnection(unixTarget(path));
  const splitter = new LineSplitter(options.maxReplyBytes, handlers.onTooLong);
  let closedReason = 'the server closed the connection';
  socket.on('connect', () => handlers.onOpen());
  const onLine = handlers.onLine;
  socket.on('data', (chunk) => splitter.each(chunk, onLine));
  socket.on('error', (err) => {
    closedReason = err.message;
    handlers.onError(err);
  });
  socket.on('close', () => handlers.onClose(closedReason));
  return {
    // `flushed` runs once the line has left Node's buffer (or the write failed).
    write: (line, flushed) => writeLine(socket, line, flushed),
    end: (callback, graceMs) => {
      closedReason = 'closed by the caller';
      if (socket.destroyed) {
        callback();
        return;
      }
      // The server gets graceMs to close its side; then the socket is cut.
      const timer = setTimeout(() => socket.destroy(), graceMs);
      socket.once('close', () => {
        clearTimeout(timer);
        callback();
      });
      socket.end();
    },
    destroy: () => {
      closedReason = 'closed by the caller';
      socket.destroy();
    },
    // Stop and restart reading: a stream's consumer that falls behind pauses the server.
    pause: () => socket.pause(),
    resume: () => socket.resume(),
  };
}

/**
 * Writes a line; `flushed()` once it has left Node's buffer. A write with a callback costs
 * Node a tick (and a callback) even when the socket took every byte at once, which it usually
 * does: then the line is written without one and flushed() runs now. If the socket kept some
 * of it, an empty write's callback tells when it is gone (callbacks come in write order); if
 * earlier lines still wait, the line goes with the callback itself.
 */
function writeLine(socket, line, flushed) {
  if (typeof flushed !== 'function' || socket.writableLength > 0) {
    socket.write(line, flushed);
    return;
  }
  socket.write(line);
  if (socket.writableLength === 0) {
    flushed();
  } else {
    socket.write('', flushed);
  }
}

function openWebSocket(url, options, handlers) {
  const headers = {};
  let target = url;
  let protocols = [];
  if (options.token) {
    const via = options.tokenVia || 'header';
    if (via === 'header') {
      headers.authorization = 'Bearer ' + options.token;
    } else if (via === 'protocol') {
      protocols = tokenProtocols(options.token);
    } else {
      target += (url.includes('?') ? '&' : '?') + 'token=' + encodeURIComponent(options.token);
    }
  }
  // `ws` fails the connection unless the server selects 'pixl-ipc' from the offered list.
  const ws = new WebSocket(target, protocols, {
    headers,
    ca: options.ca || undefined,
    servername: options.servername || undefined,
    maxPayload: Math.max(options.maxMessageBytes, options.maxReplyBytes),
    // Timers turn delays past 2^31-1 ms into 1 ms: clamp, as the client does for its own.
    handshakeTimeout: Math.min(options.connectTimeout, 2147483647),
    // After a close frame (either side's), the TCP close is awaited this long, then cut.
    closeTimeout: Math.min(options.closeTimeout, 2147483647),
  });
  let closedReason = 'the server closed the connection';
  let byCaller = false;
  let reported = false;
  const report = (reason) => {
    if (!reported) {
      reported = true;
      handlers.onClose(reason);
    }
  };
  // `ws` answers a server's close frame, or a protocol violation, by calling close() itself, and
  // emits 'close' only once TCP is closed (up to closeTimeout later). The connection is over
  // from that moment: report it then, so calls in flight fail at once with the real reason.
  const originalClose = ws.close;
  ws.close = function (code, reason) {
    if (!byCaller && ws.readyState === WebSocket.OPEN) {
      process.nextTick(() => {
        const why = reason && reason.length ? `${code === undefined ? 1005 : code} ${reason}` : String(code === undefined ? 1005 : code);
        report(closedReason === 'the server closed the connection' ? `${closedReason} (${why})` : closedReason);
      });
    }
    return originalClose.call(ws, code, reason);
  };
  ws.on('open', () => handlers.onOpen());
  ws.on('message', (payload) => {
    const text = payload.toString('utf8');
    const lines = splitFrame(text);
    for (const line of lines) {
      // Cheap check first: a frame within the limit has no line over it.
      const bytes = payload.length <= options.maxReplyBytes ? 0 : Buffer.byteLength(line, 'utf8');
      if (bytes > options.maxReplyBytes) {
        handlers.onTooLong(bytes, line.slice(0, EDGE_BYTES), line.slice(-EDGE_BYTES));
      } else {
        handlers.onLine(line);
      }
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
    report(closedReason === 'the server closed the connection' ? `${closedReason} (${why})` : closedReason);
  });
  return {
    // A message per frame, without the line's newline. `flushed` runs once it left Node.
    // `line` is the encoded request (a Buffer ending in "\n"), or a string; either goes as a
    // text frame.
    write: (line, flushed) => ws.send(withoutNewline(line), { binary: false }, flushed ? () => flushed() : undefined),
    end: (callback, graceMs) => {
      closedReason = 'closed by the caller';
      byCaller = true;
      if (ws.readyState === WebSocket.CLOSED) {
        callback();
        return;
      }
      const timer = setTimeout(() => ws.terminate(), graceMs);
      ws.once('close', () => {
        clearTimeout(timer);
        callback();
      });
      ws.close(1000, 'client closing');
    },
    destroy: () => {
      closedReason = 'closed by the caller';
      byCaller = true;
      ws.terminate();
    },
    // Stop and restart reading (frames already received may still be delivered after pause()).
    pause: () => ws.pause(),
    resume: () => ws.resume(),
  };
}

/**
 * The subprotocols that carry `token` out of URLs and headers (as Kubernetes does): 'pixl-ipc',
 * which the server selects, and 'pixl-ipc.bearer.' + the token's UTF-8 bytes in base64url
 * without padding, which it never echoes.
 */
function tokenProtocols(token) {
  return ['pixl-ipc', 'pixl-ipc.bearer.' + Buffer.from(token, 'utf8').toString('base64url')];
}

/** A request (a Buffer or a string) without its ending newline: a WebSocket frame is one message. */
function withoutNewline(line) {
  if (typeof line === 'string') {
    return line.endsWith('\n') ? line.slice(0, -1) : line;
  }
  return line.length > 0 && line[line.length - 1] === 0x0a ? line.subarray(0, line.length - 1) : line;
}

module.exports = { openTransport, tokenProtocols, abstractName, libuvConnectsAbstractNames };
