<?php

declare(strict_types=1);

namespace PixlIPC\Tests;

use PHPUnit\Framework\TestCase;
use PixlIPC\Client;
use PixlIPC\Exception\ServerClosedException;
use PixlIPC\Exception\ServerErrorException;
use PixlIPC\Exception\TimeoutException;
use PixlIPCClient;

/** stream() against the real server binary and its /ipcserver/test/stream endpoint. */
final class StreamServerTest extends TestCase
{
    private const STREAM = '/ipcserver/test/stream';

    private ServerProcess $server;
    /** @var list<string> Every socket path a server of this test used. */
    private array $paths = [];

    protected function setUp(): void
    {
        $this->server = new ServerProcess($this->paths[] = ServerProcess::tempSocket());
    }

    protected function tearDown(): void
    {
        unset($this->server);
        foreach ($this->paths as $path) {
            // A server stopped with SIGKILL leaves its (stale) socket behind; every server
            // leaves its lock file.
            if (@filetype($path) === 'socket') {
                @unlink($path);
            }
            if (is_file("$path.lock")) {
                @unlink("$path.lock");
            }
        }
    }

    /**
     * Replaces the server with one that runs two requests per connection at a time. A stream
     * holds a slot until its final line, and at the limit the server reads no more from the
     * connection, so assertNoStreamLeftRunning() can tell whether a stream was really cancelled.
     * (Not one slot: a connection whose only slot is a stream cannot even send its cancel, see
     * the report on branch php.)
     */
    private function twoSlotServer(): void
    {
        $this->server->stop();
        $this->server = new ServerProcess($this->paths[] = ServerProcess::tempSocket(), ['--max-in-flight', '2']);
    }

    /**
     * On a twoSlotServer(): one more stream left early (its cancel is read while a slot is
     * free), then a plain call. Had an earlier stream been left running, that stream and this
     * one would hold both slots and the plain call would never be read.
     */
    private function assertNoStreamLeftRunning(Client $client): void
    {
        foreach ($client->stream(self::STREAM, ['count' => 100000, 'interval' => 20]) as $item) {
            break;
        }
        $this->assertSame(['slots' => 'free'], $client->send('/ipcserver/test/echo', ['slots' => 'free'], 2000));
    }

    private function client(array $options = []): Client
    {
        return new Client($this->server->socketPath, $options + ['requestTimeout' => 5000]);
    }

    public function testNItemsInOrderThenTheFinalDone(): void
    {
        $client = $this->client();
        $got = iterator_to_array($client->stream(self::STREAM, ['count' => 50]), false);
        $expected = array_map(static fn (int $i): array => ['i' => $i], range(0, 49));
        $expected[] = ['done' => 50];
        $this->assertSame($expected, $got);
        // The same connection carries on.
        $this->assertSame(['after' => true], $client->send('/ipcserver/test/echo', ['after' => true]));
    }

    public function testTheTimeoutIsPerLineNotForTheWholeStream(): void
    {
        $client = $this->client(['requestTimeout' => 1000]);
        $started = microtime(true);
        $got = iterator_to_array($client->stream(self::STREAM, ['count' => 4, 'interval' => 400]), false);
        $this->assertCount(5, $got);
        $this->assertGreaterThan(1.0, microtime(true) - $started, 'the whole stream outlasted one timeout');
    }

    public function testBreakCancelsAndTheNextPlainCallGetsItsOwnReply(): void
    {
        $this->twoSlotServer();
        $client = $this->client(['requestTimeout' => 2000]);
        $got = [];
        foreach ($client->stream(self::STREAM, ['count' => 100000, 'interval' => 20]) as $item) {
            $got[] = $item;
            if (count($got) === 3) {
                break;
            }
        }
        $this->assertSame([['i' => 0], ['i' => 1], ['i' => 2]], $got);
        $this->assertNoStreamLeftRunning($client);
        // Items in flight and the `cancelled` final line come before this reply: all skipped.
        for ($n = 0; $n < 5; $n++) {
            $this->assertSame(['n' => $n], $client->send('/ipcserver/test/echo', ['n' => $n]));
        }
        // And a new stream on the same connection works.
        $this->assertCount(4, iterator_to_array($client->stream(self::STREAM, ['count' => 3]), false));
    }

