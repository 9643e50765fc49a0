'use strict';
// The requests waiting for replies. Each settles exactly once: reply, timeout, or failure.
(function (root) {
  class PendingTable {
    /**
     * @param {number} expireRequest ms a timed-out id is remembered, so its late reply is
     *   recognised and dropped quietly instead of being reported as unknown.
     */
    constructor(expireRequest) {
      this.expireRequest = expireRequest;
      this.waiting = new Map();
      this.expired = new Map();
    }

    get size() {
      return this.waiting.size;
    }

    /**
     * Registers `id`; `onTimeout` runs if nothing settles it within `timeoutMs` (Infinity: no
     * timeout; above 2^31-1 ms, which setTimeout would turn into 1 ms, it is clamped).
     */
    add(id, callback, timeoutMs, onTimeout) {
      let timer = null;
      if (timeoutMs !== Infinity) {
        timer = setTimeout(() => {
          if (this.waiting.delete(id)) {
            this.rememberExpired(id);
            onTimeout(callback);
          }
        }, Math.min(timeoutMs, 2147483647));
        if (timer.unref) {
          timer.unref();
        }
      }
      this.waiting.set(id, { callback, timer });
    }

    /** Whether `id` still waits for its reply. */
    has(id) {
      return this.waiting.has(id);
    }

    /** Removes and returns the callback for `id`; 'expired' for a timed-out id; null if unknown. */
    take(id) {
      const entry = this.waiting.get(id);
      if (entry) {
        this.waiting.delete(id);
        clearTimeout(entry.timer);
        return entry.callback;
      }
      return this.expired.has(id) ? 'expired' : null;
    }

    /** Settles every waiting request with `err`. */
    settleAll(err) {
      const entries = Array.from(this.waiting.values());
      this.waiting.clear();
      for (const { callback, timer } of entries) {
        clearTimeout(timer);
        callback(err);
      }
      return entries.length;
    }

    rememberExpired(id) {
      const timer = setTimeout(() => this.expired.delete(id), Math.min(this.expireRequest, 2147483647));
      if (timer.unref) {
        timer.unref();
      }
      this.expired.set(id, timer);
    }

    clear() {
      for (const timer of this.expired.values()) {
        clearTimeout(timer);
      }
      this.expired.clear();
    }
  }

  const api = { PendingTable };
  if (typeof module === 'object' && module.exports) {
    module.exports = api;
  } else {
    root.PixlIPC = Object.assign(root.PixlIPC || {}, api);
  }
})(typeof globalThis !== 'undefined' ? globalThis : this);
