<?php

declare(strict_types=1);

namespace PixlIPC\Exception;

/** A write did not complete in time, or (with throwOnTimeout) no reply came in time. Code {@see IPCException::E_TIMEOUT}. */
final class TimeoutException extends IPCException
{
    public function __construct(string $message, ?\Throwable $previous = null)
    {
        parent::__construct($message, self::E_TIMEOUT, $previous);
    }
}
