<?php

declare(strict_types=1);

// The original's global class name, as a drop-in: `new PixlIPCClient(...)`,
// `PixlIPCClient::E_SERVER_CLOSE`, and subclasses written against it keep working.
if (!class_exists('PixlIPCClient', false)) {
    /**
     * The original's class. Its send() keeps the original's signature, `send($uri, &$request)`:
     * the request is taken by reference (and never modified, as in the original), so a literal
     * is refused with the same \Error as the original ("cannot be passed by reference"), and a
     * subclass that overrides send($uri, &$request) still loads. New code that wants to pass
     * literals uses \PixlIPC\Client; type-hint \PixlIPC\BaseClient to accept either.
     */
    class PixlIPCClient extends \PixlIPC\BaseClient
    {
        /**
         * As \PixlIPC\Client::send(). A third argument, the timeout of this call in ms (not in
         * the original), is read with func_get_arg() rather than declared, so that a subclass
         * overriding send($uri, &$request) with the original's two parameters stays compatible.
         *
         * @param array<mixed>|object $request By reference, as in the original; not modified.
         * @return mixed The reply's data, or false on a timeout.
         */
        public function send($uri, &$request)
        {
            $timeoutMs = func_num_args() > 2 ? func_get_arg(2) : null;
            if ($timeoutMs !== null && !is_int($timeoutMs)) {
                throw new \TypeError('PixlIPCClient::send(): Argument #3 ($timeoutMs) must be of type ?int, ' . get_debug_type($timeoutMs) . ' given');
            }
            return $this->ipcSend($uri, $request, $timeoutMs);
        }
    }
}
