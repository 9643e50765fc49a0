<?php

declare(strict_types=1);

namespace PixlIPC\Tests;

use RuntimeException;

/**
 * tests/bad/bad_server.php in a child process on a temp socket, started and stopped by PID:
 * a server that does exactly one bad thing (see that script for the modes).
 */
final class BadServer
{
    /** @var resource */
    private $process;
    /** @var array<int, resource> */
    private array $pipes;
    public readonly string $socketPath;

    public function __construct(string $mode, string ...$args)
    {
        $this->socketPath = ServerProcess::tempSocket();
        $command = array_merge([PHP_BINARY, '-d', 'memory_limit=-1', __DIR__ . '/bad/bad_server.php', $mode, $this->socketPath], $args);
        $process = proc_open($command, [0 => ['file', '/dev/null', 'r'], 1 => ['pipe', 'w'], 2 => ['file', '/dev/null', 'w']], $pipes);
        if (!is_resource($process)) {
            throw new RuntimeException('cannot start the bad server');
        }
        $this->process = $process;
        $this->pipes = $pipes;
        $read = [$pipes[1]];
        $w = $e = null;
        if (!@stream_select($read, $w, $e, 10) || trim((string) fgets($pipes[1])) !== 'ready') {
            $this->stop();
            throw new RuntimeException("bad server ($mode) did not start");
        }
    }

    public function stop(): void
    {
        if (is_resource($this->process)) {
            $pid = proc_get_status($this->process)['pid'];
            posix_kill($pid, 9);
            foreach ($this->pipes as $pipe) {
                @fclose($pipe);
            }
            proc_close($this->process);
        }
        @unlink($this->socketPath);
    }

    public function __destruct()
    {
        $this->stop();
    }
}
