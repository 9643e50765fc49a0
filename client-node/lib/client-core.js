'use strict';
// The client itself, independent of where it runs: Node (index.js) and the browser
// (browser.js) each give it an event emitter class and a transport opener.
(function (root) {
  const shared =
    typeof module === 'object' && module.exports
      ? Object.assign({}, require('./constants'), require('./pending'), require('./line-splitter'))
      : root.PixlIPC;
  const { DEFAULTS, ERRORS, PendingTable, Fifo, findRequestID } = shared;

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
    for (const name of ['maxMessageBytes', 'maxReplyBytes', 'maxWriteQueueBytes', 'maxStreamBufferBytes']) {
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

  /**
   * The replies to one streamed request (client.stream()): an async iterator over its items.
   * The request is sent on the first next(). Lines come in through deliver()/end() from the
   * client; items the consumer has not taken wait in `items` (bounded by maxBufferBytes, see
   * IPCClient#streamOverLimit). return() (a `break` out of `for await`) cancels it on the server.
   */
  class ReplyStream {
    constructor(client, uri, data, timeoutMs, maxBufferBytes) {
      this.client = client;
      this.uri = uri;
      this.data = data;
      this.timeoutMs = timeoutMs;
      this.maxBufferBytes = maxBufferBytes;
      this.id = null;
      this.msg = null;
      this.entry = null; // its request in the write queue
      this.writer = null; // the connection it was sent on
      this.started = false;
      this.items = []; // [{value, size}] not yet taken by the consumer
      this.bufferedBytes = 0;
      this.ended = false; // no more lines will be taken for it (final line, failure, or return())
      this.error = null;
      this.errorPending = false; // an error the consumer has not been given yet
      this.waiters = []; // next() calls waiting for a line
      this.timer = null;
    }

    [Symbol.asyncIterator]() {
      return this;
    }

    next() {
      if (!this.started) {
        this.started = true;
        this.client.startStream(this);
      }
      if (this.items.length > 0) {
        return Promise.resolve(this.take());
      }
      if (this.ended) {
        return this.settled();
      }
      return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
    }

    /** Stops early (what `break` in `for await` calls): cancels it on the server, drops what is buffered. */
    return(value) {
      this.started = true;
      this.stop();
      return Promise.resolve({ value, done: true });
    }

    throw(err) {
      this.started = true;
      this.stop();
      return Promise.reject(err);
    }

    /** The same as return(), for code that holds the stream outside a loop. */
    cancel() {
      this.return();
    }

    stop() {
      this.clearTimer();
      this.errorPending = false;
      if (!this.ended) {
        this.ended = true;
        this.client.cancelStream(this);
      }
      this.items = [];
      this.bufferedBytes = 0;
      this.client.streamDrained(this);
      const waiters = this.waiters;
      this.waiters = [];
      waiters.forEach((waiter) => waiter.resolve({ value: undefined, done: true }));
    }

    take() {
      const item = this.items.shift();
      this.bufferedBytes -= item.size;
      this.client.streamDrained(this);
      this.armTimer();
      return { value: item.value, done: false };
    }

    /** What a next() gets once everything was taken: the error once, then done. */
    settled() {
      if (this.errorPending) {
        this.errorPending = false;
        return Promise.reject(this.error);
      }
      return Promise.resolve({ value: undefined, done: true });
    }

    /** An item (or, `final`, the final line's value) arrived. */
    deliver(value, size, final = false) {
      this.clearTimer();
      if (this.waiters.length > 0) {
        this.waiters.shift().resolve({ value, done: false });
      } else {
        this.items.push({ value, size });
        this.bufferedBytes += size;
        // One item always fits, however large (it is within maxReplyBytes); the final value
        // too, since nothing comes after it.
        if (!final && this.bufferedBytes > this.maxBufferBytes && this.items.length > 1) {
          this.client.streamOverLimit(this);
        }
      }
      this.armTimer();
    }

    /** No more lines: the final one came (err null or its error) or the stream failed. */
    end(err) {
      if (this.ended) {
        return;
      }
      this.ended = true;
      this.clearTimer();
      if (err) {
        this.error = err;
        this.errorPending = true;
      }
      const waiters = this.waiters;
      this.waiters = [];
      for (const waiter of waiters) {
        // Waiters exist only while nothing is buffered: the first gets the error, if any.
        if (this.errorPending) {
          this.errorPending = false;
          waiter.reject(err);
        } else {
          waiter.resolve({ value: undefined, done: true });
        }
      }
    }

    /** The request timeout runs while the stream waits for its next line with nothing buffered. */
    armTimer() {
      if (this.ended || this.items.length > 0 || this.timer || this.timeoutMs === Infinity) {
        return;
      }
      this.timer = setTimeout(() => {
        this.timer = null;
        this.client.streamTimedOut(this);
      }, Math.min(this.timeoutMs, MAX_TIMER_MS));
      if (this.timer.unref) {
        this.timer.unref();
      }
    }

    clearTimer() {
      if (this.timer) {
        clearTimeout(this.timer);
        this.timer = null;
      }
    }
  }

  /** The callback form of client.stream(): runs the iterator, hands each item to onItem. */
  function runStreamCallbacks(replies, onItem, onEnd) {
    (async () => {
      let failure = null;
      try {
        for await (const item of replies) {
          const result = onItem(item);
          // A promise from onItem is awaited: the next item waits, so backpressure works.
          if (result && typeof result.then === 'function') {
            await result;
          }
        }
      } catch (err) {
        failure = err;
      }
      if (typeof onEnd === 'function') {
        onEnd(failure);
      } else if (failure) {
        replies.client.logError('stream_err', 'streamed request to ' + replies.uri + ' failed (no onEnd callback)', failure);
      }
    })();
    return { cancel: () => replies.cancel() };
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
        // Streams apply only a transform the user wrote (their final lines always use codeToErr's rule).
        this.userTransform = settings.messageTransform || null;
        this.serialCounter = 0;
        this.requests = new PendingTable(settings.expireRequest);
        this.requestTimedOut = this.requestTimedOut.bind(this);
        this.connection = null; // the open transport (the original called it `stream`; that name is now the stream() method)
        this.opening = null; // the transport of a connect attempt under way
        this.reconnecting = false;
        this.writer = null; // requests waiting to be written on `stream`
        this.closedByCaller = false;
        this.reconnectTimer = null;
        this.reconnectAttempt = 0;
        this.stats = { sent: 0, received: 0, timeouts: 0, pushes: 0 };
        this.streams = new Map(); // ipcReqID -> ReplyStream still taking lines
        this.swallowed = new Map(); // ipcReqID of a stream given up (cancel sent) -> {timer, last}; its lines are dropped
        this.pausedBy = new Set(); // streams whose buffer is over the limit: the connection is not read
        this.statsTimer = null;
      }

      /** Requests waiting for their reply, running streams included. */
      get requestCount() {
        return this.requests.size + this.streams.size;
      }

      /**
       * 'connected', 'connecting' (connect() under way), 'reconnecting' (waiting for or making a
       * reconnect attempt), 'closed' (by close()) or 'disconnected' (never connected, connect
       * failed, or the connection ended with no reconnect to come).
       */
      get state() {
        if (this.connection) return 'connected';
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
            this.connection = transport;
            const writer = { transport, queue: new Fifo(), queuedBytes: 0, inTransportBytes: 0, pumping: false, written: new Fifo(), flushed: null };
            // One callback for every write (Node calls them in write order): each takes the
            // size of the oldest unflushed write off inTransportBytes. A shared function also
            // lets Node batch the callbacks of writes made in one tick.
            // pump() only when something waits: one request at a time it never is, and a call
            // that never runs is not compiled into this callback (V8 inlined pump() and the
            // socket's whole write path into it, and into Node's tick loop that runs it: 60 ms
            // of compiling on the client's CPU in the first 1,000 10K calls).
            writer.flushed = () => {
              writer.inTransportBytes -= writer.written.shift();
              if (writer.queue.length > 0 && this.writer === writer) {
                this.pump(writer);
              }
            };
            this.writer = writer;
            this.logDebug(8, 'connection created', this.path);
            finish(null);
          },
          onLine: (line) => {
            if (this.connection === transport) this.handleLine(line);
          },
          onTooLong: (bytes, head, tail) => this.handleTooLong(bytes, head, tail),
          onError: (err) => {
            this.logError(ERRORS.SOCKET, 'Unexpected socket error', err);
            finish(err);
          },
          onClose: (reason) => {
            if (!settled) {
              finish(new Error(reason));
            } else if (this.connection === transport) {
              this.connection = null;
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
        const failed = this.requests.settleAll(this.makeError(code, 'connection ended: ' + reason)) + this.streams.size;
        const streams = Array.from(this.streams.values());
        this.streams.clear();
        this.pausedBy.clear();
        this.swallowed.forEach((entry) => clearTimeout(entry.timer));
        this.swallowed.clear();
        streams.forEach((replies) => replies.end(this.makeError(code, 'connection ended: ' + reason)));
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
        // settle() written out: a call is the hot path, and this spares it a closure.
        if (typeof callback === 'function') {
          this.startRequest(uri, data, callback);
          return undefined;
        }
        return new Promise((resolve, reject) => {
          this.startRequest(uri, data, (err, result) => (err ? reject(err) : resolve(result)));
        });
      }

      /** Sends one request; `done(err, data)` settles it exactly once. */
      startRequest(uri, data, done) {
        if (!this.connection) {
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
        const entry = this.prepareRequest(msg, uri);
        if (entry.error) {
          done(entry.error);
          return;
        }
        const writer = this.writer;
        entry.writer = writer;
        entry.msg = msg;
        // The entry is the timeout's context: one shared handler, no closure per request.
        this.requests.add(msg.ipcReqID, done, this.requestTimeout, this.requestTimedOut, entry);
        this.enqueue(writer, entry);
      }

      /** A request's timeout (`this` is the client; `entry` its write-queue entry). */
      requestTimedOut(callback, entry) {
        this.stats.timeouts += 1;
        // Its caller has given up: if it was not written yet, it never will be.
        this.dropQueued(entry.writer, entry);
        // The original's text, which users grep their logs for.
        this.logError(ERRORS.TIMEOUT, 'IPCClient request expired: ' + entry.uri, entry.msg);
        callback(this.makeError(ERRORS.TIMEOUT, `no reply to ${entry.uri} within ${this.requestTimeout} ms`));
      }

      /**
       * A write-queue entry for `msg`, or {error} when it cannot be sent (over maxMessageBytes,
       * or the write queue is full).
       */
      prepareRequest(msg, uri) {
        // Encoded once here: the transport writes these bytes as they are, and their count is
        // exact for the limits below without a second pass over the text.
        const { payload, bytes } = environment.encodeLine(JSON.stringify(msg) + '\n');
        if (bytes - 1 > this.options.maxMessageBytes) {
          this.logError(ERRORS.MESSAGE_TOO_LARGE, 'request exceeds maxMessageBytes', { uri });
          return { error: this.makeError(ERRORS.MESSAGE_TOO_LARGE, 'request exceeds maxMessageBytes') };
        }
        const writer = this.writer;
        const waiting = writer.queuedBytes + writer.inTransportBytes;
        // One request always fits when nothing waits, however large (up to maxMessageBytes).
        if (waiting > 0 && waiting + bytes > this.options.maxWriteQueueBytes) {
          this.logError(ERRORS.WRITE_QUEUE_FULL, 'requests waiting to be written exceed maxWriteQueueBytes', { uri, waiting });
          return { error: this.makeError(ERRORS.WRITE_QUEUE_FULL, `${waiting} bytes of requests already wait to be written (maxWriteQueueBytes ${this.options.maxWriteQueueBytes})`) };
        }
        return { id: msg.ipcReqID, line: payload, bytes, state: 'queued', wanted: null, uri, writer: null, msg: null };
      }

      enqueue(writer, entry) {
        writer.queue.push(entry);
        writer.queuedBytes += entry.bytes;
        this.pump(writer);
      }

      /**
       * Streamed replies: `for await (const item of client.stream(uri, data))`, or with
       * callbacks `client.stream(uri, data, [options], onItem, onEnd)` (returns {cancel()}).
       * options: {requestTimeout, maxStreamBufferBytes}, defaulting to the client's.
       */
      stream(uri, data, ...rest) {
        let options = {};
        if (rest.length > 0 && typeof rest[0] !== 'function') {
          options = rest.shift();
          if (options == null) {
            options = {};
          } else if (typeof options !== 'object') {
            throw new TypeError('stream() options must be an object');
          }
        }
        const [onItem, onEnd] = rest;
        if (onItem !== undefined && typeof onItem !== 'function') {
          throw new TypeError('stream() onItem must be a function');
        }
        if (onEnd !== undefined && typeof onEnd !== 'function') {
          throw new TypeError('stream() onEnd must be a function');
        }
        let timeout = this.requestTimeout;
        if (options.requestTimeout !== undefined) {
          checkNumber('requestTimeout', options.requestTimeout, { infinite: true });
          timeout = options.requestTimeout || this.requestTimeout;
        }
        let maxBuffer = this.options.maxStreamBufferBytes;
        if (options.maxStreamBufferBytes !== undefined) {
          checkNumber('maxStreamBufferBytes', options.maxStreamBufferBytes, { min: 1, integer: true, max: Number.MAX_SAFE_INTEGER });
          maxBuffer = options.maxStreamBufferBytes;
        }
        const replies = new ReplyStream(this, uri, data, timeout, maxBuffer);
        return onItem ? runStreamCallbacks(replies, onItem, onEnd) : replies;
      }

      /** Sends a stream's request (its first next()); a failure to send ends it with the error. */
      startStream(replies) {
        if (!this.connection) {
          this.logError(ERRORS.NO_STREAM, 'No valid stream is open');
          replies.end(this.makeError(ERRORS.NO_STREAM, 'No valid stream is open'));
          return;
        }
        const msg = {
          ipcReqID: this.nextID(),
          uri: replies.uri,
          data: replies.data,
          pid: environment.pid(),
          userAgent: this.userAgent,
          ipcStream: true,
        };
        const entry = this.prepareRequest(msg, replies.uri);
        if (entry.error) {
          replies.end(entry.error);
          return;
        }
        entry.wanted = () => this.streams.get(msg.ipcReqID) === replies;
        replies.id = msg.ipcReqID;
        replies.msg = msg;
        replies.entry = entry;
        replies.writer = this.writer;
        this.streams.set(msg.ipcReqID, replies);
        this.enqueue(this.writer, entry);
        replies.armTimer();
      }

      /**
       * The consumer gave up on a stream (return(), a timeout, an overflow): it takes no more
       * lines; if its request was written, the server is told to stop and its later lines are
       * dropped quietly.
       */
      cancelStream(replies) {
        const id = replies.id;
        if (id === null || this.streams.get(id) !== replies) {
          return;
        }
        this.streams.delete(id);
        this.streamDrained(replies);
        const writer = replies.writer;
        if (replies.entry.state === 'queued') {
          this.dropQueued(writer, replies.entry); // never written: nothing to cancel
          return;
        }
        if (this.writer !== writer) {
          return; // that connection is gone, and the stream with it
        }
        this.swallow(id);
        const { payload, bytes } = environment.encodeLine(JSON.stringify({ ipcReqID: id, ipcCancel: true }) + '\n');
        // A cancel is small and frees the server: it is queued even over maxWriteQueueBytes.
        this.enqueue(writer, { id, line: payload, bytes, state: 'queued', wanted: () => true, uri: null, writer: null, msg: null });
      }

      /** Drops the lines of a cancelled stream until its final line, or expireRequest ms of silence. */
      swallow(id) {
        const wait = Math.min(this.options.expireRequest, MAX_TIMER_MS);
        const entry = { timer: null, last: Date.now() };
        const expire = () => {
          // Each dropped line only stamps `last` (no timer per line): re-armed while lines come.
          const quiet = Date.now() - entry.last;
          if (quiet < wait) {
            entry.timer = setTimeout(expire, wait - quiet);
            if (entry.timer.unref) entry.timer.unref();
          } else if (this.swallowed.get(id) === entry) {
            this.swallowed.delete(id);
          }
        };
        entry.timer = setTimeout(expire, wait);
        if (entry.timer.unref) {
          entry.timer.unref();
        }
        this.swallowed.set(id, entry);
      }

      streamTimedOut(replies) {
        this.stats.timeouts += 1;
        this.logError(ERRORS.TIMEOUT, 'IPCClient request expired: ' + replies.uri, replies.msg);
        this.cancelStream(replies);
        replies.end(this.makeError(ERRORS.TIMEOUT, `no reply line from ${replies.uri} within ${replies.timeoutMs} ms`));
      }

      /**
       * A stream holds more unconsumed items than it may. Node: stop reading the connection until
       * it is drained (the server then pauses). Browser (no way to stop a WebSocket reading):
       * cancel the stream; it fails with 'stream_buffer_full' after the items it holds.
       */
      streamOverLimit(replies) {
        const transport = this.connection;
        if (transport && typeof transport.pause === 'function') {
          if (!this.pausedBy.has(replies)) {
            this.pausedBy.add(replies);
            if (this.pausedBy.size === 1) {
              this.logDebug(8, 'stream buffer full: reading paused', replies.id);
              transport.pause();
            }
          }
          return;
        }
        this.logError(ERRORS.STREAM_BUFFER_FULL, `stream ${replies.id} holds ${replies.bufferedBytes} unconsumed bytes (maxStreamBufferBytes ${replies.maxBufferBytes})`, replies.uri);
        this.cancelStream(replies);
        replies.end(this.makeError(ERRORS.STREAM_BUFFER_FULL, `more than ${replies.maxBufferBytes} bytes of items not yet taken from the stream`));
      }

      /** A stream's consumer took items (or it ended): reading resumes once no stream is over its limit. */
      streamDrained(replies) {
        if (!this.pausedBy.has(replies) || (replies.bufferedBytes > replies.maxBufferBytes && this.streams.get(replies.id) === replies)) {
          return;
        }
        this.pausedBy.delete(replies);
        if (this.pausedBy.size === 0 && this.connection) {
          this.logDebug(8, 'stream buffer drained: reading resumed', replies.id);
          this.connection.resume();
        }
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
            // A send is wanted while its caller waits (no closure per request for that).
            if (entry.wanted === null ? !this.requests.has(entry.id) : !entry.wanted()) {
              this.dropQueued(writer, entry);
              continue;
            }
            entry.state = 'written';
            writer.queuedBytes -= entry.bytes;
            writer.inTransportBytes += entry.bytes;
            const line = entry.line;
            entry.line = null;
            this.stats.sent += 1;
            writer.written.push(entry.bytes);
            writer.transport.write(line, writer.flushed);
          }
        } finally {
          writer.pumping = false;
        }
      }

      handleLine(line) {
        if (line.charCodeAt(0) !== 0x7b && line.trimStart()[0] !== '{') {
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
        this.handleIPCRequest(msg, line.length);
      }

      /** Fails the request whose id a broken line carries, if one waits for it; true if so. */
      failUnreadable(head, tail, code, message) {
        const id = findRequestID(head, tail);
        if (id && this.swallowed.has(id)) {
          this.logDebug(8, 'unreadable line of a cancelled stream dropped', id);
          return true;
        }
        const replies = id ? this.streams.get(id) : null;
        if (replies) {
          this.logError(code, message, id);
          this.cancelStream(replies);
          replies.end(this.makeError(code, message, { ipcReqID: id }));
          return true;
        }
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

      handleIPCRequest(msg, size = 0) {
        if (msg && msg.ipcReqID) {
          // (Both maps are usually empty: a plain reply then skips their lookups.)
          const replies = this.streams.size === 0 ? undefined : this.streams.get(msg.ipcReqID);
          if (replies) {
            this.handleStreamLine(replies, msg, size);
            return;
          }
          if (this.swallowed.size !== 0 && this.swallowed.has(msg.ipcReqID)) {
            // A line of a stream the consumer gave up on (an item in flight, or its final line).
            if (msg.ipcMore) {
              this.swallowed.get(msg.ipcReqID).last = Date.now();
            } else {
              clearTimeout(this.swallowed.get(msg.ipcReqID).timer);
              this.swallowed.delete(msg.ipcReqID);
            }
            this.logDebug(8, 'line of a cancelled stream dropped', msg.ipcReqID);
            return;
          }
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

      /**
       * A line for a running stream. Items (`ipcMore`) are yielded as they are. The final line
       * is an error when it has a top-level `code` (cancelled, shutting_down, ...) or a
       * `data.code` (the handler's error), whatever codeToErr says, as the Rust and PHP
       * clients decide; a messageTransform given by the user decides instead.
       */
      handleStreamLine(replies, msg, size) {
        this.stats.received += 1;
        let err = null;
        let data = msg.data;
        if (msg.ipcMore === true) {
          replies.deliver(data, size);
          return;
        }
        if (this.userTransform) {
          [err, data] = this.userTransform(msg);
        } else if (msg.code) {
          err = this.makeError(String(msg.code), msg.message || String(msg.code), msg);
        } else if (data && typeof data === 'object' && data.code) {
          err = this.makeError(String(data.code), data.message || String(data.code), msg);
        }
        this.streams.delete(replies.id);
        if (err) {
          this.streamDrained(replies);
          replies.end(err);
          return;
        }
        if (data !== undefined && data !== null) {
          replies.deliver(data, size, true);
        }
        this.streamDrained(replies);
        replies.end(null);
      }

      startStats() {
        const interval = this.options.logStatsInterval;
        if (!interval || this.statsTimer) {
          return;
        }
        this.statsTimer = setInterval(() => {
          this.logDebug(5, 'IPCClient stats', Object.assign({ pending: this.requestCount }, this.stats));
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
          const stream = this.connection;
          if (!stream) {
            done(null);
            return;
          }
          if (this.pausedBy.size > 0) {
            stream.resume(); // so the server's close can be read
          }
          // Running streams are cancelled first: a server still sending one might otherwise
          // keep its side open after our end until closeTimeout.
          for (const replies of this.streams.values()) {
            if (replies.entry.state === 'written') {
              stream.write(JSON.stringify({ ipcReqID: replies.id, ipcCancel: true }) + '\n');
            }
          }
          this.connection = null;
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
