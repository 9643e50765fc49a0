<?php

declare(strict_types=1);

namespace PixlIPC\Exception;

/**
 * Base of every exception the client throws. It extends \Exception, so code written for the
 * original (`catch (Exception $e)` and `$e->getCode()`) keeps working; the codes are the
 * original's 5001-5006, plus 5007 (a reply too large to decode safely) and 5008 (an
 * error reply ending a stream).
 */
abstract class IPCException extends \Exception
{
    public const E_SOCKET_CONNECT = 5001;
    public const E_BAD_REQUEST_TYPE = 5002;
    public const E_SOCKET_WRITE = 5003;
    public const E_BAD_RESPONSE = 5004;
    public const E_SERVER_CLOSE = 5005;
    public const E_TIMEOUT = 5006;
    /** New in this client: a reply refused before decoding (see ReplyTooLargeException). */
    public const E_REPLY_TOO_LARGE = 5007;
    /** New in this client: the server answered a stream with an error (see ServerErrorException). */
    public const E_SERVER_ERROR = 5008;
}
