// Type declarations for pixl-ipc-client (CommonJS `require`, ESM `import`, a bundler's browser
// build, and the browser's global `PixlIPCClient`). They name nothing from Node or the DOM, so
// they compile with or without @types/node and with or without the DOM library.

declare namespace IPCClient {
  /** The error values callbacks and rejected promises receive (strings, as in the original). */
  type ErrorValue =
    | 'ipc_socket_err'
    | 'no_open_stream'
    | 'request_timeout'
    | 'connection_closed'
    | 'message_too_large'
    | 'client_closed'
    | 'reply_too_large'
    | 'bad_reply'
    | 'write_queue_full'
    | 'stream_buffer_full';

  type State = 'disconnected' | 'connecting' | 'connected' | 'reconnecting' | 'closed';

  /** Exponential reconnect backoff; replaces `autoReconnect` when given. */
  interface ReconnectOptions {
    /** Wait before the first attempt, ms. */
    intervalMs: number;
    /** Factor between consecutive waits (default 2). */
    growthRate?: number;
    /** Attempts before giving up (`reconnect_failed` event); null or absent: forever. */
    maxRetries?: number | null;
    /** Longest wait between attempts, ms (default 30000). */
    maxDelayMs?: number;
    /** Random spread as a fraction of the wait, 0..1 (default 0). */
    jitter?: number;
  }

  /** A reply or push line as the server sent it. */
  interface Message {
    ipcReqID?: string | null;
    data?: unknown;
    code?: string;
    message?: string;
    uri?: string;
  }

  interface Options {
    /** ms a request waits for its reply (default 10000; 0: the default; Infinity: no timeout; above 2^31-1: clamped). */
    requestTimeout?: number;
    /** ms a timed-out request's id is remembered so its late reply is ignored quietly (default 10000). */
    expireRequest?: number;
    /** Sent with every request (default "Node/IPCClient" + process.cwd()). */
    userAgent?: string;
    /** ms between reconnect attempts, 0 disables (default 1000). */
    autoReconnect?: number | false;
    /** Treat a top-level `code`, or `data.code`, as the error (default false). */
    codeToErr?: boolean;
    /** Returns [err, data] for each reply; overrides codeToErr (default null). */
    messageTransform?: ((msg: Message) => [unknown, unknown]) | null;
    /** ms between stats log lines through logger.debug (default null: off). */
    logStatsInterval?: number | null;
    /** Longest request sent, and largest WebSocket frame, bytes (default 64 MiB). */
    maxMessageBytes?: number;
    /** Longest reply line parsed, bytes (default 8 MiB; never above maxMessageBytes); longer: 'reply_too_large'. */
    maxReplyBytes?: number;
    /** Bytes of requests waiting to be written before a send fails at once with 'write_queue_full' (default 64 MiB). */
    maxWriteQueueBytes?: number;
    /**
     * Streamed replies: characters of items a stream holds that were not taken yet (default 8 MiB).
     * Past it Node stops reading the connection until they are taken (the server pauses); the
     * browser cannot, so there the stream is cancelled and fails with 'stream_buffer_full'.
     */
    maxStreamBufferBytes?: number;
    /** ms each connect or reconnect attempt may take (default 10000). */
    connectTimeout?: number;
    /** ms close() lets the server close its side before the connection is cut (default 1000). */
    closeTimeout?: number;
    /** Backoff reconnect policy (default null: use autoReconnect). */
    reconnect?: ReconnectOptions | null;
    /** Errors as IPCError objects with a `code` instead of strings (default false). */
    errorObjects?: boolean;
    /** WebSockets: bearer token, sent as `tokenVia` says. */
    token?: string | null;
    /**
     * How the token travels: 'header' (`Authorization: Bearer`; Node's default, not possible in
     * a browser), 'protocol' (a `Sec-WebSocket-Protocol` entry, kept out of URLs; the browser's
     * default) or 'query' (`?token=`, which proxies may log).
     */
    tokenVia?: 'header' | 'protocol' | 'query' | null;
    /** wss:// in Node: PEM CA certificate(s) to trust (default: Node's roots); a Buffer is a Uint8Array. */
    ca?: string | Uint8Array | Array<string | Uint8Array> | null;
    /** wss:// in Node: the name the certificate must be valid for (default: the URL's host). */
    servername?: string | null;
  }

  /** Per-call options of `stream()`; each defaults to the client's option of the same name. */
  interface StreamOptions {
    /** ms to wait for each line of the stream (the first and each next one). */
    requestTimeout?: number;
    /** Characters of unconsumed items held before reading pauses (browser: before the stream fails). */
    maxStreamBufferBytes?: number;
  }

  /**
   * The replies to a streamed request: `for await (const item of client.stream(uri, data))`.
   * The request is sent on the first `next()`; `break` (`return()`) cancels it on the server.
   */
  interface ReplyStream<T = any> extends AsyncIterableIterator<T> {
    /** Its ipcReqID once sent, else null. */
    readonly id: string | null;
    /** Characters of items received and not yet taken. */
    readonly bufferedBytes: number;
    /** Stops it, as `break` in the loop does (cancels it on the server). */
    cancel(): void;
  }