    public function testAnEndlessWatchIsCancelledByBreak(): void
    {
        $this->twoSlotServer();
        $client = $this->client(['requestTimeout' => 2000]);
        $seen = 0;
        foreach ($client->stream('/ipcserver/stats/watch', ['interval' => 10]) as $stats) {
            $this->assertIsArray($stats);
            if (++$seen === 2) {
                break;
            }
        }
        $this->assertSame(['x' => 1], $client->send('/ipcserver/test/echo', ['x' => 1]));
        $this->assertNoStreamLeftRunning($client);
    }

    public function testAnItemSlowerThanTheTimeoutThrowsAndTheClientCarriesOn(): void
    {
        $this->twoSlotServer();
        $client = $this->client(['requestTimeout' => 200]);
        $got = [];
        $started = microtime(true);
        try {
            foreach ($client->stream(self::STREAM, ['count' => 3, 'interval' => 5000]) as $item) {
                $got[] = $item;
            }
            $this->fail('an item slower than the timeout must throw');
        } catch (TimeoutException $e) {
            $this->assertSame(Client::E_TIMEOUT, $e->getCode());
        }
        $this->assertLessThan(1.5, microtime(true) - $started);
        $this->assertLessThanOrEqual(1, count($got));
        // The cancel was sent: the stream's late lines never reach the next call.
        $this->assertSame(['y' => 2], $client->send('/ipcserver/test/echo', ['y' => 2]));
        $this->assertNoStreamLeftRunning($client);
    }

    public function testAPlainCallToAStreamingRouteGetsStreamRequired(): void
    {
        // send() keeps the original's contract: an error reply's data is returned, not thrown.
        $client = $this->client();
        $reply = $client->send(self::STREAM, ['count' => 3]);
        $this->assertSame('stream_required', $reply['code'] ?? null);
        $this->assertSame(['z' => 3], $client->send('/ipcserver/test/echo', ['z' => 3]), 'no stray lines');

        $legacy = new PixlIPCClient($this->server->socketPath);
        $request = ['count' => 3];
        $reply = $legacy->send(self::STREAM, $request);
        $this->assertSame('stream_required', $reply['code'] ?? null);
    }

    public function testStreamOnANonStreamingRouteYieldsItsOneReply(): void
    {
        $client = $this->client();
        $this->assertSame([['a' => 'b']], iterator_to_array($client->stream('/ipcserver/test/echo', ['a' => 'b']), false));
    }

    public function testAnUnknownRouteEndsTheStreamWithTheServersError(): void
    {
        $client = $this->client();
        try {
            iterator_to_array($client->stream('/no/such/route', []));
            $this->fail('must throw');
        } catch (ServerErrorException $e) {
            $this->assertSame(Client::E_SERVER_ERROR, $e->getCode());
            $this->assertSame('no_handler_found', $e->getErrorCode());
        }
    }

    public function testTheLegacyClassStreamsToo(): void
    {
        $legacy = new PixlIPCClient($this->server->socketPath);
        $this->assertCount(3, iterator_to_array($legacy->stream(self::STREAM, ['count' => 2]), false));
    }

    public function testAServerKilledMidStreamThrows5005(): void
    {
        $client = $this->client(['requestTimeout' => 10000]);
        $got = [];
        $started = microtime(true);
        try {
            foreach ($client->stream(self::STREAM, ['count' => 100000, 'interval' => 20]) as $item) {
                $got[] = $item;
                if (count($got) === 2) {
                    $this->server->stop(true);
                }
            }
            $this->fail('must throw');
        } catch (ServerClosedException $e) {
            $this->assertSame(Client::E_SERVER_CLOSE, $e->getCode());
        }
        $this->assertLessThan(5.0, microtime(true) - $started, 'never waits for the 10 s timeout');
        $this->assertGreaterThanOrEqual(2, count($got));
        $this->assertFalse($client->isConnected());
    }

    public function testAServerShuttingDownEndsTheStreamWithShuttingDown(): void
    {
        $client = $this->client(['requestTimeout' => 10000]);
        $got = [];
        try {
            foreach ($client->stream(self::STREAM, ['count' => 100000, 'interval' => 20]) as $item) {
                $got[] = $item;
                if (count($got) === 2) {
                    posix_kill($this->server->pid(), SIGTERM);
                }
            }
            $this->fail('must throw');
        } catch (ServerErrorException $e) {
            $this->assertSame('shutting_down', $e->getErrorCode());
        }
    }
}
