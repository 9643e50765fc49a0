'use strict';
// A small EventEmitter for the browser entry (Node uses node:events). A CommonJS module for
// bundlers, or a plain <script> that adds to the PixlIPC global.
(function (root) {
  class Emitter {
    constructor() {
      this.listeners = new Map();
    }

    addListener(event, listener) {
      return this.on(event, listener);
    }

    on(event, listener) {
      if (!this.listeners.has(event)) {
        this.listeners.set(event, []);
      }
      this.listeners.get(event).push(listener);
      return this;
    }

    prependListener(event, listener) {
      this.listeners.set(event, [listener].concat(this.listeners.get(event) || []));
      return this;
    }

    once(event, listener) {
      return this.on(event, this.onceWrapper(event, listener));
    }

    prependOnceListener(event, listener) {
      return this.prependListener(event, this.onceWrapper(event, listener));
    }

    onceWrapper(event, listener) {
      const wrapped = (...args) => {
        this.off(event, wrapped);
        listener(...args);
      };
      wrapped.listener = listener;
      return wrapped;
    }

    /** Removes the last registration of `listener` (also one made with once), as Node does. */
    off(event, listener) {
      const list = (this.listeners.get(event) || []).slice();
      for (let i = list.length - 1; i >= 0; i--) {
        if (list[i] === listener || list[i].listener === listener) {
          list.splice(i, 1);
          break;
        }
      }
      this.listeners.set(event, list);
      return this;
    }

    removeListener(event, listener) {
      return this.off(event, listener);
    }

    removeAllListeners(event) {
      if (event === undefined) {
        this.listeners.clear();
      } else {
        this.listeners.delete(event);
      }
      return this;
    }

    emit(event, ...args) {
      const list = (this.listeners.get(event) || []).slice();
      list.forEach((listener) => listener(...args));
      return list.length > 0;
    }

    listenerCount(event) {
      return (this.listeners.get(event) || []).length;
    }

    listeners(event) {
      return this.rawListeners(event).map((listener) => listener.listener || listener);
    }

    rawListeners(event) {
      return (this.listeners.get(event) || []).slice();
    }

    eventNames() {
      return Array.from(this.listeners.keys()).filter((event) => this.listenerCount(event) > 0);
    }

    // No leak warnings in the browser: kept for code written against Node's EventEmitter.
    setMaxListeners(count) {
      this.maxListeners = count;
      return this;
    }

    getMaxListeners() {
      return this.maxListeners === undefined ? 10 : this.maxListeners;
    }
  }

  const api = { Emitter };
  if (typeof module === 'object' && module.exports) {
    module.exports = api;
  } else {
    root.PixlIPC = Object.assign(root.PixlIPC || {}, api);
  }
})(typeof globalThis !== 'undefined' ? globalThis : this);
