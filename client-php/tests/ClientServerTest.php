<?php

declare(strict_types=1);

namespace PixlIPC\Tests;

use Exception;
use PHPUnit\Framework\TestCase;
use PixlIPCClient;

/**
 * The global drop-in class against the real server binary: the original PHP test list, plus
 * the server closing and restarting under a sending client. (That the server sees the default
 * and custom user agents is checked by tests/tests/php_client.rs, whose server records them.)
 */
final class ClientServerTest extends TestCase
{
    private ServerProcess $server;

    protected function setUp(): void
    {
        $this->server = new ServerProcess(ServerProcess::tempSocket());
    }

    protected function tearDown(): void
    {
        $path = $this->server->socketPath;
        unset($this->server);
        // A server stopped with SIGKILL leaves its (stale) socket behind.
        if (@filetype($path) === 'socket') {
            @unlink($path);
        }
    }

    private static function sizedMessage(int $size): array
    {
        $message = [];
        for ($i = 0; $i < $size; $i++) {
            $message["key_$i"] = str_pad('GiveMe', 1024, 'Dataz');
        }
        return $message;
    }

    public function testABadSocketPathThrows5001NamingThePath(): void
    {
        $ipc = new PixlIPCClient('/nosuch/socket.sock');
        try {
            $ipc->connect();
            $this->fail('connect must throw');
        } catch (Exception $e) {
            $this->assertSame(PixlIPCClient::E_SOCKET_CONNECT, $e->getCode());
            $this->assertStringContainsString('/nosuch/socket.sock', $e->getMessage());
        }
    }

    public function testSendWithoutConnectConnectsFirst(): void
    {
        $ipc = new PixlIPCClient($this->server->socketPath);
        $msg = ['foo' => 19, 'bar' => true, 'msg' => 'hello'];
        $this->assertSame($msg, $ipc->send('/ipcserver/test/echo', $msg));
        $this->assertTrue($ipc->isConnected());
    }

    public function testEcho(): void
    {
        $ipc = new PixlIPCClient($this->server->socketPath);
        $ipc->connect();
        $msg = ['foo' => 19, 'bar' => true, 'msg' => 'hello/there'];
        $this->assertSame($msg, $ipc->send('/ipcserver/test/echo', $msg));
    }

    public function testOneMebibyteEcho(): void
    {
        $ipc = new PixlIPCClient($this->server->socketPath, ['requestTimeout' => 5000]);
        $ipc->connect();
        $msg = self::sizedMessage(1024);
        $result = $ipc->send('/ipcserver/test/echo', $msg);
        $this->assertSame($msg, $result);
        $this->assertGreaterThanOrEqual(1024 * 1024, strlen(json_encode($result)));
    }

    public function testDelay(): void
    {
        $ipc = new PixlIPCClient($this->server->socketPath);
        $msg = ['delay' => 10];
        $this->assertSame(['delay' => 10], $ipc->send('/ipcserver/test/delay', $msg));
    }

    public function testATimeoutReturnsFalse(): void
    {
        $ipc = new PixlIPCClient($this->server->socketPath, ['requestTimeout' => 100]);
        $msg = ['delay' => 1000];
        $this->assertFalse($ipc->send('/ipcserver/test/delay', $msg));
        // The late reply arrives while the next call waits; it must be skipped.
        $slow = ['delay' => 1000];
        $this->assertSame(['delay' => 1000], $ipc->send('/ipcserver/test/delay', $slow, 3000));
    }

    public function testAnUnknownUri(): void
    {
        $ipc = new PixlIPCClient($this->server->socketPath);
        $msg = ['foo' => 10];
        $result = $ipc->send('/ipcserver/no_such_thing', $msg);
        $this->assertSame('no_handler_found', $result['code']);
        $this->assertSame('No handler found for /ipcserver/no_such_thing', $result['message']);
    }

    public function testTheServerClosingTheConnectionThrows5005AndTheNextSendRecovers(): void
    {
        $path = $this->server->socketPath;
        $ipc = new PixlIPCClient($path);
        $msg = ['n' => 1];
        $this->assertSame($msg, $ipc->send('/ipcserver/test/echo', $msg));
        $this->server->stop();
        $this->server = new ServerProcess($path);
        try {
            $ipc->send('/ipcserver/test/echo', $msg);
            $this->fail('the first send after the server went away must throw');
        } catch (Exception $e) {
            $this->assertSame(PixlIPCClient::E_SERVER_CLOSE, $e->getCode());
            $this->assertMatchesRegularExpression('/^Server closed the connection \((readMessage|send)\)$/', $e->getMessage());
        }
        $this->assertFalse($ipc->isConnected(), 'the dead socket is forgotten');
        $this->assertSame($msg, $ipc->send('/ipcserver/test/echo', $msg), 'the next send reconnects');
    }

    public function testALoopKeepsSendingThroughAServerRestart(): void
    {
        // The original's test_recover.php: exceptions while the server is away, then success.
        $path = $this->server->socketPath;
        $ipc = new PixlIPCClient($path);
        $msg = ['foo' => 19, 'bar' => true, 'msg' => 'hello'];
        $this->assertSame($msg, $ipc->send('/ipcserver/test/echo', $msg));
        $this->server->stop(true);
        $exceptions = 0;
        $restarted = false;
        $deadline = microtime(true) + 10;
        while (microtime(true) < $deadline) {
            try {
                $result = $ipc->send('/ipcserver/test/echo', $msg);
                if ($exceptions > 0 && $result === $msg) {
                    break;
                }
            } catch (Exception $e) {
                $this->assertContains($e->getCode(), [PixlIPCClient::E_SERVER_CLOSE, PixlIPCClient::E_SOCKET_CONNECT]);
                $exceptions++;
                if (!$restarted && $exceptions >= 3) {
                    $this->server = new ServerProcess($path);
                    $restarted = true;
                }
            }
        }
        $this->assertTrue($restarted);
        $this->assertGreaterThanOrEqual(3, $exceptions);
        $this->assertSame($msg, $ipc->send('/ipcserver/test/echo', $msg));
    }

    public function testManySequentialRequestsOnOneConnection(): void
    {
        $ipc = new PixlIPCClient($this->server->socketPath);
        for ($i = 0; $i < 500; $i++) {
            $msg = ['i' => $i];
            $this->assertSame($msg, $ipc->send('/ipcserver/test/echo', $msg));
        }
    }
}
