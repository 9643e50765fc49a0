<?php

declare(strict_types=1);

namespace PixlIPC;

use PixlIPC\Exception\BadRequestTypeException;
use PixlIPC\Exception\BadResponseException;
use PixlIPC\Exception\ConnectException;
use PixlIPC\Exception\IPCException;
use PixlIPC\Exception\ServerClosedException;
use PixlIPC\Exception\TimeoutException;
use PixlIPC\Exception\WriteException;

/**
 * A blocking client for pixl-ipc servers over a UNIX socket, compatible with the original
 * PixlIPCClient (see \PixlIPCClient for the drop-in global name).
 *
 * Options (milliseconds): connectTimeout (500), requestTimeout (500), userAgent
 * ("PHP/PixlIPCClient" . getcwd()), maxMessageBytes (67108864), throwOnTimeout (false).
 */
class Client
{
    public const E_SOCKET_CONNECT = IPCException::E_SOCKET_CONNECT;
    public const E_BAD_REQUEST_TYPE = IPCException::E_BAD_REQUEST_TYPE;
    public const E_SOCKET_WRITE = IPCException::E_SOCKET_WRITE;
    public const E_BAD_RESPONSE = IPCException::E_BAD_RESPONSE;
    public const E_SERVER_CLOSE = IPCException::E_SERVER_CLOSE;
    public const E_TIMEOUT = IPCException::E_TIMEOUT;

    public const DEFAULT_CONNECT_TIMEOUT_MS = 500;
    public const DEFAULT_REQUEST_TIMEOUT_MS = 500;
    public const DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024;

    protected string $socketPath;
    /** @var resource|null */
    protected $fp = null;
    protected ?LineReader $reader = null;
    protected int $connectTimeoutMs = self::DEFAULT_CONNECT_TIMEOUT_MS;
    protected int $requestTimeoutMs = self::DEFAULT_REQUEST_TIMEOUT_MS;
    protected int $maxMessageBytes = self::DEFAULT_MAX_MESSAGE_BYTES;
    protected bool $throwOnTimeout = false;
    protected int $serialCounter = 0;
    protected int $pid;
    protected string $userAgent;

    /**
     * @param string $socketPath The server's socket path.
     * @param array<string, mixed>|null $options See the class comment.
     */
    public function __construct($socketPath, $options = null)
    {
        $this->socketPath = (string) $socketPath;
        $this->pid = (int) getmypid();
        $options = is_array($options) ? $options : [];
        if (isset($options['connectTimeout'])) {
            $this->connectTimeoutMs = (int) $options['connectTimeout'];
        }
        if (isset($options['requestTimeout'])) {
            $this->requestTimeoutMs = (int) $options['requestTimeout'];
        }
        if (isset($options['maxMessageBytes'])) {
            $this->maxMessageBytes = (int) $options['maxMessageBytes'];
        }
        $this->throwOnTimeout = (bool) ($options['throwOnTimeout'] ?? false);
        $this->userAgent = isset($options['userAgent']) ? (string) $options['userAgent'] : 'PHP/PixlIPCClient' . getcwd();
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
     * @throws ConnectException naming the socket path and the OS reason.
     */
    public function connect(): void
    {
        $this->close();
        $errno = 0;
        $errstr = '';
        $stream = @stream_socket_client(
            'unix://' . $this->socketPath,
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
    }

    /**
     * Sends $request to $uri and returns the reply's data; false when no reply came within the
     * request timeout (or $timeoutMs for this call). Connects first when not connected. Lines
     * that are not this request's reply (late replies to timed-out requests, server pushes) are
     * skipped.
     *
     * @param array<mixed>|object $request Passed by reference, as in the original.
     * @return mixed The reply's data, or false on a timeout.
     * @throws IPCException (ConnectException, BadRequestTypeException, WriteException,
     *         BadResponseException, ServerClosedException, TimeoutException).
     */
    public function send($uri, &$request, ?int $timeoutMs = null)
    {
        if (is_string($request) || (!is_array($request) && !is_object($request))) {
            throw new BadRequestTypeException('Request must be an object or associative array');
        }
        $ipcReqID = $this->nextID();
        $line = json_encode([
            'uri' => $uri,
            'ipcReqID' => $ipcReqID,
            'data' => $request,
            'pid' => $this->pid,
            'userAgent' => $this->userAgent,
        ]);
        if ($line === false) {
            throw new BadRequestTypeException('Request cannot be encoded as JSON: ' . json_last_error_msg());
        }
        if (strlen($line) > $this->maxMessageBytes) {
            throw new BadRequestTypeException(
                'Request of ' . strlen($line) . " bytes exceeds maxMessageBytes ({$this->maxMessageBytes})"
            );
        }
        if ($this->fp === null) {
            $this->connect();
        }
        $deadline = microtime(true) + ($timeoutMs ?? $this->requestTimeoutMs) / 1000.0;
        // The JSON and its newline in one write: one syscall, and no half-message on the wire.
        $this->writeAll($line . "\n", $deadline);
        return $this->readReply($ipcReqID, $deadline);
    }

    protected function nextID(): string
    {
        return 'rq' . $this->serialCounter++;
    }

    /** @param resource $stream */
    protected function adopt($stream): void
    {
        $this->fp = $stream;
        $this->reader = new LineReader($stream, $this->maxMessageBytes);
    }

    protected function writeAll(string $bytes, float $deadline): void
    {
        $offset = 0;
        $length = strlen($bytes);
        while ($offset < $length) {
            $written = @fwrite($this->fp, substr($bytes, $offset));
            if ($written === false || ($written === 0 && feof($this->fp))) {
                $this->close();
                throw new ServerClosedException('Server closed the connection (send)');
            }
            $offset += $written;
            if ($offset >= $length) {
                break;
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
        }
    }

    /** @return mixed */
    protected function readReply(string $ipcReqID, float $deadline)
    {
        while (true) {
            try {
                $line = $this->reader->readLine($deadline);
            } catch (ServerClosedException | BadResponseException $e) {
                $this->close();
                throw $e;
            }
            if ($line === null) {
                if ($this->throwOnTimeout) {
                    throw new TimeoutException("No reply to $ipcReqID before the request timeout");
                }
                // The late reply, if it comes, is skipped by a later send (its id differs).
                return false;
            }
            if (!str_starts_with(ltrim($line), '{')) {
                continue;
            }
            $response = json_decode($line, true);
            if (!is_array($response)) {
                throw new BadResponseException('Could not json_decode response, details:' . json_last_error());
            }
            if (($response['ipcReqID'] ?? null) !== $ipcReqID) {
                continue;
            }
            return $response['data'] ?? null;
        }
    }
}
