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
    maxMessageBytes: 64 * 1024 * 1024, // the server's default limit
    reconnect: null, // {intervalMs, growthRate, maxRetries, maxDelayMs, jitter} replaces autoReconnect
    errorObjects: false, // true: errors are IPCError objects with a .code instead of the original's strings
    token: null, // WebSockets: sent as Authorization: Bearer (Node) or ?token= (browser)
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
  });

  const api = { DEFAULTS, ERRORS };
  if (typeof module === 'object' && module.exports) {
    module.exports = api;
  } else {
    root.PixlIPC = Object.assign(root.PixlIPC || {}, api);
  }
})(typeof globalThis !== 'undefined' ? globalThis : this);
