<?php

declare(strict_types=1);

namespace PixlIPC\Exception;

/** The connection to the server could not be opened. Code {@see IPCException::E_SOCKET_CONNECT}. */
final class ConnectException extends IPCException
{
    public function __construct(string $message, ?\Throwable $previous = null)
    {
        parent::__construct($message, self::E_SOCKET_CONNECT, $previous);
    }
}
