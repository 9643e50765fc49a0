<?php

declare(strict_types=1);

namespace PixlIPC\Exception;

/** The request could not be written to the socket. Code {@see IPCException::E_SOCKET_WRITE}. */
final class WriteException extends IPCException
{
    public function __construct(string $message, ?\Throwable $previous = null)
    {
        parent::__construct($message, self::E_SOCKET_WRITE, $previous);
    }
}
