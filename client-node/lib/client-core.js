'use strict';
// The client itself, independent of where it runs: Node (index.js) and the browser
// (browser.js) each give it an event emitter class and a transport opener.
(function (root) {
  const shared =
    typeof module === 'object' && module.exports
      ? Object.assign({}, require('./constants'), require('./pending'), require('./line-splitter'))
      : root.PixlIPC;
  const { DEFAULTS, ERRORS, PendingTable, findRequestID } = shared;

  /** An error object with a stable `code`, for callers that opt in with `errorObjects: true`. */
  class IPCError extends Error {
    constructor(code, message, detail) {
      super(message || code);
      this.name = 'IPCError';
      this.code = code;
      if (detail !== undefined) {
        this.detail = detail;
      }
    }

    toString() {
      return this.code;
    }
  }

  // setTimeout turns any delay above 2^31-1 ms into 1 ms: every ms option is validated, and
  // large values are clamped to this (requestTimeout: Infinity means no timeout).
  const MAX_TIMER_MS = 2147483647;
  // Requests handed to the transport but not yet flushed, at most (then they wait in our queue).
  const TRANSPORT_HIGH_WATER = 1024 * 1024;

  function checkNumber(name, value, { min = 0, minExclusive = false, integer = false, infinite = false, max = Infinity } = {}) {
    if (typeof value !== 'number') {
      throw new TypeError(`options.${name} must be a number, got ${typeof value}`);
    }
    if (Number.isNaN(value) || value < min || (minExclusive && value === min)) {
      throw new RangeError(`options.${name} must be ${minExclusive ? '>' : '>='} ${min}, got ${value}`);
    }
    if (!Number.isFinite(value) && !infinite) {
      throw new RangeError(`options.${name} must be finite, got ${value}`);
    }
    if (integer && Number.isFinite(value) && !Number.isInteger(value)) {
      throw new RangeError(`options.${name} must be an integer, got ${value}`);
    }
    if (value > max) {
      throw new RangeError(`options.${name} must be at most ${max}, got ${value}`);
    }
  }

  function validateOptions(options) {
    if (options === null || typeof options !== 'object') {
      throw new TypeError('options must be an object');
    }
    const given = (name) => options[name] !== undefined;
    // requestTimeout 0 keeps the original's meaning (the default); Infinity: no timeout.
    if (given('requestTimeout')) checkNumber('requestTimeout', options.requestTimeout, { infinite: true });
    if (given('expireRequest')) checkNumber('expireRequest', options.expireRequest);
    // A period under 1 ms (1e-300, say) would run its timer every millisecond: refused; 0 is off.
    if (given('autoReconnect') && options.autoReconnect !== false && options.autoReconnect !== null) {
      checkNumber('autoReconnect', options.autoReconnect);
      if (options.autoReconnect !== 0) checkNumber('autoReconnect', options.autoReconnect, { min: 1 });
    }
    if (options.logStatsInterval != null) {
      checkNumber('logStatsInterval', options.logStatsInterval); // 0, like null, is off
      if (options.logStatsInterval !== 0) checkNumber('logStatsInterval', options.logStatsInterval, { min: 1 });
    }
    for (const name of ['errorObjects', 'codeToErr']) {
      if (options[name] != null && typeof options[name] !== 'boolean') {
        throw new TypeError(`options.${name} must be a boolean`);
      }
    }
    if (options.ca != null && typeof options.ca !== 'string' && !Array.isArray(options.ca) &&
        !(typeof Buffer !== 'undefined' && Buffer.isBuffer(options.ca))) {
      throw new TypeError('options.ca must be a string, a Buffer or an array of them');
    }
    if (given('connectTimeout')) checkNumber('connectTimeout', options.connectTimeout, { minExclusive: true });
    if (given('closeTimeout')) checkNumber('closeTimeout', options.closeTimeout);
    for (const name of ['maxMessageBytes', 'maxReplyBytes', 'maxWriteQueueBytes']) {
      if (given(name)) checkNumber(name, options[name], { min: 1, integer: true, max: Number.MAX_SAFE_INTEGER });
    }
    for (const name of ['messageTransform']) {
      if (options[name] != null && typeof options[name] !== 'function') {
        throw new TypeError(`options.${name} must be a function`);
      }
    }
    for (const name of ['userAgent', 'token', 'servername']) {
      if (options[name] != null && typeof options[name] !== 'string') {
        throw new TypeError(`options.${name} must be a string`);
      }
    }
    if (options.tokenVia != null && !['header', 'protocol', 'query'].includes(options.tokenVia)) {
      throw new TypeError("options.tokenVia must be 'header', 'protocol' or 'query'");
    }
    if (options.reconnect != null) {
      if (typeof options.reconnect !== 'object') {
        throw new TypeError('options.reconnect must be an object or null');
      }
      const { intervalMs, growthRate, maxRetries, maxDelayMs, jitter } = options.reconnect;
      if (typeof intervalMs !== 'number' || intervalMs <= 0) {
        throw new TypeError('options.reconnect.intervalMs must be a positive number');
      }
      checkNumber('reconnect.intervalMs', intervalMs, { min: 1 });
      if (growthRate !== undefined && (typeof growthRate !== 'number' || growthRate < 1)) {
        throw new TypeError('options.reconnect.growthRate must be a number >= 1');
      }
      if (growthRate !== undefined) checkNumber('reconnect.growthRate', growthRate, { min: 1 });
      if (maxRetries !== undefined && maxRetries !== null && !Number.isInteger(maxRetries)) {
        throw new TypeError('options.reconnect.maxRetries must be an integer or null');
      }
      if (maxRetries != null) checkNumber('reconnect.maxRetries', maxRetries, { integer: true });
      if (maxDelayMs !== undefined) checkNumber('reconnect.maxDelayMs', maxDelayMs, { minExclusive: true });
      if (jitter !== undefined) {
        checkNumber('reconnect.jitter', jitter);
        if (jitter > 1) throw new RangeError(`options.reconnect.jitter must be within 0..1, got ${jitter}`);
      }
    }
  }

  /** Calls `callback` if given, else returns a Promise: the original's dual style. */
  function settle(callback, run) {
    if (typeof callback === 'function') {
      run(callback);
      return undefined;
    }
    return new Promise((resolve, reject) => {
      run((err, result) => (err ? reject(err) : resolve(result)));
    });
  }

  function defineClient(EventEmitter, openTransport, environment) {
    class IPCClient extends EventEmitter {
      /**
       * @param {string} path socket path, or ws:// / wss:// URL
       * @param {object|null} logger {debug(level, msg, data), error(code, msg, data)}
       * @param {object} options see README (every option has its default there and in constants.js)
       */
      constructor(path, logger = null, options = {}) {
        super();
        validateOptions(options);
        const settings = Object.assign({}, DEFAULTS, options);
        this.path = path;
        this.logger = logger;
        this.options = settings;
        // 0 means the default, as in the original; Infinity: no timeout; above 2^31-1: clamped.
        const timeout = settings.requestTimeout || DEFAULTS.requestTimeout;
        this.requestTimeout = timeout === Infinity ? Infinity : Math.min(timeout, MAX_TIMER_MS);
        this.userAgent = settings.userAgent ? settings.userAgent : environment.defaultUserAgent();
        this.autoReconnect = settings.autoReconnect ? Math.min(settings.autoReconnect, MAX_TIMER_MS) : 0;
        // Replies longer than this are refused before JSON.parse (maxMessageBytes still caps it).
        this.maxReplyBytes = Math.min(settings.maxReplyBytes, settings.maxMessageBytes);
        const defaultTransform = settings.codeToErr ? this.codeToErr.bind(this) : null;
        this.messageTransform = settings.messageTransform ? settings.messageTransform : defaultTransform;
        this.serialCounter = 0;
        this.requests = new PendingTable(settings.expireRequest);
        this.stream = null; // the open transport, like the original's JSON stream
        this.opening = null; // the transport of a connect attempt under way
        this.reconnecting = false;
        this.writer = null; // requests waiting to be written on `stream`
        this.closedByCaller = false;
        this.reconnectTimer = null;
        this.reconnectAttempt = 0;
        this.stats = { sent: 0, received: 0, timeouts: 0, pushes: 0 };
        this.statsTimer = null;
      }

      get requestCount() {
        return this.requests.size;
      }

      /**
       * 'connected', 'connecting' (connect() under way), 'reconnecting' (waiting for or making a
       * reconnect attempt), 'closed' (by close()) or 'disconnected' (never connected, connect
       * failed, or the connection ended with no reconnect to come).
       */
      get state() {
        if (this.stream) return 'connected';
        if (this.closedByCaller) return 'closed';
        if (this.reconnectTimer || (this.opening && this.reconnecting)) return 'reconnecting';
        if (this.opening) return 'connecting';
        return 'disconnected';
      }

      /** Bytes of requests not yet flushed to the connection (queued or in the socket's buffer). */
      get queuedBytes() {
        return this.writer ? this.writer.queuedBytes + this.writer.inTransportBytes : 0;
      }

      /** The original's codeToErr rule: a top-level `code`, else `data.code`. */
      codeToErr(msg) {
        let err = null;
        if (msg.code) {
          err = msg;
        } else if (msg.data && msg.data.code) {
          err = msg.data;
        }
        return [err, msg.data];
      }

      logDebug(level, message, data = '') {
        if (this.logger) {
          this.logger.debug(level, message, data);
        }
      }

      logError(code, message, data) {
        if (this.logger) {
          this.logger.error(code, message, data);
        }
      }

      /** An error value: the original's string, or an IPCError with errorObjects. */
      makeError(code, message, detail) {
        return this.options.errorObjects ? new IPCError(code, message, detail) : code;
      }

      nextID() {
        return 'rq' + this.serialCounter++;
      }

      connect(callback) {
        return settle(callback, (done) => {
          this.closedByCaller = false;
          this.reconnecting = false;
          this.open((err) => {
            if (err) {
              done(this.makeError(ERRORS.SOCKET, 'cannot connect to ' + this.path + ': ' + (err.message || err), err));
            } else {
              this.startStats();
              done(null);
            }
          });
        });
      }

      /**
       * Opens the transport; `done(err)` once: on open, on failure before opening, or after
       * connectTimeout ms (the attempt is then destroyed), whatever the server does.
       */
      open(done) {
        let settled = false;
        let transport = null;
        const limit = Math.min(this.options.connectTimeout, MAX_TIMER_MS);
        const timer = setTimeout(() => {
          const err = new Error(`no connection within ${limit} ms`);
          err.code = ERRORS.CONNECT_TIMEOUT;
          this.logError(ERRORS.SOCKET, 'connect attempt timed out', this.path);
          finish(err);
          if (transport) transport.destroy();
        }, limit);
        const finish = (err) => {
          if (settled) {
            return;
          }
          settled = true;
          clearTimeout(timer);
          if (transport && this.opening === transport) {
            this.opening = null;
          }
          done(err);
        };
        const handlers = {
          onOpen: () => {
            if (settled) {
              transport.destroy();
              return;
            }
            this.stream = transport;
            this.writer = { transport, queue: [], queuedBytes: 0, inTransportBytes: 0, pumping: false };
            this.logDebug(8, 'connection created', this.path);
            finish(null);
          },
          onLine: (line) => {
            if (this.stream === transport) this.handleLine(line);
          },
          onTooLong: (bytes, head, tail) => this.handleTooLong(bytes, head, tail),
          onError: (err) => {
            this.logError(ERRORS.SOCKET, 'Unexpected socket error', err);
            finish(err);
          },
          onClose: (reason) => {
            if (!settled) {
              finish(new Error(reason));
            } else if (this.stream === transport) {
              this.stream = null;
              this.writer = null;
              this.connectionEnded(reason);
            }
          },
        };
        try {
          transport = openTransport(this.path, Object.assign({}, this.options, { maxReplyBytes: this.maxReplyBytes }), handlers);
        } catch (err) {
          settled = true;
          clearTimeout(timer);
          throw err;
        }
        if (!settled) {
          this.opening = transport;
        }
      }

      /** The connection ended: settle what is in flight (the original left it hanging). */
      connectionEnded(reason) {
        this.logDebug(8, 'server disconnected', reason);
        const code = this.closedByCaller ? ERRORS.CLOSED : ERRORS.CONNECTION_CLOSED;
        const failed = this.requests.settleAll(this.makeError(code, 'connection ended: ' + reason));
        if (failed > 0) {
          this.logDebug(5, `${failed} requests failed: ${code}`);
        }
        this.emit('disconnect', reason);
        if (!this.closedByCaller) {
          this.scheduleReconnect();
        }
      }

      reconnectDelay(attempt) {
        const policy = this.options.reconnect;
        if (!policy) {
          return this.autoReconnect > 0 ? this.autoReconnect : null;
        }
        if (policy.maxRetries != null && attempt > policy.maxRetries) {
          return null;
        }
        const growth = policy.growthRate || 2;
        const ceiling = policy.maxDelayMs || 30000;
        const base = Math.min(policy.intervalMs * Math.pow(growth, attempt - 1), ceiling);
        const jitter = policy.jitter || 0;
        return Math.min(ceiling, Math.max(0, base * (1 + jitter * (2 * Math.random() - 1))));
      }

      scheduleReconnect() {
        if (this.reconnectTimer || this.opening) {
          return;
        }
        this.reconnectAttempt += 1;
        const delay = this.reconnectDelay(this.reconnectAttempt);
        if (delay == null) {
          this.reconnecting = false;
          if (this.autoReconnect || this.options.reconnect) {
            this.logError('reconnect_failed', `gave up reconnecting after ${this.reconnectAttempt - 1} attempts`);
            this.emit('reconnect_failed', this.reconnectAttempt - 1);
          }
          return;
        }
        this.reconnecting = true;
        this.logDebug(5, 'Auto reconnect in ' + Math.round(delay) + ' ms');
        this.reconnectTimer = setTimeout(() => {
          this.reconnectTimer = null;
          if (this.closedByCaller) {
            return;
          }
          this.open((err) => {
            if (this.closedByCaller) {
              return;
            }
            if (err) {
              this.scheduleReconnect();
            } else {
              this.reconnectAttempt = 0;
              this.reconnecting = false;
              this.emit('reconnect');
            }
          });
        }, Math.min(delay, MAX_TIMER_MS));
      }

      send(uri, data, callback = null) {
        return settle(callback, (done) => {
          if (!this.stream) {
            this.logError(ERRORS.NO_STREAM, 'No valid stream is open');
            done(this.makeError(ERRORS.NO_STREAM, 'No valid stream is open'));
            return;
          }
          const msg = {
            ipcReqID: this.nextID(),
            uri: uri,
            data: data,
            pid: environment.pid(),
            userAgent: this.userAgent,
          };
          const line = JSON.stringify(msg) + '\n';
          const bytes = environment.byteLength(line);
          if (bytes - 1 > this.options.maxMessageBytes) {
            this.logError(ERRORS.MESSAGE_TOO_LARGE, 'request exceeds maxMessageBytes', { uri });
            done(this.makeError(ERRORS.MESSAGE_TOO_LARGE, 'request exceeds maxMessageBytes'));
            return;
          }
          const writer = this.writer;
          const waiting = writer.queuedBytes + writer.inTransportBytes;
          // One request always fits when nothing waits, however large (up to maxMessageBytes).
          if (waiting > 0 && waiting + bytes > this.options.maxWriteQueueBytes) {
            this.logError(ERRORS.WRITE_QUEUE_FULL, 'requests waiting to be written exceed maxWriteQueueBytes', { uri, waiting });
            done(this.makeError(ERRORS.WRITE_QUEUE_FULL, `${waiting} bytes of requests already wait to be written (maxWriteQueueBytes ${this.options.maxWriteQueueBytes})`));
            return;
          }
          const entry = { id: msg.ipcReqID, line, bytes, state: 'queued' };
          this.requests.add(msg.ipcReqID, done, this.requestTimeout, (callback) => {
            this.stats.timeouts += 1;
            // Its caller has given up: if it was not written yet, it never will be.
            this.dropQueued(writer, entry);
            // The original's text, which users grep their logs for.
            this.logError(ERRORS.TIMEOUT, 'IPCClient request expired: ' + uri, msg);
            callback(this.makeError(ERRORS.TIMEOUT, `no reply to ${uri} within ${this.requestTimeout} ms`));
          });
          writer.queue.push(entry);
          writer.queuedBytes += bytes;
          this.pump(writer);
        });
      }

      dropQueued(writer, entry) {
        if (entry.state === 'queued') {
          entry.state = 'dropped';
          entry.line = null;
          writer.queuedBytes -= entry.bytes;
        }
      }

      /**
       * Hands queued requests to the transport while less than ~1 MiB of what it was given is
       * unflushed, so requests wait here (where a timeout can still drop them) and not in the
       * socket's buffer.
       */
      pump(writer) {
        if (writer.pumping) {
          return;
        }
        writer.pumping = true;
        try {
          while (writer.queue.length > 0 && writer.inTransportBytes < TRANSPORT_HIGH_WATER && this.writer === writer) {
            const entry = writer.queue.shift();
            if (entry.state !== 'queued') {
              continue;
            }
            if (!this.requests.has(entry.id)) {
              this.dropQueued(writer, entry);
              continue;
            }
            entry.state = 'written';
            writer.queuedBytes -= entry.bytes;
            writer.inTransportBytes += entry.bytes;
            const line = entry.line;
            entry.line = null;
            this.stats.sent += 1;
            writer.transport.write(line, () => {
              writer.inTransportBytes -= entry.bytes;
              if (this.writer === writer) {
                this.pump(writer);
              }
            });
          }
        } finally {
          writer.pumping = false;
        }
      }

      handleLine(line) {
        if (line.trimStart()[0] !== '{') {
          this.failUnreadable(line, line, ERRORS.BAD_REPLY, 'the reply is not a JSON object');
          return;
        }
        let msg;
        try {
          msg = JSON.parse(line);
        } catch (err) {
          if (!this.failUnreadable(line, line, ERRORS.BAD_REPLY, 'the reply is not valid JSON: ' + err.message)) {
            this.logError('stream_err', 'Got error from stream: ', err);
          }
          return;
        }
        this.handleIPCRequest(msg);
      }

      /** Fails the request whose id a broken line carries, if one waits for it; true if so. */
      failUnreadable(head, tail, code, message) {
        const id = findRequestID(head, tail);
        if (!id || !this.requests.has(id)) {
          return false;
        }
        const callback = this.requests.take(id);
        this.logError(code, message, id);
        callback(this.makeError(code, message, { ipcReqID: id }));
        return true;
      }

      handleTooLong(bytes, head, tail) {
        const message = `reply of ${bytes} bytes exceeds maxReplyBytes (${this.maxReplyBytes}); discarded`;
        if (!this.failUnreadable(head || '', tail || '', ERRORS.REPLY_TOO_LARGE, message)) {
          this.logError(ERRORS.MESSAGE_TOO_LARGE, message);
        }
      }

      handleIPCRequest(msg) {
        if (msg && msg.ipcReqID) {
          let err = null;
          let data = msg.data;
          if (this.messageTransform) {
            [err, data] = this.messageTransform(msg);
          }
          const callback = this.requests.take(msg.ipcReqID);
          if (callback === 'expired') {
            this.logDebug(8, 'late reply after a timeout ignored', msg.ipcReqID);
          } else if (callback) {
            this.stats.received += 1;
            callback(err, data);
          } else {
            this.logError('ipc_req_not_found', 'Could not find request ID' + msg.ipcReqID + ' in request list', msg);
          }
        } else {
          // A push, or an error the server could not tie to a request.
          this.stats.pushes += 1;
          this.emit('data', msg);
          this.logDebug(8, 'Server message with no request ID', msg);
        }
      }

      startStats() {
        const interval = this.options.logStatsInterval;
        if (!interval || this.statsTimer) {
          return;
        }
        this.statsTimer = setInterval(() => {
          this.logDebug(5, 'IPCClient stats', Object.assign({ pending: this.requests.size }, this.stats));
        }, Math.min(interval, MAX_TIMER_MS));
        if (this.statsTimer.unref) {
          this.statsTimer.unref();
        }
      }

      /**
       * Ends the connection and settles once it is closed: the server gets closeTimeout ms to
       * close its side, then the connection is cut, so this never waits on the server.
       */
      close(callback) {
        return settle(callback, (done) => {
          this.closedByCaller = true;
          this.reconnecting = false;
          if (this.reconnectTimer) {
            clearTimeout(this.reconnectTimer);
            this.reconnectTimer = null;
          }
          if (this.statsTimer) {
            clearInterval(this.statsTimer);
            this.statsTimer = null;
          }
          if (this.opening) {
            this.opening.destroy();
          }
          this.requests.clear();
          const stream = this.stream;
          if (!stream) {
            done(null);
            return;
          }
          this.stream = null;
          this.writer = null;
          this.connectionEnded('closed by the caller');
          stream.end(() => done(null), Math.min(this.options.closeTimeout, MAX_TIMER_MS));
        });
      }
    }

    IPCClient.IPCClient = IPCClient;
    // The browser global's name, so every entry exports the same names.
    IPCClient.PixlIPCClient = IPCClient;
    IPCClient.IPCError = IPCError;
    IPCClient.ERRORS = ERRORS;
    IPCClient.DEFAULTS = DEFAULTS;
    return IPCClient;
  }

  const api = { defineClient, IPCError };
  if (typeof module === 'object' && module.exports) {
    module.exports = api;
  } else {
    root.PixlIPC = Object.assign(root.PixlIPC || {}, api);
  }
})(typeof globalThis !== 'undefined' ? globalThis : this);
