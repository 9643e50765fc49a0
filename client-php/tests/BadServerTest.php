<?php

declare(strict_types=1);

namespace PixlIPC\Tests;

use PHPUnit\Framework\TestCase;
use PixlIPC\Client;
use PixlIPC\Exception\IPCException;

/**
 * The client against servers that misbehave on purpose (tests/bad/bad_server.php): each test
 * states the bound it checks. Figures are printed to STDERR with PIXL_IPC_FIGURES=1.
 */
final class BadServerTest extends TestCase
{
    private static function figure(string $what, float $value, string $unit): void
    {
        if (getenv('PIXL_IPC_FIGURES')) {
            fwrite(STDERR, sprintf("\n[figure] %s: %.3f %s", $what, $value, $unit));
        }
    }

    private static function seconds(int $since): float
    {
        return (hrtime(true) - $since) / 1e9;
    }

    public function testAFloodOfPushesDoesNotOverrunTheTimeout(): void
    {
        // 8 MiB of small pushes waiting, no reply: send() must give up at its 500 ms deadline.
        $server = new BadServer('flood', '8');
        $client = new Client($server->socketPath, ['requestTimeout' => 500]);
        $request = [];
        $started = hrtime(true);
        $this->assertFalse($client->send('/x', $request));
        $elapsed = self::seconds($started);
        self::figure('flood of 8 MiB of pushes, 500 ms timeout: settled after', $elapsed, 's');
        $this->assertLessThan(0.5 + 0.3, $elapsed);
    }

    public function testTheReplyAfter8MiBOfPushesIsFoundInLinearTime(): void
    {
        $server = new BadServer('flood-then-reply', '8');
        $client = new Client($server->socketPath, ['requestTimeout' => 20000]);
        $request = [];
        $started = hrtime(true);
        $this->assertSame('after the flood', $client->send('/x', $request));
        $elapsed = self::seconds($started);
        self::figure('reply after 8 MiB (~230,000) pushes found after', $elapsed, 's');
        $this->assertLessThan(2.0, $elapsed);
    }

    public function testA24MiBReplyOfTinyObjectsIsRefusedBeforeItsDeadlineWithoutDecoding(): void
    {
        $server = new BadServer('bomb', '24');
        $client = new Client($server->socketPath, ['requestTimeout' => 1500]);
        $request = [];
        $before = memory_get_usage();
        memory_reset_peak_usage();
        $started = hrtime(true);
        try {
            $client->send('/x', $request);
            $this->fail('the reply must be refused');
        } catch (IPCException $e) {
            $this->assertSame(Client::E_REPLY_TOO_LARGE, $e->getCode(), $e->getMessage());
            $this->assertStringContainsString('maxReplyMemory', $e->getMessage());
        }
        $elapsed = self::seconds($started);
        $peak = (memory_get_peak_usage() - $before) / 1048576;
        self::figure('24 MiB reply of tiny objects, 1.5 s timeout: refused after', $elapsed, 's');
        self::figure('24 MiB reply of tiny objects: peak memory above the start', $peak, 'MiB');
        $this->assertLessThan(1.5, $elapsed);
        // The line itself (24 MiB) and the read buffer, never the decoded tree (~1.3 GiB).
        $this->assertLessThan(80, $peak);
        $this->assertTrue($client->isConnected(), 'the refused line was consumed whole: the connection stays usable');
    }

    public function testAReplyWhoseDecodingEndsPastTheDeadlineIsNotDelivered(): void
    {
        // 4 MiB of tiny objects completed 100 ms before the 600 ms deadline: decoding (~230 MiB,
        // 0.3-0.9 s here) would end past it, so the call times out by its deadline instead.
        $server = new BadServer('late-bomb', '4', '500');
        $client = new Client($server->socketPath, ['requestTimeout' => 600, 'maxReplyMemory' => 1 << 30]);
        $request = [];
        $started = hrtime(true);
        $result = $client->send('/x', $request);
        $elapsed = self::seconds($started);
        self::figure('4 MiB reply of tiny objects completed 100 ms before a 600 ms deadline: settled after', $elapsed, 's');
        $this->assertFalse($result, 'a reply that cannot be decoded before the deadline is a timeout');
        // The decode would end past the deadline, so it is not started: the call keeps it.
        $this->assertLessThan(0.6 + 0.05, $elapsed);
    }

    public function testUnderMemoryLimit128MA4MiBReplyThrowsInsteadOfAFatalError(): void
    {
        $server = new BadServer('bomb', '4');
        $script = sprintf(
            'require %s; $c = new PixlIPC\Client(%s, ["requestTimeout" => 10000, "maxReplyMemory" => 1 << 32]);'
            . ' $r = []; try { $c->send("/x", $r); echo "delivered"; } catch (Exception $e) { echo $e->getCode(), " ", $e->getMessage(); }'
            . ' echo "\n", memory_get_peak_usage();',
            var_export(__DIR__ . '/../autoload.php', true),
            var_export($server->socketPath, true)
        );
        $process = proc_open([PHP_BINARY, '-d', 'memory_limit=128M', '-d', 'display_errors=stderr', '-r', $script], [1 => ['pipe', 'w'], 2 => ['pipe', 'w']], $pipes);
        $out = stream_get_contents($pipes[1]);
        $err = stream_get_contents($pipes[2]);
        $status = proc_close($process);
        $this->assertSame(0, $status, "child: $out $err");
        [$first, $peak] = explode("\n", $out) + [1 => '0'];
        $this->assertStringStartsWith('5007 ', $first);
        $this->assertStringContainsString('memory_limit', $first);
        self::figure('4 MiB reply of tiny objects under memory_limit=128M: child peak', (int) $peak / 1048576, 'MiB');
    }
}
