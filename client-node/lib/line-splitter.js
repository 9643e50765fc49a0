'use strict';
// Framing, written once: a byte stream cut into lines with a maximum length (UNIX sockets), and
// a frame cut into its newline-separated messages (WebSockets).
(function (root) {
  // How much of the start and of the end of a discarded line is kept, to find its ipcReqID.
  const EDGE_BYTES = 4096;
  // The largest line joined in a kept buffer; a longer one gets a buffer of its own.
  const SCRATCH_BYTES = 1024 * 1024;

  /**
   * Splits a byte stream into lines. Partial lines wait for their "\n" (also when a multi-byte
   * UTF-8 character is split between chunks, since lines are decoded whole). A line longer than
   * maxBytes is discarded up to its newline (never more than maxBytes of it is held) and reported
   * once, when it ends, through onTooLong(bytes, head, tail): its length and its first and last
   * few KiB (strings), so the caller can find whose reply it was. The next line is delivered
   * normally.
   */
  class LineSplitter {
    constructor(maxBytes, onTooLong) {
      this.maxBytes = maxBytes;
      this.onTooLong = onTooLong || function () {};
      this.chunks = [];
      this.pendingBytes = 0;
      this.discarding = false;
      this.discardedBytes = 0;
      this.head = null;
      this.tail = null;
      this.scratch = null; // see joinLine()
    }

    /** Feeds a Buffer; returns the complete lines it finished, as strings. */
    push(chunk) {
      const lines = [];
      this.each(chunk, (line) => lines.push(line));
      return lines;
    }

    /**
     * Feeds a Buffer; calls onLine(text) for each line it finishes, in order (what a socket's
     * reader uses: no array per chunk). The splitter's own state is settled before each call.
     */
    each(chunk, onLine) {
      let start = 0;
      try {
        start = this.eachLine(chunk, onLine);
      } catch (err) {
        // onLine threw (a caller's callback, say): the partial line at the chunk's end is kept,
        // as when all of a chunk's lines were split before any was handed out; the lines
        // between are lost with the exception. Otherwise the next chunk's first bytes would be
        // taken for a line of their own and that reply lost.
        this.keepRest(chunk.subarray(chunk.lastIndexOf(0x0a) + 1));
        throw err;
      }
      this.keepRest(chunk.subarray(start));
    }

    /** each()'s loop over the complete lines of `chunk`; returns where its unfinished rest starts. */
    eachLine(chunk, onLine) {
      let start = 0;
      for (;;) {
        const end = chunk.indexOf(0x0a, start);
        if (end === -1) {
          break;
        }
        if (this.chunks.length === 0 && !this.discarding && end - start <= this.maxBytes) {
          // The whole line is in this chunk (the usual case): decoded in place, no copy.
          const line = chunk.toString('utf8', start, end);
          start = end + 1;
          onLine(line);
          continue;
        }
        const piece = chunk.subarray(start, end);
        start = end + 1;
        if (this.discarding) {
          this.keepTail(piece);
          this.chunks = [];
          this.pendingBytes = 0;
          this.finishDiscard(piece.length);
        } else if (this.pendingBytes + piece.length > this.maxBytes) {
          this.startDiscard(piece);
          this.chunks = [];
          this.pendingBytes = 0;
          this.finishDiscard(0);
        } else {
          const line = this.joinLine(piece);
          this.chunks = [];
          this.pendingBytes = 0;
          onLine(line);
        }
      }
      return start;
    }

    /** Holds `rest`, the start of a line whose "\n" has not come yet. */
    keepRest(rest) {
      if (rest.length > 0) {
        if (this.discarding) {
          this.keepTail(rest);
          this.discardedBytes += rest.length;
        } else if (this.pendingBytes + rest.length > this.maxBytes) {
          this.startDiscard(rest);
          this.chunks = [];
          this.pendingBytes = 0;
        } else {
          this.chunks.push(rest);
          this.pendingBytes += rest.length;
        }
      }
    }

    /**
     * The text of the line held in `chunks` followed by `piece`. Up to SCRATCH_BYTES it is
     * gathered in one buffer kept for the next line: Buffer.concat made a fresh ArrayBuffer (memory
     * outside V8's heap, which brings collections sooner) for every reply longer than a read.
     */
    joinLine(piece) {
      const total = this.pendingBytes + piece.length;
      if (total > SCRATCH_BYTES) {
        return Buffer.concat(this.chunks.concat([piece]), total).toString('utf8');
      }
      if (this.scratch === null || this.scratch.length < total) {
        this.scratch = Buffer.allocUnsafe(Math.min(SCRATCH_BYTES, Math.max(total, 2 * (this.scratch ? this.scratch.length : 32 * 1024))));
      }
      let at = 0;
      for (const chunk of this.chunks) {
        at += chunk.copy(this.scratch, at);
      }
      at += piece.copy(this.scratch, at);
      return this.scratch.toString('utf8', 0, at);
    }

    /** The line in `chunks` plus `piece` is too long: keep its edges, drop the rest. */
    startDiscard(piece) {
      const all = Buffer.concat(this.chunks.concat([piece]));
      this.head = all.subarray(0, EDGE_BYTES).toString('utf8');
      this.tail = Buffer.from(all.subarray(Math.max(0, all.length - EDGE_BYTES)));
      this.discardedBytes = all.length;
      this.discarding = true;
    }

    keepTail(piece) {
      if (piece.length >= EDGE_BYTES) {
        this.tail = Buffer.from(piece.subarray(piece.length - EDGE_BYTES));
      } else {
        const joined = Buffer.concat([this.tail, piece]);
        this.tail = Buffer.from(joined.subarray(Math.max(0, joined.length - EDGE_BYTES)));
      }
    }

    finishDiscard(lastBytes) {
      const bytes = this.discardedBytes + lastBytes;
      const head = this.head;
      const tail = this.tail.toString('utf8');
      this.discarding = false;
      this.discardedBytes = 0;
      this.head = null;
      this.tail = null;
      this.onTooLong(bytes, head, tail);
    }
  }

  /** The messages of one WebSocket frame: one per line, blank lines dropped. */
  function splitFrame(text) {
    return text.split('\n').filter((line) => line.trim().length > 0);
  }

  /**
   * The `"ipcReqID":"..."` a line that could not be parsed starts with (its first key, where
   * every pixl-ipc server puts it), or null. Only used to fail a request that is waiting for
   * exactly that id; an id found anywhere else (a push quoting a request, say) could be nested,
   * so it never blames a call. `tail` is accepted for the callers' sake and not searched.
   */
  // eslint-disable-next-line no-unused-vars
  function findRequestID(head, tail) {
    const found = /^\s*\{\s*"ipcReqID"\s*:\s*"([^"\\]{1,256})"/.exec(head.slice(0, EDGE_BYTES));
    return found ? found[1] : null;
  }

  const api = { LineSplitter, splitFrame, findRequestID, EDGE_BYTES };
  if (typeof module === 'object' && module.exports) {
    module.exports = api;
  } else {
    root.PixlIPC = Object.assign(root.PixlIPC || {}, api);
  }
})(typeof globalThis !== 'undefined' ? globalThis : this);
