'use strict';
// The requests waiting for replies. Each settles exactly once: reply, timeout, or failure.
(function (root) {
  // setTimeout turns any delay above 2^31-1 ms into 1 ms.
  const MAX_TIMER_MS = 2147483647;
  const now =
    typeof performance !== 'undefined' && typeof performance.now === 'function'
      ? () => performance.now()
      : () => Date.now();

  class PendingTable {
    /**
     * @param {number} expireRequest ms a timed-out id is remembered, so its late reply is
     *   recognised and dropped quietly instead of being reported as unknown.
     */
    constructor(expireRequest) {
      this.expireRequest = expireRequest;
      this.waiting = new Map(); // id -> {callback, deadline, onTimeout, context}, in the order added
      this.expired = new Map();
      // One timer for every request, armed for the earliest deadline, instead of a setTimeout
      // and clearTimeout per request (most requests are answered long before their deadline).
      this.timer = null;
      this.armedFor = Infinity; // the deadline `timer` fires at
      // The one timeout every request so far was added with (null: none yet; NaN: mixed). While
      // it is one, deadlines grow in the order added and a sweep stops at the first live one.
      this.sameTimeout = null;
    }

    get size() {
      return this.waiting.size;
    }

    /**
     * Registers `id`; `onTimeout(callback, context)` runs if nothing settles it within
     * `timeoutMs` (Infinity: no timeout; above 2^31-1 ms it is clamped, as setTimeout would
     * misread it). `context` lets many requests share one onTimeout function.
     */
    add(id, callback, timeoutMs, onTimeout, context = null) {
      let deadline = Infinity;
      if (timeoutMs !== Infinity) {
        const ms = Math.min(timeoutMs, MAX_TIMER_MS);
        deadline = now() + ms;
        if (this.sameTimeout === null) {
          this.sameTimeout = ms;
        } else if (this.sameTimeout !== ms) {
          this.sameTimeout = NaN;
        }
        if (deadline < this.armedFor) {
          this.arm(deadline);
        }
      }
      this.waiting.set(id, { callback, deadline, onTimeout, context });
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
        // The timer stays armed (no timer call per reply): when it fires it finds this one gone
        // and re-arms for the earliest request still waiting, if any.
        if (this.waiting.size === 0) {
          this.sameTimeout = null;
        }
        return entry.callback;
      }
      return this.expired.has(id) ? 'expired' : null;
    }

    /** Settles every waiting request with `err`. */
    settleAll(err) {
      const entries = Array.from(this.waiting.values());
      this.waiting.clear();
      this.disarm();
      for (const { callback } of entries) {
        callback(err);
      }
      return entries.length;
    }

    arm(deadline) {
      if (this.timer !== null) {
        clearTimeout(this.timer);
      }
      this.armedFor = deadline;
      this.timer = setTimeout(() => this.sweep(), Math.max(1, Math.ceil(deadline - now())));
      if (this.timer.unref) {
        this.timer.unref();
      }
    }

    disarm() {
      if (this.timer !== null) {
        clearTimeout(this.timer);
        this.timer = null;
      }
      this.armedFor = Infinity;
      this.sameTimeout = null;
    }

    /** The timer fired: times out every request whose deadline has passed, re-arms for the rest. */
    sweep() {
      this.timer = null;
      this.armedFor = Infinity;
      const at = now();
      const due = [];
      let next = Infinity;
      for (const [id, entry] of this.waiting) {
        if (entry.deadline <= at) {
          due.push([id, entry]);
        } else if (entry.deadline < next) {
          next = entry.deadline;
          if (this.sameTimeout === this.sameTimeout) {
            break; // one timeout for all (not NaN): every later deadline is later still
          }
        }
      }
      // Re-armed first, so a callback that adds a request leaves a timer for it either way.
      if (next !== Infinity) {
        this.arm(next);
      } else if (due.length === this.waiting.size) {
        this.sameTimeout = null; // nothing left waiting with a timeout
      }
      for (const [id, entry] of due) {
        // A callback run earlier in this loop may have settled it (close(), say).
        if (this.waiting.get(id) === entry) {
          this.waiting.delete(id);
          this.rememberExpired(id);
          entry.onTimeout(entry.callback, entry.context);
        }
      }
    }

    rememberExpired(id) {
      const timer = setTimeout(() => this.expired.delete(id), Math.min(this.expireRequest, MAX_TIMER_MS));
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

  /**
   * A first-in first-out list whose shift() takes constant time. Array#shift moves every
   * element left: a burst of 20,000 requests, most of them waiting in the write queue, spent
   * 0.7 s of CPU shifting that queue.
   */
  class Fifo {
    constructor() {
      this.items = [];
      this.head = 0; // index of the first item
    }

    get length() {
      return this.items.length - this.head;
    }

    push(item) {
      this.items.push(item);
    }

    shift() {
      if (this.head === this.items.length) {
        return undefined;
      }
      const item = this.items[this.head];
      this.items[this.head] = undefined;
      this.head += 1;
      if (this.head === this.items.length) {
        this.items.length = 0;
        this.head = 0;
      } else if (this.head >= 1024 && this.head * 2 >= this.items.length) {
        // Mostly taken: the rest moves to the front once, not on every shift.
        this.items = this.items.slice(this.head);
        this.head = 0;
      }
      return item;
    }
  }

  const api = { PendingTable, Fifo };
  if (typeof module === 'object' && module.exports) {
    module.exports = api;
  } else {
    root.PixlIPC = Object.assign(root.PixlIPC || {}, api);
  }
})(typeof globalThis !== 'undefined' ? globalThis : this);
