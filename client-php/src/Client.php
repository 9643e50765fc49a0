<?php

declare(strict_types=1);

namespace PixlIPC;

use PixlIPC\Exception\IPCException;

/**
 * A blocking client for pixl-ipc servers over a UNIX socket. Its send() takes the request by
 * value, so literals and function results can be passed; the drop-in global \PixlIPCClient keeps
 * the original's by-reference signature. Options and behaviour: {@see BaseClient}.
 */
class Client extends BaseClient
{
    /**
     * Sends $request to $uri and returns the reply's data; false when no reply came within the
     * request timeout (or $timeoutMs for this call). Connects first when not connected. Lines
     * that are not this request's reply (late replies to timed-out requests, server pushes) are
     * skipped.
     *
     * @param array<mixed>|object $request The request's data; not modified.
     * @return mixed The reply's data, or false on a timeout.
     * @throws IPCException (ConnectException, BadRequestTypeException, WriteException,
     *         BadResponseException, ServerClosedException, TimeoutException,
     *         ReplyTooLargeException).
     */
    public function send($uri, $request, ?int $timeoutMs = null)
    {
        return $this->ipcSend($uri, $request, $timeoutMs);
    }
}
