<?php

declare(strict_types=1);

namespace PixlIPC;

use PixlIPC\Exception\BadRequestTypeException;
use PixlIPC\Exception\BadResponseException;
use PixlIPC\Exception\ConnectException;
use PixlIPC\Exception\IPCException;
use PixlIPC\Exception\ReplyTooLargeException;
use PixlIPC\Exception\ServerClosedException;
use PixlIPC\Exception\ServerErrorException;
use PixlIPC\Exception\TimeoutException;
use PixlIPC\Exception\WriteException;

// Imported so that PHP binds these calls when it compiles the file (strlen and is_array become
// single opcodes) instead of looking for a PixlIPC\ function of the same name at run time:
// they run for every request.
use function fwrite;
use function ini_get;
use function is_array;
use function is_object;
use function json_decode;
use function json_encode;
use function memory_get_usage;
use function microtime;
use function str_contains;
use function str_starts_with;
use function strlen;

/**
 * A blocking client for pixl-ipc servers over a UNIX socket: everything but send(), which its
 * two subclasses declare, {@see Client} taking the request by value and the drop-in global
 * \PixlIPCClient by reference as the original did. Type-hint this class to accept either.
 *
 * The methods and properties the original PixlIPCClient 1.1.3 has (connect(), nextID(),
 * $socketPath, $fp, $serialCounter, $pid, $userAgent) keep its untyped declarations, so that a
 * subclass written against the original, which redeclares them without types, still loads.
 *
 * Options (milliseconds): connectTimeout (500), requestTimeout (500), userAgent
 * ("PHP/PixlIPCClient" . getcwd()), maxMessageBytes (67108864), maxReplyMemory (134217728),
 * throwOnTimeout (false). Each is checked when the client is built (\InvalidArgumentException).
 */
abstract class BaseClient
{
    public const E_SOCKET_CONNECT = IPCException::E_SOCKET_CONNECT;
    public const E_BAD_REQUEST_TYPE = IPCException::E_BAD_REQUEST_TYPE;
    public const E_SOCKET_WRITE = IPCException::E_SOCKET_WRITE;
    public const E_BAD_RESPONSE = IPCException::E_BAD_RESPONSE;
    public const E_SERVER_CLOSE = IPCException::E_SERVER_CLOSE;
    public const E_TIMEOUT = IPCException::E_TIMEOUT;
    public const E_REPLY_TOO_LARGE = IPCException::E_REPLY_TOO_LARGE;
    public const E_SERVER_ERROR = IPCException::E_SERVER_ERROR;

    public const DEFAULT_CONNECT_TIMEOUT_MS = 500;
    public const DEFAULT_REQUEST_TIMEOUT_MS = 500;
    public const DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024;
    public const DEFAULT_MAX_REPLY_MEMORY = 128 * 1024 * 1024;
    /** The longest timeout accepted (ms): 2^31-1, as in Node's timers (about 24.8 days). */
    public const MAX_TIMEOUT_MS = 2147483647;

    /** @var string */
    protected $socketPath;
    /** @var resource|null */
    protected $fp = null;
    protected ?LineReader $reader = null;
    protected int $connectTimeoutMs = self::DEFAULT_CONNECT_TIMEOUT_MS;
    protected int $requestTimeoutMs = self::DEFAULT_REQUEST_TIMEOUT_MS;
    protected int $maxMessageBytes = self::DEFAULT_MAX_MESSAGE_BYTES;
    protected int $maxReplyMemory = self::DEFAULT_MAX_REPLY_MEMORY;
    protected bool $throwOnTimeout = false;
    /** @var int */
    protected $serialCounter = 0;
    /** @var int */
    protected $pid;
    /** @var string */
    protected $userAgent;
    /**
     * The streams of this connection that are not finished: id => the lines that other calls
     * read for them and that their loop has not taken yet (raw, decoded when taken), the bytes
     * of those lines, whether the cancel was sent, and the error that ends the stream early.
     *
     * @var array<string, array{lines: list<string>, bytes: int, cancelled: bool, error: ?IPCException}>
     */
    private array $streams = [];
    /** Bytes in all the streams' queued lines: at most maxMessageBytes (see enqueue()). */
    private int $queuedBytes = 0;
    /** Counts the connections adopted, so that a stream notices its connection was replaced. */
    private int $connectionSerial = 0;
    /**
     * Whether send() may take its flat path (see ipcSend()), decided on the first send: not when
     * a subclass overrides writeAll() or readReply(), which that path does not call.
     */
    private ?bool $flatSend = null;
    /** The memory_limit setting last parsed (see memoryLimit()), and its bytes (-1: none). */
    private static string|false|null $memoryLimitSetting = null;
    private static int $memoryLimitBytes = -1;

