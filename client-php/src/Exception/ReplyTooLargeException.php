<?php

declare(strict_types=1);

namespace PixlIPC\Exception;

/**
 * This call's reply was refused before json_decode: decoding it would take more memory than
 * maxReplyMemory allows or than is left under PHP's memory_limit (where PHP would stop the
 * request with an uncatchable fatal error). The line was consumed whole, so the connection stays
 * usable. Code {@see IPCException::E_REPLY_TOO_LARGE} (new, not in the original).
 */
final class ReplyTooLargeException extends IPCException
{
    public function __construct(string $message, ?\Throwable $previous = null)
    {
        parent::__construct($message, self::E_REPLY_TOO_LARGE, $previous);
    }
}
