'use strict';
// Framing, written once: a byte stream cut into lines with a maximum length (UNIX sockets), and
// a frame cut into its newline-separated messages (WebSockets).
(function (root) {
  /**
   * Splits a byte stream into lines. Partial lines wait for their "\n" (also when a multi-byte
   * UTF-8 character is split between chunks, since lines are decoded whole). A line longer than
   * maxBytes is reported once through onTooLong and discarded up to its newline; the next line
   * is delivered normally.
   */
  class LineSplitter {
    constructor(maxBytes, onTooLong) {
      this.maxBytes = maxBytes;
      this.onTooLong = onTooLong || function () {};
      this.chunks = [];
      this.pendingBytes = 0;
      this.discarding = false;
    }

    /** Feeds a Buffer; returns the complete lines it finished, as strings. */
    push(chunk) {
      const lines = [];
      let start = 0;
      for (;;) {
        const end = chunk.indexOf(0x0a, start);
        if (end === -1) {
          break;
        }
        const piece = chunk.subarray(start, end);
        if (this.discarding) {
          this.discarding = false;
        } else if (this.pendingBytes + piece.length > this.maxBytes) {
          this.onTooLong(this.pendingBytes + piece.length);
        } else {
          this.chunks.push(piece);
          lines.push(Buffer.concat(this.chunks).toString('utf8'));
        }
        this.chunks = [];
        this.pendingBytes = 0;
        start = end + 1;
      }
      const rest = chunk.subarray(start);
      if (rest.length > 0 && !this.discarding) {
        if (this.pendingBytes + rest.length > this.maxBytes) {
          this.onTooLong(this.pendingBytes + rest.length);
          this.chunks = [];
          this.pendingBytes = 0;
          this.discarding = true;
        } else {
          this.chunks.push(rest);
          this.pendingBytes += rest.length;
        }
      }
      return lines;
    }
  }

  /** The messages of one WebSocket frame: one per line, blank lines dropped. */
  function splitFrame(text) {
    return text.split('\n').filter((line) => line.trim().length > 0);
  }

  const api = { LineSplitter, splitFrame };
  if (typeof module === 'object' && module.exports) {
    module.exports = api;
  } else {
    root.PixlIPC = Object.assign(root.PixlIPC || {}, api);
  }
})(typeof globalThis !== 'undefined' ? globalThis : this);
