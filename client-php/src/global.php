<?php

declare(strict_types=1);

// The original's global class name, as a drop-in: `new PixlIPCClient(...)`,
// `PixlIPCClient::E_SERVER_CLOSE`, and subclasses written against it keep working.
if (!class_exists('PixlIPCClient', false)) {
    class PixlIPCClient extends \PixlIPC\Client
    {
    }
}
