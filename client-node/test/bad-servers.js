'use strict';
// Misbehaving servers for the tests, each doing exactly one bad thing: a UNIX socket server and a
// hand-rolled WebSocket server (raw frames, so it can break the protocol on purpose).
const net = require('node:net');
const http = require('node:http');
const crypto = require('node:crypto');
const { tempSocket } = require('./helpers');

/**
 * A UNIX socket server; `onConnection(socket, lines)` gets each connection and an async iterator-
 * free line callback registration: `lines(fn)` calls fn(line) per request line received.
 * allowHalfOpen: our FIN does not make it close its side.
 */
function unixServer(onConnection) {
  const path = tempSocket();
  const sockets = new Set();
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    let buffered = '';
    const listeners = [];
    socket.on('data', (chunk) => {
      buffered += chunk.toString('utf8');
      let at;
      while ((at = buffered.indexOf('\n')) !== -1) {
        const line = buffered.slice(0, at);
        buffered = buffered.slice(at + 1);
        listeners.forEach((fn) => fn(line));
      }
    });
    onConnection(socket, (fn) => listeners.push(fn));
  });
  return new Promise((resolve) =>
    server.listen(path, () =>
      resolve({
        path,
        server,
        sockets,
        close: () => {
          sockets.forEach((s) => s.destroy());
          return new Promise((done) => server.close(() => done()));
        },
      })
    )
  );
}

/** One unmasked server-to-client frame. */
function frame(opcode, payload, { rsv1 = false } = {}) {
  const body = Buffer.isBuffer(payload) ? payload : Buffer.from(payload, 'utf8');
  let header;
  if (body.length < 126) {
    header = Buffer.from([0x80 | (rsv1 ? 0x40 : 0) | opcode, body.length]);
  } else if (body.length < 65536) {
    header = Buffer.alloc(4);
    header[0] = 0x80 | (rsv1 ? 0x40 : 0) | opcode;
    header[1] = 126;
    header.writeUInt16BE(body.length, 2);
  } else {
    header = Buffer.alloc(10);
    header[0] = 0x80 | (rsv1 ? 0x40 : 0) | opcode;
    header[1] = 127;
    header.writeBigUInt64BE(BigInt(body.length), 2);
  }
  return Buffer.concat([header, body]);
}

/** Decodes masked client frames from `socket`; calls onText(text) per text frame. */
function readFrames(socket, onText) {
  let buffer = Buffer.alloc(0);
  socket.on('data', (chunk) => {
    buffer = Buffer.concat([buffer, chunk]);
    for (;;) {
      if (buffer.length < 2) return;
      let length = buffer[1] & 0x7f;
      let offset = 2;
      if (length === 126) {
        if (buffer.length < 4) return;
        length = buffer.readUInt16BE(2);
        offset = 4;
      } else if (length === 127) {
        if (buffer.length < 10) return;
        length = Number(buffer.readBigUInt64BE(2));
        offset = 10;
      }
      if (buffer.length < offset + 4 + length) return;
      const mask = buffer.subarray(offset, offset + 4);
      const payload = Buffer.from(buffer.subarray(offset + 4, offset + 4 + length));
      for (let i = 0; i < payload.length; i++) payload[i] ^= mask[i % 4];
      const opcode = buffer[0] & 0x0f;
      buffer = buffer.subarray(offset + 4 + length);
      if (opcode === 1) onText(payload.toString('utf8'));
    }
  });
}

/**
 * A WebSocket server written by hand. `onUpgrade(socket, accept, count)` decides what to do with
 * the count-th upgrade: call accept() to answer it (then socket speaks raw frames), or not.
 */
function wsServer(onUpgrade) {
  const sockets = new Set();
  let count = 0;
  const server = http.createServer((req, res) => res.writeHead(404).end());
  server.on('upgrade', (req, socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    count += 1;
    const accept = () => {
      const key = crypto
        .createHash('sha1')
        .update(req.headers['sec-websocket-key'] + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11')
        .digest('base64');
      socket.write(
        'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
          `Sec-WebSocket-Accept: ${key}\r\n\r\n`
      );
    };
    onUpgrade(socket, accept, count);
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () =>
      resolve({
        url: `ws://127.0.0.1:${server.address().port}/`,
        server,
        sockets,
        upgrades: () => count,
        close: () => {
          sockets.forEach((s) => s.destroy());
          server.closeAllConnections && server.closeAllConnections();
          return new Promise((done) => server.close(() => done()));
        },
      })
    )
  );
}

/** Resolves with the promise's outcome, or rejects after `ms`: a hang is a failure, not a stuck suite. */
function within(ms, promise, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: did not settle within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

module.exports = { unixServer, wsServer, frame, readFrames, within };