    /**
     * @param string $socketPath The server's socket path.
     * @param array<string, mixed>|null $options See the class comment.
     */
    public function __construct($socketPath, $options = null)
    {
        $this->socketPath = (string) $socketPath;
        $this->pid = (int) getmypid();
        $options = is_array($options) ? $options : [];
        $this->connectTimeoutMs = self::intOption($options, 'connectTimeout', $this->connectTimeoutMs, 1, self::MAX_TIMEOUT_MS);
        $this->requestTimeoutMs = self::intOption($options, 'requestTimeout', $this->requestTimeoutMs, 1, self::MAX_TIMEOUT_MS);
        $this->maxMessageBytes = self::intOption($options, 'maxMessageBytes', $this->maxMessageBytes, 1, PHP_INT_MAX);
        $this->maxReplyMemory = self::intOption($options, 'maxReplyMemory', $this->maxReplyMemory, 1, PHP_INT_MAX);
        $throw = $options['throwOnTimeout'] ?? false;
        if (!is_bool($throw) && $throw !== 0 && $throw !== 1) {
            throw new \InvalidArgumentException('PixlIPCClient option throwOnTimeout must be a boolean, got ' . get_debug_type($throw));
        }
        $this->throwOnTimeout = (bool) $throw;
        $agent = $options['userAgent'] ?? null;
        if ($agent !== null && !is_string($agent) && !is_int($agent) && !is_float($agent) && !$agent instanceof \Stringable) {
            throw new \InvalidArgumentException('PixlIPCClient option userAgent must be a string, got ' . get_debug_type($agent));
        }
        $this->userAgent = $agent !== null ? (string) $agent : 'PHP/PixlIPCClient' . getcwd();
    }

    /**
     * An integral option in [$min, $max]: ints, integral floats and numeric strings as the
     * original took them; null or absent means the default. Anything else (INF, NAN, 1e19, 0 or
     * negative timeouts, "soon") throws, where a cast would silently turn it into 0 or garbage.
     *
     * @param array<string, mixed> $options
     */
    private static function intOption(array $options, string $name, int $default, int $min, int $max): int
    {
        $value = $options[$name] ?? null;
        if ($value === null) {
            return $default;
        }
        if (is_string($value) && is_numeric(trim($value))) {
            $value = trim($value) + 0;
        }
        if (is_float($value) && is_finite($value) && floor($value) === $value && abs($value) < 9.2e18) {
            $value = (int) $value;
        } elseif (is_float($value) && is_finite($value) && $value >= $min && $value <= $max && $name !== 'maxMessageBytes' && $name !== 'maxReplyMemory') {
            $value = (int) round($value); // 100.5 ms: the original accepted fractional milliseconds.
        }
        if (!is_int($value) || $value < $min || $value > $max) {
            throw new \InvalidArgumentException(sprintf(
                'PixlIPCClient option %s must be an integer from %d to %d, got %s',
                $name,
                $min,
                $max,
                is_scalar($options[$name]) ? var_export($options[$name], true) : get_debug_type($options[$name])
            ));
        }
        return $value;
    }

    public function __destruct()
    {
        $this->close();
    }

    /**
     * A client on an already connected stream (a stream_socket_pair end in tests, for example).
     *
     * @param resource $stream
     * @param array<string, mixed> $options
     */
    public static function fromStream($stream, array $options = []): static
    {
        $client = new static('(stream)', $options);
        $client->adopt($stream);
        return $client;
    }

    /**
     * Opens the connection.
     *
     * @return void
     * @throws ConnectException naming the socket path and the OS reason.
     */
    public function connect()
    {
        $this->close();
        $errno = 0;
        $errstr = '';
        $stream = @stream_socket_client(
            'unix://' . self::socketAddress($this->socketPath),
            $errno,
            $errstr,
            $this->connectTimeoutMs / 1000.0
        );
        if ($stream === false) {
            throw new ConnectException(
                "PixlIPCClient.connect(): stream_socket_client() failed: reason: $errno, $errstr ({$this->socketPath})"
            );
        }
        $this->adopt($stream);
    }

