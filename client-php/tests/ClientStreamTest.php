<?php

declare(strict_types=1);

namespace PixlIPC\Tests;

use PHPUnit\Framework\TestCase;
use PixlIPC\Client;
use PixlIPC\Exception\BadRequestTypeException;
use PixlIPC\Exception\BadResponseException;
use PixlIPC\Exception\TimeoutException;

/** The client's reply handling on a socket pair, with this test playing the server. */
final class ClientStreamTest extends TestCase
{
    /** @return array{0: Client, 1: resource} */
    private function clientAndPeer(array $options = []): array
    {
        [$near, $far] = stream_socket_pair(STREAM_PF_UNIX, STREAM_SOCK_STREAM, STREAM_IPPROTO_IP);
        return [Client::fromStream($near, $options + ['requestTimeout' => 1000]), $far];
    }

    public function testTheRequestIsOneLineWithTheOriginalsFields(): void
    {
        [$client, $peer] = $this->clientAndPeer(['userAgent' => 'unit']);
        fwrite($peer, "{\"ipcReqID\":\"rq0\",\"data\":1}\n");
        $request = ['a' => 'b/c'];
        $this->assertSame(1, $client->send('/x/y', $request));
        $sent = fgets($peer);
        $this->assertStringEndsWith("\n", $sent);
        $decoded = json_decode($sent, true);
        $this->assertSame(['uri', 'ipcReqID', 'data', 'pid', 'userAgent'], array_keys($decoded));
        $this->assertSame(['/x/y', 'rq0', ['a' => 'b/c'], getmypid(), 'unit'], array_values($decoded));
    }

    public function testStaleRepliesPushesAndNonJsonLinesAreSkipped(): void
    {
        [$client, $peer] = $this->clientAndPeer();
        fwrite($peer, "{\"ipcReqID\":\"rq7\",\"data\":\"stale\"}\n");
        fwrite($peer, "{\"uri\":\"/events\",\"data\":\"push\"}\n\nhello\n");
        fwrite($peer, "{\"ipcReqID\":null,\"code\":\"invalid_json\",\"message\":\"x\"}\n");
        fwrite($peer, "{\"ipcReqID\":\"rq0\",\"data\":{\"mine\":true}}\n");
        $request = [];
        $this->assertSame(['mine' => true], $client->send('/x', $request));
    }

    public function testATimeoutReturnsFalseAndTheLateReplyIsSkippedByTheNextSend(): void
    {
        [$client, $peer] = $this->clientAndPeer(['requestTimeout' => 100]);
        $request = [];
        $started = microtime(true);
        $this->assertFalse($client->send('/slow', $request));
        $this->assertLessThan(0.5, microtime(true) - $started);
        fwrite($peer, "{\"ipcReqID\":\"rq0\",\"data\":\"late\"}\n{\"ipcReqID\":\"rq1\",\"data\":\"on time\"}\n");
        $this->assertSame('on time', $client->send('/next', $request));
    }

    public function testAPerCallTimeoutOverridesTheDefault(): void
    {
        [$client, $peer] = $this->clientAndPeer(['requestTimeout' => 5000]);
        $request = [];
        $started = microtime(true);
        $this->assertFalse($client->send('/slow', $request, 50));
        $this->assertLessThan(1.0, microtime(true) - $started);
    }

    public function testThrowOnTimeoutThrowsCode5006(): void
    {
        [$client, $peer] = $this->clientAndPeer(['requestTimeout' => 50, 'throwOnTimeout' => true]);
        $request = [];
        $this->expectException(TimeoutException::class);
        $this->expectExceptionCode(Client::E_TIMEOUT);
        $client->send('/slow', $request);
    }

    public function testARequestMustBeAnArrayOrObject(): void
    {
        [$client] = $this->clientAndPeer();
        $request = 'a string';
        $this->expectException(BadRequestTypeException::class);
        $this->expectExceptionCode(5002);
        $this->expectExceptionMessage('Request must be an object or associative array');
        $client->send('/x', $request);
    }

    public function testGarbageJsonIsABadResponse(): void
    {
        [$client, $peer] = $this->clientAndPeer();
        fwrite($peer, "{not json}\n");
        $request = [];
        $this->expectException(BadResponseException::class);
        $this->expectExceptionCode(5004);
        $this->expectExceptionMessageMatches('/^Could not json_decode response/');
        $client->send('/x', $request);
    }
}