  /** What the callback form of `stream()` returns. */
  interface StreamHandle {
    /** Stops the stream (cancels it on the server); `onEnd(null)` follows. */
    cancel(): void;
  }

  /** The original's logger shape. */
  interface Logger {
    debug(level: number, message: string, data?: unknown): void;
    error(code: string, message: string, data?: unknown): void;
  }

  type Callback<T = unknown> = (err: ErrorValue | IPCError | unknown | null, result?: T) => void;

  /** The same class, under the name every entry exports. */
  const IPCClient: typeof _IPCClient;
  /** The same class, under the browser global's name. */
  const PixlIPCClient: typeof _IPCClient;
  /** The error class used with `errorObjects: true`. */
  const IPCError: typeof _IPCError;
  type IPCError = _IPCError;
  const ERRORS: Readonly<Record<'SOCKET' | 'NO_STREAM' | 'TIMEOUT' | 'CONNECTION_CLOSED' | 'MESSAGE_TOO_LARGE' | 'CLOSED' | 'REPLY_TOO_LARGE' | 'BAD_REPLY' | 'WRITE_QUEUE_FULL' | 'STREAM_BUFFER_FULL' | 'CONNECT_TIMEOUT', string>>;
  const DEFAULTS: Readonly<Required<Pick<Options, 'requestTimeout' | 'expireRequest' | 'autoReconnect' | 'maxMessageBytes' | 'maxReplyBytes' | 'maxWriteQueueBytes' | 'maxStreamBufferBytes' | 'connectTimeout' | 'closeTimeout'>>> & Readonly<Options>;
}

declare const _IPCClient: typeof IPCClient;
type _IPCClient = IPCClient;

declare class _IPCError extends Error {
  constructor(code: string, message?: string, detail?: unknown);
  readonly code: string;
  readonly detail?: unknown;
}

/**
 * The client. In Node it is an `EventEmitter` (node:events); in the browser a small emitter with
 * the methods declared here.
 */
declare class IPCClient {
  /** @param path a socket path, a ws:// / wss:// URL, or (Linux, Node 22+) an abstract socket as @name, unix:@name or unix://@name */
  constructor(path: string, logger?: IPCClient.Logger | null, options?: IPCClient.Options);
  readonly path: string;
  readonly requestCount: number;
  /** Where the connection is; never 'connected' without an open connection. */
  readonly state: IPCClient.State;
  /** Bytes of requests not yet flushed to the connection. */
  readonly queuedBytes: number;
  connect(): Promise<void>;
  connect(callback: (err: IPCClient.ErrorValue | _IPCError | null) => void): void;
  send<T = any>(uri: string, data: unknown): Promise<T>;
  send<T = any>(uri: string, data: unknown, callback: IPCClient.Callback<T>): void;
  /**
   * A streamed request: its items (and the final line's value, if any) as an async iterator.
   * An error final line, a timeout waiting for a line, or the connection ending throws from the
   * loop after the items already yielded.
   */
  stream<T = any>(uri: string, data?: unknown, options?: IPCClient.StreamOptions | null): IPCClient.ReplyStream<T>;
  /**
   * The callback form: `onItem(item)` for each item (a returned promise is awaited before the
   * next item), then `onEnd(err)` once (err null when it ended normally or was cancelled).
   */
  stream<T = any>(uri: string, data: unknown, onItem: (item: T) => unknown, onEnd?: (err: IPCClient.ErrorValue | IPCClient.IPCError | unknown | null) => void): IPCClient.StreamHandle;
  stream<T = any>(uri: string, data: unknown, options: IPCClient.StreamOptions | null, onItem: (item: T) => unknown, onEnd?: (err: IPCClient.ErrorValue | IPCClient.IPCError | unknown | null) => void): IPCClient.StreamHandle;
  close(): Promise<void>;
  close(callback: (err: null) => void): void;
  /** The original's rule, usable in a custom messageTransform. */
  codeToErr(msg: IPCClient.Message): [unknown, unknown];
  on(event: 'data', listener: (msg: IPCClient.Message) => void): this;
  on(event: 'disconnect', listener: (reason: string) => void): this;
  on(event: 'reconnect', listener: () => void): this;
  on(event: 'reconnect_failed', listener: (attempts: number) => void): this;
  on(event: string | symbol, listener: (...args: any[]) => void): this;
  addListener(event: string | symbol, listener: (...args: any[]) => void): this;
  once(event: string | symbol, listener: (...args: any[]) => void): this;
  off(event: string | symbol, listener: (...args: any[]) => void): this;
  removeListener(event: string | symbol, listener: (...args: any[]) => void): this;
  prependListener(event: string | symbol, listener: (...args: any[]) => void): this;
  prependOnceListener(event: string | symbol, listener: (...args: any[]) => void): this;
  removeAllListeners(event?: string | symbol): this;
  emit(event: string | symbol, ...args: any[]): boolean;
  listenerCount(event: string | symbol): number;
  listeners(event: string | symbol): Function[];
  rawListeners(event: string | symbol): Function[];
  eventNames(): Array<string | symbol>;
  setMaxListeners(count: number): this;
  getMaxListeners(): number;
}

export = IPCClient;