    /**
     * The address for stream_socket_client() after its `unix://`: the path as given, or for a
     * Linux abstract socket (`@name`, `unix:@name`, `unix://@name`) the name after a NUL byte,
     * which PHP passes on with its exact length. A file whose name starts with `@` is `./@name`.
     *
     * @throws ConnectException for an empty abstract name, or an abstract name off Linux.
     */
    private static function socketAddress(string $socketPath): string
    {
        if (preg_match('#^(?:unix:(?://)?)?@(.*)$#s', $socketPath, $match) !== 1) {
            return $socketPath;
        }
        if ($match[1] === '') {
            throw new ConnectException("PixlIPCClient.connect(): the abstract socket name after @ is empty ($socketPath)");
        }
        if (PHP_OS_FAMILY !== 'Linux') {
            throw new ConnectException(
                'PixlIPCClient.connect(): abstract sockets (@name) exist only on Linux, not on ' . PHP_OS_FAMILY . " ($socketPath)"
            );
        }
        return "\0" . $match[1];
    }

    /** True while a connection is open. */
    public function isConnected(): bool
    {
        return $this->fp !== null;
    }

    /** Closes the connection; the next send opens a new one. */
    public function close(): void
    {
        if ($this->fp !== null) {
            @stream_socket_shutdown($this->fp, STREAM_SHUT_RDWR);
            @fclose($this->fp);
        }
        $this->fp = null;
        $this->reader = null;
        // The streams of this connection end with 5005 when their loop next asks for an item.
        $this->streams = [];
        $this->queuedBytes = 0;
    }

    /**
     * send() of both subclasses: sends $request to $uri and returns the reply's data; false when
     * no reply came within the request timeout (or $timeoutMs for this call). Connects first
     * when not connected. Lines that are not this request's reply (late replies to timed-out
     * requests, server pushes) are skipped.
     *
     * @param array<mixed>|object $request
     * @return mixed The reply's data, or false on a timeout.
     * @throws IPCException (ConnectException, BadRequestTypeException, WriteException,
     *         BadResponseException, ServerClosedException, TimeoutException).
     */
    protected function ipcSend($uri, $request, ?int $timeoutMs = null)
    {
        if (!($this->flatSend ??= $this->mayInlineIo()) || $this->fp === null || $this->streams !== []
            || (!is_array($request) && !is_object($request))
            || ($timeoutMs !== null && ($timeoutMs < 1 || $timeoutMs > self::MAX_TIMEOUT_MS))) {
            // A subclass's own writeAll() or readReply(), connecting, a stream running, or an
            // argument to refuse: the general path, which makes its checks in their documented
            // order.
            [$ipcReqID, $deadline] = $this->writeRequest($uri, $request, false, $timeoutMs);
            return $this->readReply($ipcReqID, $deadline);
        }
        // The usual call, written out flat (writeRequest(), writeAll(), readReply() and the
        // common case of nextMessage() inline, with one clock reading before the decode where
        // nextMessage() takes two): PHP method calls, arrays and clock reads were most of the
        // instructions a small call spent beyond the original client's. It sends what
        // writeRequest() sends and returns a reply only when nextMessage() would return that
        // same reply; any other line (and every failure) goes to nextMessage().
        $ipcReqID = (string) $this->nextID();
        $line = json_encode([
            'uri' => $uri,
            'ipcReqID' => $ipcReqID,
            'data' => $request,
            'pid' => $this->pid,
            'userAgent' => $this->userAgent,
        ]);
        if ($line === false || strlen($line) > $this->maxMessageBytes) {
            throw $this->unsendable($line);
        }
        $deadline = microtime(true) + ($timeoutMs ?? $this->requestTimeoutMs) / 1000.0;
        $line .= "\n";
        $written = @fwrite($this->fp, $line);
        if ($written !== strlen($line)) {
            $this->writeRest($line, $written, $deadline);
        }
        $reply = $this->readLineOrClose($deadline);
        if ($reply === null) {
            return $this->timedOut($ipcReqID);
        }
        // This call's reply as every pixl-ipc server starts it, whose decoding fits both memory
        // limits and the time left at the cheap bound nextMessage() uses first. An id with a
        // backslash is not spelled the same in JSON, so it takes the general path.
        $bound = 385 * strlen($reply) + 64;
        if (str_starts_with($reply, "{\"ipcReqID\":\"{$ipcReqID}\"") && !str_contains($ipcReqID, '\\')
            && $bound <= $this->maxReplyMemory && $bound / self::DECODE_BYTES_PER_SECOND <= $deadline - microtime(true)) {
            // memoryLimit() inline: the parsed limit while the setting is the one it parsed.
            $limit = ini_get('memory_limit') === self::$memoryLimitSetting ? self::$memoryLimitBytes : self::memoryLimit();
            if ($limit <= 0 || $bound <= $limit - memory_get_usage(true)) {
                $response = json_decode($reply, true);
                if (is_array($response) && ($response['ipcReqID'] ?? null) === $ipcReqID) {
                    if (microtime(true) > $deadline) {
                        return $this->timedOut($ipcReqID); // decoding ran past the deadline: not delivered late
                    }
                    return $response['data'] ?? null;
                }
            }
        }
        $response = $this->nextMessage($ipcReqID, $deadline, $reply);
        return $response === null ? $this->timedOut($ipcReqID) : ($response['data'] ?? null);
    }

