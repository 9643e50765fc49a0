<?php

declare(strict_types=1);

namespace PixlIPC\Tests;

use PHPUnit\Framework\TestCase;
use PixlIPC\Client;
use PixlIPC\Exception\ReplyTooLargeException;
use PixlIPC\Exception\ServerClosedException;
use PixlIPC\Exception\ServerErrorException;
use PixlIPC\Exception\TimeoutException;

/** stream() on a socket pair, with this test playing the server line by line. */
final class StreamPairTest extends TestCase
{
    /** @return array{0: Client, 1: resource} */
    private function clientAndPeer(array $options = []): array
    {
        [$near, $far] = stream_socket_pair(STREAM_PF_UNIX, STREAM_SOCK_STREAM, STREAM_IPPROTO_IP);
        return [Client::fromStream($near, $options + ['requestTimeout' => 1000]), $far];
    }

    /** The lines the client wrote so far, decoded (waits up to 1 s for $count of them). */
    private static function sent($peer, int $count): array
    {
        stream_set_blocking($peer, false);
        $lines = [];
        $buffer = '';
        $deadline = microtime(true) + 1;
        while (count($lines) < $count && microtime(true) < $deadline) {
            $buffer .= (string) fread($peer, 65536);
            while (($end = strpos($buffer, "\n")) !== false) {
                $lines[] = json_decode(substr($buffer, 0, $end), true);
                $buffer = substr($buffer, $end + 1);
            }
            usleep(1000);
        }
        return $lines;
    }

    private static function items(int $count, string $id = 'rq0'): string
    {
        $out = '';
        for ($i = 0; $i < $count; $i++) {
            $out .= "{\"ipcReqID\":\"$id\",\"data\":{\"i\":$i},\"ipcMore\":true}\n";
        }
        return $out;
    }

    public function testItemsThenTheFinalValueInOrderAndTheRequestAsksForAStream(): void
    {
        [$client, $peer] = $this->clientAndPeer();
        fwrite($peer, self::items(3) . "{\"ipcReqID\":\"rq0\",\"data\":{\"done\":3}}\n");
        $got = iterator_to_array($client->stream('/s', ['count' => 3]), false);
        $this->assertSame([['i' => 0], ['i' => 1], ['i' => 2], ['done' => 3]], $got);
        [$request] = self::sent($peer, 1);
        $this->assertSame(['uri', 'ipcReqID', 'data', 'ipcStream', 'pid', 'userAgent'], array_keys($request));
        $this->assertSame(['/s', 'rq0', ['count' => 3], true], array_slice(array_values($request), 0, 4));
        // A stream that ended by itself is not cancelled.
        $this->assertSame([], self::sent($peer, 1));
    }

    public function testAFinalLineWithoutDataOrWithNullDataYieldsNothingMore(): void
    {
        [$client, $peer] = $this->clientAndPeer();
        fwrite($peer, self::items(1) . "{\"ipcReqID\":\"rq0\"}\n" . self::items(1, 'rq1') . "{\"ipcReqID\":\"rq1\",\"data\":null}\n");
        $this->assertSame([['i' => 0]], iterator_to_array($client->stream('/s', []), false));
        $this->assertSame([['i' => 0]], iterator_to_array($client->stream('/s', []), false));
    }

    public function testANonStreamingRoutesOneReplyIsYieldedAndTheLoopEnds(): void
    {
        [$client, $peer] = $this->clientAndPeer();
        fwrite($peer, "{\"ipcReqID\":\"rq0\",\"data\":{\"echo\":1}}\n");
        $this->assertSame([['echo' => 1]], iterator_to_array($client->stream('/echo', ['echo' => 1]), false));
    }

    public function testAnErrorInDataIsThrownAfterTheItemsBeforeIt(): void
    {
        [$client, $peer] = $this->clientAndPeer();
        fwrite($peer, self::items(2) . "{\"ipcReqID\":\"rq0\",\"data\":{\"code\":\"handler_error\",\"message\":\"boom\"}}\n");
        $got = [];
        try {
            foreach ($client->stream('/s', []) as $item) {
                $got[] = $item;
            }
            $this->fail('the error final line must throw');
        } catch (ServerErrorException $e) {
            $this->assertSame(Client::E_SERVER_ERROR, $e->getCode());
            $this->assertSame('handler_error', $e->getErrorCode());
            $this->assertStringContainsString('boom', $e->getMessage());
        }
        $this->assertSame([['i' => 0], ['i' => 1]], $got);
        $this->assertCount(1, self::sent($peer, 2), 'no cancel after the final line');
    }

