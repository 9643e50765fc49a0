'use strict';
// A small EventEmitter for the browser entry (Node uses node:events).
(function (root) {
  class Emitter {
    constructor() {
      this.listeners = new Map();
    }

    on(event, listener) {
      if (!this.listeners.has(event)) {
        this.listeners.set(event, []);
      }
      this.listeners.get(event).push(listener);
      return this;
    }

    once(event, listener) {
      const wrapped = (...args) => {
        this.off(event, wrapped);
        listener(...args);
      };
      return this.on(event, wrapped);
    }

    off(event, listener) {
      const list = this.listeners.get(event) || [];
      this.listeners.set(event, list.filter((candidate) => candidate !== listener));
      return this;
    }

    removeListener(event, listener) {
      return this.off(event, listener);
    }

    emit(event, ...args) {
      const list = (this.listeners.get(event) || []).slice();
      list.forEach((listener) => listener(...args));
      return list.length > 0;
    }

    listenerCount(event) {
      return (this.listeners.get(event) || []).length;
    }
  }

  root.PixlIPC = Object.assign(root.PixlIPC || {}, { Emitter });
})(globalThis);