    /**
     * Sends $request to $uri as a streamed request and yields the stream's items, in order:
     * `foreach ($client->stream('/ipcserver/test/stream', ['count' => 3]) as $item) { ... }`.
     * The request is sent when the loop starts. Each item line's `data` is yielded, then the
     * final line's `data` when it is present and not null. A route that does not stream answers
     * as to a plain call: its one reply is yielded and the loop ends.
     *
     * The request timeout (or $timeoutMs) applies to the wait for each line, not to the whole
     * stream. Leaving the loop early (break, return, an exception in its body, or the generator
     * being destroyed) sends the cancel; the stream's lines still in flight are skipped by later
     * calls. Other calls may be made inside the loop: lines they read for this stream are kept
     * for it, at most maxMessageBytes in all (past that the stream is cancelled and fails with
     * 5007 when next resumed, rather than the client buffering without bound).
     *
     * @param array<mixed>|object $request The request's data; not modified.
     * @return \Generator<int, mixed, mixed, void>
     * @throws ServerErrorException (5008) for an error final line (`cancelled`, `handler_error`,
     *         `shutting_down`, ...), after the items before it were yielded.
     * @throws TimeoutException (5006) when a line does not come in time; the cancel is sent.
     * @throws ServerClosedException (5005) when the connection ends before the final line.
     * @throws IPCException as send() (ConnectException, BadRequestTypeException, WriteException,
     *         BadResponseException, ReplyTooLargeException).
     */
    public function stream($uri, $request, ?int $timeoutMs = null): \Generator
    {
        [$ipcReqID, $deadline] = $this->writeRequest($uri, $request, true, $timeoutMs);
        $timeout = ($timeoutMs ?? $this->requestTimeoutMs) / 1000.0;
        $connection = $this->connectionSerial;
        $this->streams[$ipcReqID] = ['lines' => [], 'bytes' => 0, 'cancelled' => false, 'error' => null];
        $finished = false;
        try {
            while (true) {
                if ($this->fp === null || $this->connectionSerial !== $connection) {
                    $finished = true; // nothing to cancel: the connection it ran on is gone
                    throw new ServerClosedException("Server closed the connection (stream $ipcReqID)");
                }
                $error = $this->streams[$ipcReqID]['error'] ?? null;
                if ($error !== null) {
                    throw $error;
                }
                $response = $this->nextMessage($ipcReqID, $deadline);
                if ($response === null) {
                    throw new TimeoutException("No line of stream $ipcReqID within the request timeout");
                }
                if (($response['ipcMore'] ?? false) === true) {
                    yield $response['data'] ?? null;
                    // The wait for the next line starts when the loop asks for it.
                    $deadline = microtime(true) + $timeout;
                    continue;
                }
                $finished = true;
                $error = self::errorOf($response);
                if ($error !== null) {
                    throw $error;
                }
                if (isset($response['data'])) {
                    yield $response['data'];
                }
                return;
            }
        } finally {
            // Runs on a normal end, on an exception, and when a suspended generator is destroyed.
            $cancelled = $this->streams[$ipcReqID]['cancelled'] ?? false;
            $this->forgetStream($ipcReqID);
            if (!$finished && !$cancelled) {
                $this->sendCancel($ipcReqID);
            }
        }
    }

