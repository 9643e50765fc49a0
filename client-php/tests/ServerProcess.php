<?php

declare(strict_types=1);

namespace PixlIPC\Tests;

use RuntimeException;

/**
 * The real pixl-ipc-server binary on a temp socket, started and stopped by PID. A missing
 * binary is an error, never a skip.
 */
final class ServerProcess
{
    /** @var resource */
    private $process;
    private int $pid;
    /** @var array<int, resource> */
    private array $pipes;

    public function __construct(public readonly string $socketPath, array $args = [])
    {
        $command = array_merge([self::binary(), '--socket', $socketPath], $args);
        $process = proc_open($command, [0 => ['file', '/dev/null', 'r'], 1 => ['pipe', 'w'], 2 => ['file', '/dev/null', 'w']], $pipes);
        if (!is_resource($process)) {
            throw new RuntimeException('cannot start ' . self::binary());
        }
        $this->process = $process;
        $this->pipes = $pipes;
        $this->pid = proc_get_status($process)['pid'];
        $deadline = microtime(true) + 15;
        stream_set_blocking($pipes[1], false);
        $banner = '';
        while (!str_contains($banner, "\n")) {
            if (microtime(true) > $deadline || !proc_get_status($process)['running']) {
                throw new RuntimeException("server did not start: $banner");
            }
            $read = [$pipes[1]];
            $w = $e = null;
            if (@stream_select($read, $w, $e, 0, 50_000)) {
                $banner .= (string) fread($pipes[1], 4096);
            }
        }
    }

    public static function binary(): string
    {
        $binary = getenv('PIXL_IPC_SERVER_BIN') ?: __DIR__ . '/../../target/debug/pixl-ipc-server';
        if (!is_executable($binary)) {
            throw new RuntimeException(
                "pixl-ipc-server not found at $binary: build it (cargo build -p pixl-ipc-server) or set PIXL_IPC_SERVER_BIN"
            );
        }
        return $binary;
    }

    /** A fresh socket path in the temp directory. */
    public static function tempSocket(): string
    {
        return sys_get_temp_dir() . '/pixl-ipc-php-' . getmypid() . '-' . bin2hex(random_bytes(4)) . '.sock';
    }

    /** The server's process id. */
    public function pid(): int
    {
        return $this->pid;
    }

    /** SIGTERM (graceful drain) or SIGKILL, then wait for the exit. */
    public function stop(bool $kill = false): void
    {
        if (!proc_get_status($this->process)['running']) {
            return;
        }
        posix_kill($this->pid, $kill ? SIGKILL : SIGTERM);
        $deadline = microtime(true) + 15;
        while (proc_get_status($this->process)['running']) {
            if (microtime(true) > $deadline) {
                posix_kill($this->pid, SIGKILL);
            }
            usleep(10_000);
        }
    }

    public function __destruct()
    {
        $this->stop(true);
        foreach ($this->pipes as $pipe) {
            @fclose($pipe);
        }
        proc_close($this->process);
    }
}
