'use strict';
// The client itself, independent of where it runs: Node (index.js) and the browser
// (browser.js) each give it an event emitter class and a transport opener.
(function (root) {
  const shared =
    typeof module === 'object' && module.exports
      ? Object.assign({}, require('./constants'), require('./pending'))
      : root.PixlIPC;
  const { DEFAULTS, ERRORS, PendingTable } = shared;

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

  function validateOptions(options) {
    if (options === null || typeof options !== 'object') {
      throw new TypeError('options must be an object');
    }
    const numbers = ['requestTimeout', 'expireRequest', 'autoReconnect', 'maxMessageBytes'];
    for (const name of numbers) {
      if (options[name] !== undefined && (typeof options[name] !== 'number' || options[name] < 0)) {
        throw new TypeError(`options.${name} must be a non-negative number of ms/bytes`);
      }
    }
    for (const name of ['messageTransform']) {
      if (options[name] != null && typeof options[name] !== 'function') {
        throw new TypeError(`options.${name} must be a function`);
      }
    }
    if (options.reconnect != null) {
      const { intervalMs, growthRate, maxRetries } = options.reconnect;
      if (typeof intervalMs !== 'number' || intervalMs <= 0) {
        throw new TypeError('options.reconnect.intervalMs must be a positive number');
      }
      if (growthRate !== undefined && (typeof growthRate !== 'number' || growthRate < 1)) {
        throw new TypeError('options.reconnect.growthRate must be a number >= 1');
      }
      if (maxRetries !== undefined && maxRetries !== null && !Number.isInteger(maxRetries)) {
        throw new TypeError('options.reconnect.maxRetries must be an integer or null');
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
        this.requestTimeout = settings.requestTimeout || DEFAULTS.requestTimeout;
        this.userAgent = settings.userAgent ? settings.userAgent : environment.defaultUserAgent();
        this.autoReconnect = settings.autoReconnect;
        const defaultTransform = settings.codeToErr ? this.codeToErr.bind(this) : null;
        this.messageTransform = settings.messageTransform ? settings.messageTransform : defaultTransform;
        this.serialCounter = 0;
        this.requests = new PendingTable(settings.expireRequest);
        this.stream = null; // the open transport, like the original's JSON stream
        this.closedByCaller = false;
        this.reconnectTimer = null;
        this.reconnectAttempt = 0;
        this.stats = { sent: 0, received: 0, timeouts: 0, pushes: 0 };
        this.statsTimer = null;
      }

      get requestCount() {
        return this.requests.size;
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
          this.open((err) => {
            if (err) {
              done(this.makeError(ERRORS.SOCKET, 'cannot connect to ' + this.path, err));
            } else {
              this.startStats();
              done(null);
            }
          });
        });
      }

      /** Opens the transport; `done(err)` once, on open or on failure before opening. */
      open(done) {
        let opened = false;
        const transport = openTransport(this.path, this.options, {
          onOpen: () => {
            opened = true;
            this.stream = transport;
            this.logDebug(8, 'connection created', this.path);
            done(null);
          },
          onLine: (line) => this.handleLine(line),
          onTooLong: (bytes) => this.handleTooLong(bytes),
          onError: (err) => {
            this.logError(ERRORS.SOCKET, 'Unexpected socket error', err);
            if (!opened) {
              opened = true;
              done(err);
            }
          },
          onClose: (reason) => {
            if (this.stream === transport) {
              this.stream = null;
              this.connectionEnded(reason);
            }
          },
        });
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
        if (this.reconnectTimer) {
          return;
        }
        this.reconnectAttempt += 1;
        const delay = this.reconnectDelay(this.reconnectAttempt);
        if (delay == null) {
          if (this.autoReconnect || this.options.reconnect) {
            this.logError('reconnect_failed', `gave up reconnecting after ${this.reconnectAttempt - 1} attempts`);
            this.emit('reconnect_failed', this.reconnectAttempt - 1);
          }
          return;
        }
        this.logDebug(5, 'Auto reconnect in ' + Math.round(delay) + ' ms');
        this.reconnectTimer = setTimeout(() => {
          this.reconnectTimer = null;
          if (this.closedByCaller) {
            return;
          }
          this.open((err) => {
            if (err) {
              this.scheduleReconnect();
            } else {
              this.reconnectAttempt = 0;
              this.emit('reconnect');
            }
          });
        }, delay);
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
          const line = JSON.stringify(msg);
          if (environment.byteLength(line) > this.options.maxMessageBytes) {
            this.logError(ERRORS.MESSAGE_TOO_LARGE, 'request exceeds maxMessageBytes', { uri });
            done(this.makeError(ERRORS.MESSAGE_TOO_LARGE, 'request exceeds maxMessageBytes'));
            return;
          }
          this.requests.add(msg.ipcReqID, done, this.requestTimeout, (callback) => {
            this.stats.timeouts += 1;
            this.logError(ERRORS.TIMEOUT, 'IPCClient request expired', msg);
            callback(this.makeError(ERRORS.TIMEOUT, `no reply to ${uri} within ${this.requestTimeout} ms`));
          });
          this.stats.sent += 1;
          this.stream.write(line + '\n');
        });
      }

      handleLine(line) {
        if (line.trimStart()[0] !== '{') {
          return;
        }
        let msg;
        try {
          msg = JSON.parse(line);
        } catch (err) {
          this.logError('stream_err', 'Got error from stream: ', err);
          return;
        }
        this.handleIPCRequest(msg);
      }

      handleTooLong(bytes) {
        this.logError(ERRORS.MESSAGE_TOO_LARGE, `reply of ${bytes} bytes exceeds maxMessageBytes; discarded`);
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
        }, interval);
        if (this.statsTimer.unref) {
          this.statsTimer.unref();
        }
      }

      close(callback) {
        return settle(callback, (done) => {
          this.closedByCaller = true;
          if (this.reconnectTimer) {
            clearTimeout(this.reconnectTimer);
            this.reconnectTimer = null;
          }
          if (this.statsTimer) {
            clearInterval(this.statsTimer);
            this.statsTimer = null;
          }
          this.requests.clear();
          const stream = this.stream;
          if (!stream) {
            done(null);
            return;
          }
          this.stream = null;
          this.connectionEnded('closed by the caller');
          stream.end(() => done(null));
        });
      }
    }

    IPCClient.IPCClient = IPCClient;
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