    /**
     * Checks, encodes and writes one request (connecting first when needed).
     *
     * @param array<mixed>|object $request
     * @return array{0: string, 1: float} The request's id and the deadline for its first line.
     */
    private function writeRequest($uri, $request, bool $stream, ?int $timeoutMs): array
    {
        if (is_string($request) || (!is_array($request) && !is_object($request))) {
            throw new BadRequestTypeException('Request must be an object or associative array');
        }
        $ipcReqID = (string) $this->nextID();
        $message = [
            'uri' => $uri,
            'ipcReqID' => $ipcReqID,
            'data' => $request,
        ];
        if ($stream) {
            $message['ipcStream'] = true;
        }
        $message['pid'] = $this->pid;
        $message['userAgent'] = $this->userAgent;
        $line = json_encode($message);
        if ($line === false || strlen($line) > $this->maxMessageBytes) {
            throw $this->unsendable($line);
        }
        if ($this->fp === null) {
            $this->connect();
        }
        if ($timeoutMs !== null && ($timeoutMs < 1 || $timeoutMs > self::MAX_TIMEOUT_MS)) {
            $what = $stream ? 'stream()' : 'send()';
            throw new \InvalidArgumentException("PixlIPCClient $what timeout must be from 1 to " . self::MAX_TIMEOUT_MS . " ms, got $timeoutMs");
        }
        $deadline = microtime(true) + ($timeoutMs ?? $this->requestTimeoutMs) / 1000.0;
        // The JSON and its newline in one write: one syscall, and no half-message on the wire.
        // Appended in place (`.=` extends the string, usually without moving it) rather than
        // `$line . "\n"`, which copies the whole request.
        $line .= "\n";
        $this->writeAll($line, $deadline);
        return [$ipcReqID, $deadline];
    }

    /** True unless a subclass overrides writeAll() or readReply() (the flat send() skips them). */
    private function mayInlineIo(): bool
    {
        foreach (['writeAll', 'readReply'] as $method) {
            if ((new \ReflectionMethod($this, $method))->getDeclaringClass()->getName() !== self::class) {
                return false;
            }
        }
        return true;
    }

    /** Why a request's encoding $line (false when json_encode() failed) cannot be sent. */
    private function unsendable(string|false $line): BadRequestTypeException
    {
        if ($line === false) {
            return new BadRequestTypeException('Request cannot be encoded as JSON: ' . json_last_error_msg());
        }
        return new BadRequestTypeException(
            'Request of ' . strlen($line) . " bytes exceeds maxMessageBytes ({$this->maxMessageBytes})"
        );
    }

    /**
     * The error a stream's final line carries, by the rule the original Node client applies
     * with codeToErr: a top-level `code` (the whole line is the error), else a `data` object with
     * a `code`; null when the line is not an error.
     *
     * @param array<mixed> $response
     */
    private static function errorOf(array $response): ?ServerErrorException
    {
        $source = null;
        if (isset($response['code'])) {
            $source = $response;
        } elseif (is_array($response['data'] ?? null) && isset($response['data']['code'])) {
            $source = $response['data'];
        }
        if ($source === null) {
            return null;
        }
        $code = is_scalar($source['code']) ? (string) $source['code'] : (string) json_encode($source['code']);
        $message = $source['message'] ?? '';
        $message = is_scalar($message) ? (string) $message : (string) json_encode($message);
        $id = is_scalar($response['ipcReqID'] ?? null) ? (string) $response['ipcReqID'] : '?';
        return new ServerErrorException($code, "Server error $code for $id: $message", $response);
    }

    /** Stops tracking a stream and releases the lines queued for it. */
    private function forgetStream(string $ipcReqID): void
    {
        if (isset($this->streams[$ipcReqID])) {
            $this->queuedBytes -= $this->streams[$ipcReqID]['bytes'];
            unset($this->streams[$ipcReqID]);
        }
    }

    /**
     * Sends `{"ipcReqID":ID,"ipcCancel":true}`. Never throws: it runs in `finally` blocks and
     * destructors, where an exception would hide the one being thrown. A connection that cannot
     * take it is closed (the server then drops the handler anyway).
     */
    private function sendCancel(string $ipcReqID): void
    {
        if ($this->fp === null) {
            return;
        }
        try {
            $this->writeAll(json_encode(['ipcReqID' => $ipcReqID, 'ipcCancel' => true]) . "\n", microtime(true) + $this->requestTimeoutMs / 1000.0);
        } catch (IPCException) {
            $this->close();
        }
    }

