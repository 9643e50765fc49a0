<?php

declare(strict_types=1);

namespace PixlIPC\Tests;

use InvalidArgumentException;
use PHPUnit\Framework\TestCase;
use PixlIPC\Client;
use PixlIPCClient;

/** Every option is checked when the client is built; the original's defaults are unchanged. */
final class OptionsTest extends TestCase
{
    public static function badOptions(): array
    {
        return [
            'requestTimeout INF' => ['requestTimeout', INF],
            'requestTimeout 1e19' => ['requestTimeout', 1e19],
            'requestTimeout NAN' => ['requestTimeout', NAN],
            'requestTimeout negative' => ['requestTimeout', -1],
            'requestTimeout zero' => ['requestTimeout', 0],
            'requestTimeout over 2^31-1 ms' => ['requestTimeout', 2147483648],
            'requestTimeout not numeric' => ['requestTimeout', 'soon'],
            'requestTimeout array' => ['requestTimeout', [500]],
            'connectTimeout INF' => ['connectTimeout', INF],
            'connectTimeout negative' => ['connectTimeout', -5],
            'maxMessageBytes zero' => ['maxMessageBytes', 0],
            'maxMessageBytes fractional' => ['maxMessageBytes', 10.5],
            'maxMessageBytes 1e19' => ['maxMessageBytes', 1e19],
            'maxReplyMemory negative' => ['maxReplyMemory', -1],
            'maxReplyMemory INF' => ['maxReplyMemory', INF],
            'throwOnTimeout string' => ['throwOnTimeout', 'yes'],
            'userAgent array' => ['userAgent', ['a']],
        ];
    }

    /** @dataProvider badOptions */
    public function testAnOutOfRangeOptionThrowsAtConstructionNamingIt(string $name, mixed $value): void
    {
        $this->expectException(InvalidArgumentException::class);
        $this->expectExceptionMessageMatches('/^PixlIPCClient option ' . $name . ' /');
        new PixlIPCClient('/tmp/x.sock', [$name => $value]);
    }

    public function testAPerCallTimeoutIsCheckedToo(): void
    {
        [$near] = stream_socket_pair(STREAM_PF_UNIX, STREAM_SOCK_STREAM, STREAM_IPPROTO_IP);
        $client = Client::fromStream($near);
        $request = [];
        $this->expectException(InvalidArgumentException::class);
        $client->send('/x', $request, -1);
    }

    public function testTheOriginalsDefaultsAndFormsStillWork(): void
    {
        [$near, $far] = stream_socket_pair(STREAM_PF_UNIX, STREAM_SOCK_STREAM, STREAM_IPPROTO_IP);
        // null options, null values, numeric strings and floats as the original took them.
        foreach ([null, [], ['requestTimeout' => null], ['requestTimeout' => '250', 'connectTimeout' => 100.5, 'throwOnTimeout' => 0]] as $options) {
            $this->assertInstanceOf(PixlIPCClient::class, new PixlIPCClient('/tmp/x.sock', $options));
        }
        $client = Client::fromStream($near, ['requestTimeout' => '100']);
        $request = [];
        $started = hrtime(true);
        $this->assertFalse($client->send('/x', $request));
        $elapsed = (hrtime(true) - $started) / 1e9;
        $this->assertGreaterThanOrEqual(0.09, $elapsed);
        $this->assertLessThan(0.5, $elapsed);
        $this->assertSame(500, Client::DEFAULT_REQUEST_TIMEOUT_MS);
        $this->assertSame(500, Client::DEFAULT_CONNECT_TIMEOUT_MS);
    }
}
