<?php

declare(strict_types=1);

namespace PixlIPC\Tests;

use PHPUnit\Framework\TestCase;
use PixlIPC\Client;
use PixlIPCClient;

/**
 * How the request reaches send(), against the real server binary: the namespaced client takes
 * it by value (literals, function results), the global drop-in keeps the original's
 * `send($uri, &$request)` signature, so that classes written against the original still load.
 */
final class SendApiTest extends TestCase
{
    private ServerProcess $server;

    protected function setUp(): void
    {
        $this->server = new ServerProcess(ServerProcess::tempSocket());
    }

    protected function tearDown(): void
    {
        unset($this->server);
    }

    private static function request(): array
    {
        return ['made' => 'by a function'];
    }

    public function testTheNamespacedClientTakesALiteralAndAFunctionResult(): void
    {
        $client = new Client($this->server->socketPath);
        $this->assertSame(['lit' => 1], $client->send('/ipcserver/test/echo', ['lit' => 1]));
        $this->assertSame(['made' => 'by a function'], $client->send('/ipcserver/test/echo', self::request()));
        $this->assertSame(['delay' => 0], $client->send('/ipcserver/test/delay', [], 2000));
        $this->assertFalse((new \ReflectionMethod(Client::class, 'send'))->getParameters()[1]->isPassedByReference());
    }

    public function testTheGlobalShimTakesAVariableByReferenceAndLeavesItAsTheOriginalDoes(): void
    {
        $ipc = new PixlIPCClient($this->server->socketPath);
        $msg = ['hello' => 'there', 'n' => [1, 2, 3]];
        $before = $msg;
        $this->assertSame($before, $ipc->send('/ipcserver/test/echo', $msg));
        // The original never assigns to $request: the caller's array comes back unchanged.
        $this->assertSame($before, $msg);
        // The per-call timeout (not in the original) still works on the global name.
        $slow = ['delay' => 200];
        $this->assertSame(['delay' => 200], $ipc->send('/ipcserver/test/delay', $slow, 3000));
        $this->assertFalse($ipc->send('/ipcserver/test/delay', $slow, 50));
        $this->assertTrue((new \ReflectionMethod(PixlIPCClient::class, 'send'))->getParameters()[1]->isPassedByReference());
    }

    public function testTheGlobalShimRefusesALiteralAsTheOriginalDoes(): void
    {
        $ipc = new PixlIPCClient($this->server->socketPath);
        try {
            $ipc->send('/ipcserver/test/echo', ['lit' => 1]);
            $this->fail('a literal must not be accepted by reference');
        } catch (\Error $e) {
            $this->assertStringContainsString('cannot be passed by reference', $e->getMessage());
        }
        $this->assertFalse($ipc->isConnected(), 'the call failed before sending anything');
    }

    public function testTheGlobalShimAndTheNamespacedClientShareTheirBaseAndExceptions(): void
    {
        $ipc = new PixlIPCClient('/nosuch/socket.sock');
        $this->assertInstanceOf(\PixlIPC\BaseClient::class, $ipc);
        $this->assertInstanceOf(\PixlIPC\BaseClient::class, new Client('/nosuch/socket.sock'));
        $this->assertSame(5001, PixlIPCClient::E_SOCKET_CONNECT);
        try {
            $msg = [];
            $ipc->send('/x', $msg);
            $this->fail('must throw');
        } catch (\Exception $e) {
            $this->assertInstanceOf(\PixlIPC\Exception\ConnectException::class, $e);
            $this->assertSame(PixlIPCClient::E_SOCKET_CONNECT, $e->getCode());
        }
    }

    /**
     * A subclass written against the original (its signatures: `send($uri, &$request)`,
     * `connect()` and `nextID()` without return types, untyped properties) loads and works. It
     * runs in a child PHP, because a signature mismatch is a fatal compile error.
     */
    public function testASubclassWrittenAgainstTheOriginalLoadsAndWorks(): void
    {
        $command = [PHP_BINARY, __DIR__ . '/fixtures/original_subclass.php', $this->server->socketPath];
        $process = proc_open($command, [0 => ['file', '/dev/null', 'r'], 1 => ['pipe', 'w'], 2 => ['pipe', 'w']], $pipes);
        $this->assertIsResource($process);
        $out = stream_get_contents($pipes[1]);
        $err = stream_get_contents($pipes[2]);
        fclose($pipes[1]);
        fclose($pipes[2]);
        $status = proc_close($process);
        $this->assertSame(0, $status, "child failed: $out $err");
        $this->assertSame(['reply' => ['sub' => 'class'], 'connects' => 1, 'ids' => ['my-rq0']], json_decode($out, true), $err);
    }
}
