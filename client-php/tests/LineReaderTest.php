<?php

declare(strict_types=1);

namespace PixlIPC\Tests;

use PHPUnit\Framework\TestCase;
use PixlIPC\Exception\BadResponseException;
use PixlIPC\Exception\ServerClosedException;
use PixlIPC\LineReader;

/** LineReader on a socket pair: no server involved. */
final class LineReaderTest extends TestCase
{
    /** @return array{0: resource, 1: resource} */
    private function pair(): array
    {
        $pair = stream_socket_pair(STREAM_PF_UNIX, STREAM_SOCK_STREAM, STREAM_IPPROTO_IP);
        $this->assertIsArray($pair);
        return $pair;
    }

    public function testALineSplitAcrossWritesIsReassembled(): void
    {
        [$near, $far] = $this->pair();
        $reader = new LineReader($near, 1024);
        fwrite($far, '{"a":');
        $this->assertNull($reader->readLine(microtime(true) + 0.05), 'no newline yet');
        fwrite($far, "1}\r\n{\"b\":2}\n");
        $this->assertSame('{"a":1}', $reader->readLine(microtime(true) + 1));
        $this->assertSame('{"b":2}', $reader->readLine(microtime(true) + 1), 'the rest stays buffered');
    }

    public function testKeepEndingHandsOverALoneLineWithItsEndingAndCutsOthers(): void
    {
        [$near, $far] = $this->pair();
        $reader = new LineReader($near, 1024);
        fwrite($far, "{\"a\":1}\r\n");
        $this->assertSame("{\"a\":1}\r\n", $reader->readLine(microtime(true) + 1, true), 'all that was buffered');
        fwrite($far, "{\"b\":2}\n{\"c\":3}\n");
        $this->assertSame('{"b":2}', $reader->readLine(microtime(true) + 1, true), 'more follows: cut out');
        $this->assertSame('{"c":3}', $reader->readLine(microtime(true) + 1, true), 'not at the buffer\'s start: cut out');
        fwrite($far, "{\"d\":4}\n");
        $this->assertSame('{"d":4}', $reader->readLine(microtime(true) + 1), 'without the flag, as before');
    }

    public function testTheDeadlineCoversTheWholeLineNotEachRead(): void
    {
        [$near, $far] = $this->pair();
        $reader = new LineReader($near, 1 << 20);
        // A reply trickling in slower than the deadline allows: the reader gives up on time.
        fwrite($far, str_repeat('x', 1000));
        $started = microtime(true);
        $this->assertNull($reader->readLine($started + 0.2));
        $elapsed = microtime(true) - $started;
        $this->assertGreaterThanOrEqual(0.19, $elapsed);
        $this->assertLessThan(0.5, $elapsed);
    }

    public function testALargeLineArrivingInPiecesWithinTheDeadlineIsComplete(): void
    {
        [$near, $far] = $this->pair();
        stream_set_blocking($far, false);
        $reader = new LineReader($near, 4 << 20);
        $payload = str_repeat('y', 2 << 20);
        $line = null;
        $deadline = microtime(true) + 5;
        $offset = 0;
        // Interleave writes and reads as a real peer would.
        while ($line === null && microtime(true) < $deadline) {
            if ($offset <= strlen($payload)) {
                $chunk = $offset < strlen($payload) ? substr($payload, $offset, 65536) : "\n";
                $written = fwrite($far, $chunk);
                $offset += $written ?: 0;
            }
            $line = $reader->readLine(microtime(true) + 0.01);
        }
        $this->assertSame($payload, $line);
    }

    public function testLinesOfVeryDifferentSizesInTurnAreWhole(): void
    {
        // Each read is sized after the last line: a much longer line takes more reads, a much
        // shorter one a read of more than it needs; both come out whole.
        [$near, $far] = $this->pair();
        stream_set_blocking($far, false);
        $reader = new LineReader($near, 4 << 20);
        foreach ([10, 300000, 5, 2000000, 100] as $length) {
            $line = str_repeat('w', $length);
            $pending = "$line\n";
            $got = null;
            $deadline = microtime(true) + 5;
            while ($got === null && microtime(true) < $deadline) {
                if ($pending !== '') {
                    $written = fwrite($far, $pending);
                    $pending = substr($pending, $written ?: 0);
                }
                $got = $reader->readLine(microtime(true) + 0.01, true);
            }
            $this->assertSame($line, rtrim((string) $got, "\n"), "a line of $length bytes");
        }
    }

    public function testEndOfStreamIsServerClosed(): void
    {
        [$near, $far] = $this->pair();
        $reader = new LineReader($near, 1024);
        fclose($far);
        $this->expectException(ServerClosedException::class);
        $this->expectExceptionCode(5005);
        $this->expectExceptionMessage('Server closed the connection (readMessage)');
        $reader->readLine(microtime(true) + 1);
    }

    public function testAnOverLongLineIsABadResponse(): void
    {
        [$near, $far] = $this->pair();
        $reader = new LineReader($near, 16);
        fwrite($far, str_repeat('z', 64));
        $this->expectException(BadResponseException::class);
        $this->expectExceptionCode(5004);
        $reader->readLine(microtime(true) + 1);
    }

    public function testAnOverLongLineArrivingWithItsNewlineInOneReadIsABadResponse(): void
    {
        // The limit holds however the line is read: a socket drained 1 MiB at a time must not
        // let a line through whose "\n" came in the same read as the bytes over the limit.
        [$near, $far] = $this->pair();
        $reader = new LineReader($near, 1000);
        fwrite($far, str_repeat('z', 100000) . "\n");
        try {
            $reader->readLine(microtime(true) + 1, true);
            $this->fail('a line of 100000 bytes over a limit of 1000 must be refused');
        } catch (BadResponseException $e) {
            $this->assertSame(5004, $e->getCode());
            $this->assertSame('Reply exceeds maxMessageBytes (1000 bytes)', $e->getMessage());
        }
    }

    public function testALineOfExactlyTheLimitIsWholeAndOneByteMoreIsRefused(): void
    {
        [$near, $far] = $this->pair();
        $reader = new LineReader($near, 1000);
        fwrite($far, str_repeat('a', 1000) . "\n");
        $this->assertSame(str_repeat('a', 1000), $reader->readLine(microtime(true) + 1));
        fwrite($far, str_repeat('b', 1000) . "\n" . str_repeat('c', 1001) . "\n");
        $this->assertSame(str_repeat('b', 1000), $reader->readLine(microtime(true) + 1, true));
        $this->expectException(BadResponseException::class);
        $this->expectExceptionCode(5004);
        $reader->readLine(microtime(true) + 1, true);
    }
}