    /** @return string */
    protected function nextID()
    {
        return 'rq' . $this->serialCounter++;
    }

    /** @param resource $stream */
    protected function adopt($stream): void
    {
        $this->fp = $stream;
        $this->reader = new LineReader($stream, $this->maxMessageBytes);
        $this->connectionSerial++;
    }

    protected function writeAll(string $bytes, float $deadline): void
    {
        $written = @fwrite($this->fp, $bytes);
        if ($written !== strlen($bytes)) {
            $this->writeRest($bytes, $written, $deadline);
        }
    }

    /**
     * The next line from the connection, kept with its ending (every caller reads it as JSON, and
     * that saves a copy), or null at $deadline. A connection that ended or sent an over-long line
     * is out of step: it is closed before the exception goes on.
     */
    private function readLineOrClose(float $deadline): ?string
    {
        try {
            return $this->reader->readLine($deadline, true);
        } catch (ServerClosedException | BadResponseException $e) {
            $this->close();
            throw $e;
        }
    }

    /**
     * Finishes writing $bytes after a first fwrite() of them returned $written (short, or false),
     * waiting for the socket to take more until $deadline.
     */
    private function writeRest(string $bytes, int|false $written, float $deadline): void
    {
        $offset = 0;
        $length = strlen($bytes);
        while (true) {
            if ($written === false || ($written === 0 && feof($this->fp))) {
                $this->close();
                throw new ServerClosedException('Server closed the connection (send)');
            }
            $offset += $written;
            if ($offset >= $length) {
                return;
            }
            $left = $deadline - microtime(true);
            if ($left <= 0) {
                // Part of a message is on the wire: the connection cannot be reused.
                $this->close();
                throw new TimeoutException("Socket write timed out after $offset of $length bytes");
            }
            $read = null;
            $write = [$this->fp];
            $except = null;
            $whole = (int) floor($left);
            if (@stream_select($read, $write, $except, $whole, (int) (($left - $whole) * 1_000_000)) === false) {
                $this->close();
                throw new WriteException('Socket write error: stream_select failed');
            }
            $written = @fwrite($this->fp, substr($bytes, $offset));
        }
    }

    /**
     * A conservative speed of json_decode, in bytes of the decoded form's estimated memory per
     * second (measured here at 300-400 MB/s for the worst shapes; a quarter of that, so a slow
     * machine still returns by its deadline). A reply whose decode would not end before the
     * deadline at this speed is a timeout without being decoded.
     */
    private const DECODE_BYTES_PER_SECOND = 100_000_000;

    /**
     * Reads lines until this call's reply and returns its data, or false on a timeout (see
     * nextMessage()).
     *
     * @return mixed
     */
    protected function readReply(string $ipcReqID, float $deadline)
    {
        $response = $this->nextMessage($ipcReqID, $deadline);
        if ($response === null) {
            return $this->timedOut($ipcReqID);
        }
        return $response['data'] ?? null;
    }

