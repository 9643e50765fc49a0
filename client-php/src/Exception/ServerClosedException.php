<?php

declare(strict_types=1);

namespace PixlIPC\Exception;

/** The server closed the connection; the next send reconnects. Code {@see IPCException::E_SERVER_CLOSE}. */
final class ServerClosedException extends IPCException
{
    public function __construct(string $message, ?\Throwable $previous = null)
    {
        parent::__construct($message, self::E_SERVER_CLOSE, $previous);
    }
}
