<?php

declare(strict_types=1);

namespace PixlIPC\Exception;

/** The server sent a line that is not a valid reply (bad JSON, or longer than maxMessageBytes). Code {@see IPCException::E_BAD_RESPONSE}. */
final class BadResponseException extends IPCException
{
    public function __construct(string $message, ?\Throwable $previous = null)
    {
        parent::__construct($message, self::E_BAD_RESPONSE, $previous);
    }
}
