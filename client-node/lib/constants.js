'use strict';
// Defaults and error values, in one place. Shared by Node and the browser entry.
(function (root) {
  const DEFAULTS = Object.freeze({
    requestTimeout: 10 * 1000, // ms a request waits for its reply (the original's default)
    expireRequest: 10 * 1000, // ms a timed-out request's id is remembered, so its late reply is ignored quietly
    autoReconnect: 1000, // ms between reconnect attempts; 0 disables (the original's option)
    codeToErr: false,
    messageTransform: null,
    logStatsInterval: null,
    maxMessageBytes: 64 * 1024 * 1024, // the server's default limit: longest request sent, largest WebSocket frame
    // Longest reply line parsed. JSON.parse of tiny objects costs ~12x the line's size in heap
    // (a 24 MiB line of `{}`s: 283 MiB), so this bounds what one reply can make the client hold.
    maxReplyBytes: 8 * 1024 * 1024,
    // Bytes of requests waiting to be written (queued, or handed to the socket and not yet
    // flushed). A send over it fails at once with 'write_queue_full'.
    maxWriteQueueBytes: 64 * 1024 * 1024,
    // Streamed replies: characters of items a stream holds that its consumer has not taken yet.
    // Past it, Node stops reading the connection until the consumer catches up (the server's
    // backpressure then pauses the stream); the browser cannot stop a WebSocket reading, so
    // there the stream fails with 'stream_buffer_full' (and is cancelled) instead.
    maxStreamBufferBytes: 8 * 1024 * 1024,
    connectTimeout: 10 * 1000, // ms each connect attempt (also each reconnect) may take
    closeTimeout: 1000, // ms close() waits for the server to close its side before cutting the connection
    reconnect: null, // {intervalMs, growthRate, maxRetries, maxDelayMs, jitter} replaces autoReconnect
    errorObjects: false, // true: errors are IPCError objects with a .code instead of the original's strings
    token: null, // WebSockets: the bearer token, sent as tokenVia says
    // How the token travels: 'header' (Authorization: Bearer; Node's default, not possible in a
    // browser), 'protocol' (a Sec-WebSocket-Protocol entry, out of URLs; the browser's default) or
    // 'query' (?token=, for servers older than the 'protocol' way; proxies log URLs).
    tokenVia: null,
    ca: null, // wss:// in Node: PEM CA certificate(s) to trust
    servername: null, // wss:// in Node: the name the certificate must be valid for
  });

  // The error values callbacks and rejected promises receive (strings, like the original).
  const ERRORS = Object.freeze({
    SOCKET: 'ipc_socket_err', // connect failed (original)
    NO_STREAM: 'no_open_stream', // send with no open connection (original)
    TIMEOUT: 'request_timeout', // no reply within requestTimeout (original)
    CONNECTION_CLOSED: 'connection_closed', // the connection ended with the request in flight (new)
    MESSAGE_TOO_LARGE: 'message_too_large', // request or reply over maxMessageBytes (new)
    CLOSED: 'client_closed', // close() was called with the request in flight (new)
    REPLY_TOO_LARGE: 'reply_too_large', // the reply line exceeds maxReplyBytes (new)
    BAD_REPLY: 'bad_reply', // the reply to this request is not valid JSON (new)
    WRITE_QUEUE_FULL: 'write_queue_full', // maxWriteQueueBytes of requests already wait to be written (new)
    STREAM_BUFFER_FULL: 'stream_buffer_full', // browser: a stream's unconsumed items passed maxStreamBufferBytes (new)
    CONNECT_TIMEOUT: 'connect_timeout', // detail of ipc_socket_err: no connection within connectTimeout (new)
  });

  // setTimeout fires after 1 ms for any delay above this (2^31-1 ms, 24.8 days).
  const MAX_TIMER_MS = 2147483647;

  const api = { DEFAULTS, ERRORS, MAX_TIMER_MS };
  if (typeof module === 'object' && module.exports) {
    module.exports = api;
  } else {
    root.PixlIPC = Object.assign(root.PixlIPC || {}, api);
  }
})(typeof globalThis !== 'undefined' ? globalThis : this);
