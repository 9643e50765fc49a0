<?php

declare(strict_types=1);

namespace PixlIPC\Exception;

/** The request data is not an array or an object. Code {@see IPCException::E_BAD_REQUEST_TYPE}. */
final class BadRequestTypeException extends IPCException
{
    public function __construct(string $message, ?\Throwable $previous = null)
    {
        parent::__construct($message, self::E_BAD_REQUEST_TYPE, $previous);
    }
}
