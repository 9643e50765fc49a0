<?php

declare(strict_types=1);

namespace PixlIPC\Exception;

/**
 * The server answered with an error reply: a top-level `code` (`cancelled`, `shutting_down`,
 * `invalid_request`, ...) or a `data` object with a `code` (`handler_error`, `stream_required`,
 * `no_handler_found`, ...). Thrown by stream() for an error final line, after the items already
 * yielded; send() keeps the original's contract and returns such a reply's `data` instead.
 * Code {@see IPCException::E_SERVER_ERROR} (new, not in the original); the server's own code is
 * {@see getErrorCode()}.
 */
final class ServerErrorException extends IPCException
{
    /**
     * @param string $errorCode The server's code, e.g. "stream_required".
     * @param array<mixed> $reply The whole decoded reply line.
     */
    public function __construct(private string $errorCode, string $message, private array $reply, ?\Throwable $previous = null)
    {
        parent::__construct($message, self::E_SERVER_ERROR, $previous);
    }

    /** The server's error code, e.g. "stream_required", "cancelled", "handler_error". */
    public function getErrorCode(): string
    {
        return $this->errorCode;
    }

    /**
     * The whole decoded reply line that carried the error.
     *
     * @return array<mixed>
     */
    public function getReply(): array
    {
        return $this->reply;
    }
}