    /**
     * The next decoded line for $ipcReqID, or null when $deadline passed first. Lines queued for
     * it by other calls (when it is a stream) come first. A line is this id's when its leading
     * "ipcReqID" (the first key, where every pixl-ipc server puts it) is this id; when the id is
     * not the first key, the line is decoded only if it mentions this id or a running stream's.
     * Lines of running streams of this client are queued for them (see enqueue()); other lines
     * (pushes, late replies, lines of cancelled streams) are skipped whatever they hold (bad
     * JSON, nesting past 512, any size), so they can never fail this call or leave leftovers for
     * the next. A broken line whose id is this one fails the call (5004), a line too costly to
     * decode is refused (5007); both lines are consumed whole, so the connection stays in step.
     * A line whose decoding would end after the deadline is a timeout, never a late delivery.
     *
     * $pending is a line already read from the connection (by ipcSend()), taken before others.
     *
     * @return array<mixed>|null
     */
    private function nextMessage(string $ipcReqID, float $deadline, ?string $pending = null): ?array
    {
        $quotedID = json_encode($ipcReqID);
        // How every pixl-ipc server starts this call's reply: matched as a prefix, it spares the
        // leadingID() regex (anything else still goes through it). Only for an id leadingID()
        // would read (at most 200 characters), so both ways agree.
        $ownPrefix = strlen($quotedID) <= 202 ? '{"ipcReqID":' . $quotedID : null;
        while (true) {
            if (isset($this->streams[$ipcReqID]) && $this->streams[$ipcReqID]['lines'] !== []) {
                $line = array_shift($this->streams[$ipcReqID]['lines']);
                $this->streams[$ipcReqID]['bytes'] -= strlen($line);
                $this->queuedBytes -= strlen($line);
                $mine = true; // queued because it decodes, or its leading id reads, to this id
            } else {
                if ($pending !== null) {
                    $line = $pending;
                    $pending = null;
                } else {
                    if ($this->reader === null) {
                        // A cancel that could not be written closed the connection (see enqueue()).
                        throw new ServerClosedException('Server closed the connection (send)');
                    }
                    $line = $this->readLineOrClose($deadline);
                    if ($line === null) {
                        return null;
                    }
                }
                if ($ownPrefix !== null && str_starts_with($line, $ownPrefix)) {
                    $leading = $ipcReqID;
                } else {
                    $line = ltrim($line);
                    if (!str_starts_with($line, '{')) {
                        continue;
                    }
                    $leading = self::leadingID($line);
                }
                if ($leading !== false) {
                    if ($leading !== $ipcReqID) {
                        if ($leading !== null && isset($this->streams[$leading])) {
                            $this->enqueue($leading, $line);
                        }
                        continue;
                    }
                    $mine = true;
                } else {
                    if (!str_contains($line, $quotedID) && !$this->mentionsAStream($line)) {
                        continue; // cannot be this call's reply nor a stream's: no need to decode it
                    }
                    // The id may be anywhere in it, even nested (a push quoting a request): such a
                    // line is this call's reply only if it decodes to one, and its failures are
                    // never this call's.
                    $mine = false;
                }
            }
            // estimateDecodeBytes() never exceeds 385 bytes per byte plus 64 (each byte counted
            // at most once, at most 384 for a container): when that bound passes both checks
            // below, so does the estimate, and the line need not be counted (the usual case).
            $estimate = 385 * strlen($line) + 64;
            $refusal = $this->refusal($line, $estimate);
            if ($refusal !== null
                || $estimate / self::DECODE_BYTES_PER_SECOND > $deadline - microtime(true)) {
                $estimate = self::estimateDecodeBytes($line);
                $refusal = $this->refusal($line, $estimate);
            }
            if ($refusal !== null) {
                if ($mine) {
                    throw new ReplyTooLargeException("Reply to $ipcReqID refused before decoding: $refusal");
                }
                continue;
            }
            // json_decode cannot be interrupted: a decode that would end past the deadline is
            // not started, so the call returns by its deadline whatever the server sent.
            if ($estimate / self::DECODE_BYTES_PER_SECOND > $deadline - microtime(true)) {
                if ($mine) {
                    return null;
                }
                continue;
            }
            $response = json_decode($line, true);
            if (!is_array($response)) {
                if ($mine) {
                    throw new BadResponseException(
                        'Could not json_decode response, details:' . json_last_error() . " (reply to $ipcReqID: " . json_last_error_msg() . ')'
                    );
                }
                continue;
            }
            $id = $response['ipcReqID'] ?? null;
            if ($id !== $ipcReqID) {
                if (!$mine && is_string($id) && isset($this->streams[$id])) {
                    $this->enqueue($id, $line);
                }
                continue;
            }
            if (microtime(true) > $deadline) {
                return null; // decoding ran past the deadline: not delivered late
            }
            return $response;
        }
    }

    /** Whether $line mentions the id of one of this client's running streams (usually none). */
    private function mentionsAStream(string $line): bool
    {
        foreach ($this->streams as $id => $_) {
            if (str_contains($line, json_encode((string) $id))) {
                return true;
            }
        }
        return false;
    }

