<?php

declare(strict_types=1);

namespace PixlIPC\Tests;

use Exception;
use PHPUnit\Framework\TestCase;
use PixlIPCClient;

/**
 * Linux abstract sockets (`@name`): the client reaches the real server on one by each spelling,
 * and a name nobody listens on, or an empty one, fails with the connect error.
 */
final class AbstractSocketTest extends TestCase
{
    private static function name(): string
    {
        return 'pixl-ipc-php-' . getmypid() . '-' . bin2hex(random_bytes(4));
    }

    public function testEchoOverAnAbstractSocketInEverySpelling(): void
    {
        if (PHP_OS_FAMILY !== 'Linux') {
            $this->markTestSkipped('abstract sockets exist only on Linux');
        }
        $name = self::name();
        $server = new ServerProcess("@$name");
        foreach (["@$name", "unix:@$name", "unix://@$name"] as $address) {
            $ipc = new PixlIPCClient($address);
            $msg = ['via' => $address];
            $this->assertSame($msg, $ipc->send('/ipcserver/test/echo', $msg));
            $ipc->close();
        }
        $server->stop();
        // No file was created for it, neither the socket nor a lock beside it.
        $this->assertFileDoesNotExist("@$name");
        $this->assertFileDoesNotExist("@$name.lock");
    }

    public function testANameNobodyListensOnIsRefusedNamingIt(): void
    {
        $name = self::name();
        $ipc = new PixlIPCClient("@$name");
        try {
            $ipc->connect();
            $this->fail('connect must throw');
        } catch (Exception $e) {
            $this->assertSame(PixlIPCClient::E_SOCKET_CONNECT, $e->getCode());
            $this->assertStringContainsString("@$name", $e->getMessage());
            if (PHP_OS_FAMILY === 'Linux') {
                $this->assertStringContainsString('Connection refused', $e->getMessage());
            }
        }
    }

    public function testAnEmptyNameIsAClearError(): void
    {
        $ipc = new PixlIPCClient('unix:@');
        try {
            $ipc->connect();
            $this->fail('connect must throw');
        } catch (Exception $e) {
            $this->assertSame(PixlIPCClient::E_SOCKET_CONNECT, $e->getCode());
            $this->assertStringContainsString('name after @ is empty', $e->getMessage());
        }
    }
}