    public function testATopLevelErrorIsThrown(): void
    {
        [$client, $peer] = $this->clientAndPeer();
        fwrite($peer, "{\"ipcReqID\":\"rq0\",\"code\":\"shutting_down\",\"message\":\"bye\"}\n");
        try {
            iterator_to_array($client->stream('/s', []));
            $this->fail('must throw');
        } catch (ServerErrorException $e) {
            $this->assertSame('shutting_down', $e->getErrorCode());
            $this->assertSame('bye', $e->getReply()['message']);
        }
    }

    public function testBreakSendsTheCancelAndTheStreamsLateLinesAreSkippedByTheNextCall(): void
    {
        [$client, $peer] = $this->clientAndPeer();
        fwrite($peer, self::items(2));
        foreach ($client->stream('/s', []) as $item) {
            $this->assertSame(['i' => 0], $item);
            break;
        }
        $lines = self::sent($peer, 2);
        $this->assertCount(2, $lines);
        $this->assertSame(['ipcReqID' => 'rq0', 'ipcCancel' => true], $lines[1]);
        // In flight: an item and the cancelled final line, then the next call's reply.
        fwrite($peer, self::items(1) . "{\"ipcReqID\":\"rq0\",\"code\":\"cancelled\",\"message\":\"c\"}\n{\"ipcReqID\":\"rq1\",\"data\":\"mine\"}\n");
        $this->assertSame('mine', $client->send('/x', []));
    }

    public function testDestroyingASuspendedStreamSendsTheCancel(): void
    {
        [$client, $peer] = $this->clientAndPeer();
        fwrite($peer, self::items(2));
        $stream = $client->stream('/s', []);
        $this->assertSame(['i' => 0], $stream->current());
        unset($stream);
        $lines = self::sent($peer, 2);
        $this->assertSame(['ipcReqID' => 'rq0', 'ipcCancel' => true], $lines[1] ?? null);
    }

    public function testAnExceptionInTheLoopBodySendsTheCancel(): void
    {
        [$client, $peer] = $this->clientAndPeer();
        fwrite($peer, self::items(2));
        try {
            foreach ($client->stream('/s', []) as $item) {
                throw new \RuntimeException('user code failed');
            }
        } catch (\RuntimeException $e) {
            $this->assertSame('user code failed', $e->getMessage());
        }
        $lines = self::sent($peer, 2);
        $this->assertSame(['ipcReqID' => 'rq0', 'ipcCancel' => true], $lines[1] ?? null);
    }

    public function testTheTimeoutAppliesToEachLineAndSendsTheCancel(): void
    {
        [$client, $peer] = $this->clientAndPeer(['requestTimeout' => 150]);
        fwrite($peer, self::items(1));
        $stream = $client->stream('/s', []);
        $this->assertSame(['i' => 0], $stream->current());
        // The loop body took longer than the timeout: the wait for the next line starts now.
        usleep(300_000);
        fwrite($peer, self::items(1));
        $stream->next();
        $this->assertSame(['i' => 0], $stream->current());
        $started = microtime(true);
        try {
            $stream->next();
            $this->fail('no line within the timeout must throw');
        } catch (TimeoutException $e) {
            $this->assertSame(Client::E_TIMEOUT, $e->getCode());
        }
        // It waited for the timeout, and not much longer (generous: the machine may be loaded).
        $waited = microtime(true) - $started;
        $this->assertGreaterThanOrEqual(0.14, $waited);
        $this->assertLessThan(1.0, $waited);
        $lines = self::sent($peer, 2);
        $this->assertSame(['ipcReqID' => 'rq0', 'ipcCancel' => true], $lines[1] ?? null);
    }

