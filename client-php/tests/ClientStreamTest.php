<?php

declare(strict_types=1);

namespace PixlIPC\Tests;

use PHPUnit\Framework\TestCase;
use PixlIPC\Client;
use PixlIPC\Exception\BadRequestTypeException;
use PixlIPC\Exception\BadResponseException;
use PixlIPC\Exception\ReplyTooLargeException;
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

    public function testASubclassesOwnWriteAllAndReadReplyStillRunOnEverySend(): void
    {
        [$near, $far] = stream_socket_pair(STREAM_PF_UNIX, STREAM_SOCK_STREAM, STREAM_IPPROTO_IP);
        $client = LoggingClient::fromStream($near, ['requestTimeout' => 1000]);
        fwrite($far, "{\"ipcReqID\":\"rq0\",\"data\":1}\n{\"ipcReqID\":\"rq1\",\"data\":2}\n");
        $request = ['a' => 1];
        $this->assertSame(1, $client->send('/x', $request));
        $this->assertSame(2, $client->send('/x', $request));
        $this->assertSame(['write', 'read', 'write', 'read'], $client->calls);
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

    public function testABrokenLineWithThisCallsIdIsABadResponseNamingTheId(): void
    {
        [$client, $peer] = $this->clientAndPeer();
        fwrite($peer, "{\"ipcReqID\":\"rq0\",not json}\n");
        $request = [];
        try {
            $client->send('/x', $request);
            $this->fail('a broken reply to this call must fail it');
        } catch (BadResponseException $e) {
            $this->assertSame(5004, $e->getCode());
            $this->assertMatchesRegularExpression('/^Could not json_decode response, details:4 \(reply to rq0: Syntax error\)$/', $e->getMessage());
        }
        // The broken line was consumed whole: the next call reads its own reply, not leftovers.
        fwrite($peer, "{\"ipcReqID\":\"rq1\",\"data\":\"mine\"}\n");
        $this->assertSame('mine', $client->send('/x', $request));
    }

    public function testAReplyNestedPast512WithThisCallsIdFailsItWithTheReason(): void
    {
        [$client, $peer] = $this->clientAndPeer();
        fwrite($peer, '{"ipcReqID":"rq0","data":' . str_repeat('[', 600) . str_repeat(']', 600) . "}\n");
        $request = [];
        $this->expectException(BadResponseException::class);
        $this->expectExceptionCode(5004);
        $this->expectExceptionMessage('(reply to rq0: Maximum stack depth exceeded)');
        $client->send('/x', $request);
    }

    public function testUndecodableLinesThatAreNotThisCallsReplyNeverFailIt(): void
    {
        [$client, $peer] = $this->clientAndPeer();
        $deep = str_repeat('[', 600) . str_repeat(']', 600);
        $request = [];
        foreach (['rq0', 'rq1', 'rq2'] as $i => $id) {
            fwrite($peer, "{not json}\n");                                        // no id at all
            fwrite($peer, "{\"uri\":\"/events\",\"data\":$deep}\n");       // a push nested past 512
            fwrite($peer, "{\"ipcReqID\":\"rq9$i\",\"data\":$deep}\n");     // another call's reply, too deep
            fwrite($peer, "{\"ipcReqID\":\"rq7$i\",broken\n");               // another call's reply, broken
            fwrite($peer, "{\"data\":1,\"ipcReqID\":\"rq8$i\",broken\n");   // id not first, not ours
            fwrite($peer, "{\"ipcReqID\":\"$id\",\"data\":\"reply $i\"}\n");
            $this->assertSame("reply $i", $client->send('/x', $request), "call $i reads its own reply");
        }
    }

    public function testAPushThatQuotesThisCallsIdNeverFailsIt(): void
    {
        [$client, $peer] = $this->clientAndPeer(['maxReplyMemory' => 1 << 20]);
        $deep = str_repeat('[', 600) . str_repeat(']', 600);
        $tiny = implode(',', array_fill(0, 50000, '{}'));
        // Pushes that mention rq0 inside their data: nested too deep, too costly, broken.
        fwrite($peer, "{\"type\":\"push\",\"data\":{\"log\":{\"ipcReqID\":\"rq0\"},\"deep\":$deep}}\n");
        fwrite($peer, "{\"type\":\"push\",\"data\":{\"log\":{\"ipcReqID\":\"rq0\"},\"blob\":[$tiny]}}\n");
        fwrite($peer, "{\"type\":\"push\",\"data\":{\"about\":{\"ipcReqID\":\"rq0\"}},,}\n");
        fwrite($peer, "{\"ipcReqID\":\"rq0\",\"data\":\"mine\"}\n");
        $request = [];
        $this->assertSame('mine', $client->send('/x', $request));
    }

    public function testAReplyWhoseIdIsNotTheFirstKeyIsStillFound(): void
    {
        [$client, $peer] = $this->clientAndPeer();
        fwrite($peer, "{\"data\":{\"ipcReqID\":\"rq0\"},\"ipcReqID\":\"rq5\"}\n");
        fwrite($peer, "{\"data\":\"mine\", \"ipcReqID\" : \"rq0\"}\n");
        $request = [];
        $this->assertSame('mine', $client->send('/x', $request));
    }

    public function testALineStartingWithThisCallsIdThatDecodesToAnotherIsNotItsReply(): void
    {
        // json_decode keeps the last of duplicate keys: the leading id alone does not decide.
        [$client, $peer] = $this->clientAndPeer();
        fwrite($peer, "{\"ipcReqID\":\"rq0\",\"data\":\"not mine\",\"ipcReqID\":\"rq9\"}\n");
        fwrite($peer, "{\"ipcReqID\":\"rq0\",\"data\":\"mine\"}\n");
        $request = [];
        $this->assertSame('mine', $client->send('/x', $request));
    }

    public function testAnIdThatJsonEscapesIsMatchedByItsDecodedValue(): void
    {
        // A subclass's nextID() may return anything: `a\"b` is spelled "a\\\"b" in JSON, and a
        // line whose raw bytes start like the unescaped id (a different id) is not its reply.
        [$near, $peer] = stream_socket_pair(STREAM_PF_UNIX, STREAM_SOCK_STREAM, STREAM_IPPROTO_IP);
        $client = (new class ('(unused)') extends Client {
            protected function nextID()
            {
                return 'a\\"b';
            }
        })::fromStream($near, ['requestTimeout' => 1000]);
        fwrite($peer, "{\"ipcReqID\":\"a\\\"b\", broken\n");
        fwrite($peer, "{\"ipcReqID\":\"a\\\\\\\"b\",\"data\":\"mine\"}\n");
        $request = [];
        $this->assertSame('mine', $client->send('/x', $request));
    }

    public function testAReplyOverMaxMessageBytesIsRefusedWith5004EvenWhenItArrivesAtOnce(): void
    {
        // The whole line, newline included, is in the socket before the client reads it.
        [$client, $peer] = $this->clientAndPeer(['maxMessageBytes' => 1000]);
        fwrite($peer, '{"ipcReqID":"rq0","data":"' . str_repeat('x', 100000) . "\"}\n");
        $request = [];
        try {
            $client->send('/x', $request);
            $this->fail('a reply 100 times maxMessageBytes must be refused');
        } catch (BadResponseException $e) {
            $this->assertSame(Client::E_BAD_RESPONSE, $e->getCode());
            $this->assertSame('Reply exceeds maxMessageBytes (1000 bytes)', $e->getMessage());
        }
        $this->assertFalse($client->isConnected(), 'the connection is out of step: closed');
    }

    public function testAReplyTooLargeForMaxReplyMemoryIsRefusedWithCode5007AndTheConnectionKept(): void
    {
        [$client, $peer] = $this->clientAndPeer(['maxReplyMemory' => 1 << 20]);
        fwrite($peer, '{"ipcReqID":"rq0","data":[' . implode(',', array_fill(0, 10000, '{"":0}')) . "]}\n");
        $request = [];
        try {
            $client->send('/x', $request);
            $this->fail('must be refused');
        } catch (ReplyTooLargeException $e) {
            $this->assertSame(Client::E_REPLY_TOO_LARGE, $e->getCode());
            $this->assertSame(5007, $e->getCode());
        }
        // The same size as text is cheap to decode: accepted.
        $text = str_repeat("a", 50000);
        fwrite($peer, "{\"ipcReqID\":\"rq1\",\"data\":\"$text\"}\n");
        $this->assertSame($text, $client->send('/x', $request));
    }
}

/** A subclass that extends the client's protected I/O steps, as a user's might (to log them). */
final class LoggingClient extends Client
{
    /** @var list<string> */
    public array $calls = [];

    protected function writeAll(string $bytes, float $deadline): void
    {
        $this->calls[] = 'write';
        parent::writeAll($bytes, $deadline);
    }

    protected function readReply(string $ipcReqID, float $deadline)
    {
        $this->calls[] = 'read';
        return parent::readReply($ipcReqID, $deadline);
    }
}