    /**
     * Keeps a line read by another call for the running stream $id until its loop takes it. The
     * lines kept for all streams are bounded by maxMessageBytes: past that, the stream whose line
     * does not fit is cancelled, its queue dropped, and its loop fails with 5007 when it resumes
     * (a loop that makes other calls while its stream runs faster than it reads loses the stream,
     * never the client's memory). Lines of a stream that already failed are dropped.
     */
    private function enqueue(string $id, string $line): void
    {
        $stream = &$this->streams[$id];
        if ($stream['error'] !== null) {
            return;
        }
        if ($this->queuedBytes + strlen($line) > $this->maxMessageBytes) {
            $this->queuedBytes -= $stream['bytes'];
            $stream['lines'] = [];
            $stream['bytes'] = 0;
            $stream['error'] = new ReplyTooLargeException(
                "Stream $id cancelled: its items kept while other calls read the connection exceeded maxMessageBytes ({$this->maxMessageBytes})"
            );
            $stream['cancelled'] = true;
            unset($stream);
            $this->sendCancel($id);
            return;
        }
        $stream['lines'][] = $line;
        $stream['bytes'] += strlen($line);
        $this->queuedBytes += strlen($line);
    }

    /** @return false */
    private function timedOut(string $ipcReqID): bool
    {
        if ($this->throwOnTimeout) {
            throw new TimeoutException("No reply to $ipcReqID before the request timeout");
        }
        // The late reply, if it comes, is skipped by a later send (its id differs).
        return false;
    }

    /**
     * The line's id when "ipcReqID" is its first key (a string, or null), read from the first
     * bytes without decoding the line; false when the first key is something else.
     */
    private static function leadingID(string $line): string|null|false
    {
        if (preg_match('/^\{\s*"ipcReqID"\s*:\s*(null\b|"(?:[^"\\\\]|\\\\.){0,200}")/', substr($line, 0, 512), $m) !== 1) {
            return false;
        }
        if ($m[1] === 'null') {
            return null;
        }
        $id = json_decode($m[1]);
        return is_string($id) ? $id : false;
    }

    /**
     * Bytes PHP may allocate for json_decode($line, true): an upper bound from the line's length
     * and its counts of containers, commas and quotes (substr_count of one byte is a memchr loop,
     * several times cheaper than count_chars' per-byte tally on ordinary replies). Per byte 1 (string
     * contents), per container 384 (a HashTable and its first 8 slots), per value 64 (its slot,
     * with room for the table doubling), per string 32 (its header). Measured peaks on PHP 8.2 are
     * 0.5x to 0.9x of it for tiny-object replies (the worst case, up to 65 bytes per byte of JSON)
     * and about 1x for text.
     */
    public static function estimateDecodeBytes(string $line): int
    {
        $containers = substr_count($line, '{') + substr_count($line, '[');
        $values = substr_count($line, ',') + 1;
        $strings = intdiv(substr_count($line, '"'), 2);
        return strlen($line) + 384 * $containers + 64 * $values + 32 * $strings;
    }

    /** Why decoding $line (estimateDecodeBytes() gave $estimate) is refused, or null when it is safe. */
    private function refusal(string $line, int $estimate): ?string
    {
        if ($estimate > $this->maxReplyMemory) {
            return sprintf('%d bytes would take about %d bytes to decode, over maxReplyMemory (%d)', strlen($line), $estimate, $this->maxReplyMemory);
        }
        $limit = self::memoryLimit();
        if ($limit > 0) {
            $left = $limit - memory_get_usage(true);
            if ($estimate > $left) {
                return sprintf('%d bytes would take about %d bytes to decode, over the %d bytes left under memory_limit (%s)', strlen($line), $estimate, max(0, $left), ini_get('memory_limit'));
            }
        }
        return null;
    }

    /** PHP's memory_limit in bytes, or -1 for none. */
    private static function memoryLimit(): int
    {
        // Parsed again only when the setting changes (ini_set): this runs for every reply.
        $setting = ini_get('memory_limit');
        if ($setting !== self::$memoryLimitSetting) {
            self::$memoryLimitSetting = $setting;
            self::$memoryLimitBytes = self::parseMemoryLimit((string) $setting);
        }
        return self::$memoryLimitBytes;
    }

    /** A memory_limit setting in bytes, or -1 for none. */
    private static function parseMemoryLimit(string $setting): int
    {
        $value = trim($setting);
        if ($value === '' || $value === '-1') {
            return -1;
        }
        $number = (int) $value;
        return match (strtolower(substr($value, -1))) {
            'g' => $number << 30,
            'm' => $number << 20,
            'k' => $number << 10,
            default => $number,
        };
    }
}