    public function testThePeerClosingMidStreamThrows5005(): void
    {
        [$client, $peer] = $this->clientAndPeer(['requestTimeout' => 5000]);
        fwrite($peer, self::items(1));
        $got = [];
        $started = microtime(true);
        try {
            foreach ($client->stream('/s', []) as $item) {
                $got[] = $item;
                fclose($peer);
            }
            $this->fail('must throw');
        } catch (ServerClosedException $e) {
            $this->assertSame(Client::E_SERVER_CLOSE, $e->getCode());
        }
        $this->assertSame([['i' => 0]], $got);
        $this->assertLessThan(1.0, microtime(true) - $started);
        $this->assertFalse($client->isConnected());
    }

    public function testACallInsideTheLoopKeepsTheStreamsLinesForIt(): void
    {
        [$client, $peer] = $this->clientAndPeer();
        fwrite($peer, self::items(1));
        $got = [];
        foreach ($client->stream('/s', []) as $item) {
            $got[] = $item;
            if (count($got) === 1) {
                // The stream's next lines arrive before the reply of the call made in the loop.
                fwrite($peer, self::items(3) . "{\"ipcReqID\":\"rq1\",\"data\":\"inner\"}\n{\"ipcReqID\":\"rq0\",\"data\":\"last\"}\n");
                $this->assertSame('inner', $client->send('/inner', []));
            }
        }
        $this->assertSame([['i' => 0], ['i' => 0], ['i' => 1], ['i' => 2], 'last'], $got);
    }

    public function testTwoStreamsInterleavedOnOneConnectionEachGetTheirOwnItems(): void
    {
        [$client, $peer] = $this->clientAndPeer();
        fwrite($peer, self::items(1, 'rq0'));
        $outer = [];
        $inner = [];
        foreach ($client->stream('/a', []) as $item) {
            $outer[] = $item;
            if (count($outer) === 1) {
                fwrite($peer, "{\"ipcReqID\":\"rq1\",\"data\":\"b0\",\"ipcMore\":true}\n"
                    . "{\"ipcReqID\":\"rq0\",\"data\":\"a1\",\"ipcMore\":true}\n"
                    . "{\"uri\":\"/push\",\"data\":\"not a reply\"}\n"
                    . "{\"ipcReqID\":\"rq1\",\"data\":\"b1\",\"ipcMore\":true}\n"
                    . "{\"ipcReqID\":\"rq0\",\"data\":\"a2\"}\n"
                    . "{\"ipcReqID\":\"rq1\"}\n");
                foreach ($client->stream('/b', []) as $b) {
                    $inner[] = $b;
                }
            }
        }
        $this->assertSame(['b0', 'b1'], $inner);
        $this->assertSame([['i' => 0], 'a1', 'a2'], $outer);
    }

    public function testLinesKeptForAStreamAreBoundedTheStreamIsCancelledAndFails5007(): void
    {
        [$client, $peer] = $this->clientAndPeer(['maxMessageBytes' => 4096]);
        fwrite($peer, self::items(1));
        $got = [];
        try {
            foreach ($client->stream('/s', []) as $item) {
                $got[] = $item;
                // 200 lines (~9 KB) for the stream before the inner call's reply.
                fwrite($peer, self::items(200) . "{\"ipcReqID\":\"rq1\",\"data\":\"inner\"}\n");
                $this->assertSame('inner', $client->send('/inner', []));
            }
            $this->fail('the stream must fail');
        } catch (ReplyTooLargeException $e) {
            $this->assertSame(Client::E_REPLY_TOO_LARGE, $e->getCode());
            $this->assertStringContainsString('Stream rq0 cancelled', $e->getMessage());
        }
        $this->assertSame([['i' => 0]], $got);
        $lines = self::sent($peer, 4);
        // The request, the inner request, one cancel (sent when the queue overflowed).
        $this->assertCount(3, $lines);
        $this->assertSame(['ipcReqID' => 'rq0', 'ipcCancel' => true], $lines[2]);
        // The connection is still in step.
        fwrite($peer, "{\"ipcReqID\":\"rq0\",\"code\":\"cancelled\"}\n{\"ipcReqID\":\"rq2\",\"data\":\"after\"}\n");
        $this->assertSame('after', $client->send('/x', []));
    }
}
