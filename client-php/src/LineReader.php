<?php

declare(strict_types=1);

namespace PixlIPC;

use PixlIPC\Exception\BadResponseException;
use PixlIPC\Exception\ServerClosedException;

/**
 * Buffered line reads from a socket with one deadline for the whole line, so a large reply that
 * arrives in many pieces is neither cut nor mistaken for a timeout (the original applied its
 * timeout to each fgets). Bytes after the line stay buffered for the next read.
 */
final class LineReader
{
    private const CHUNK = 65536;

    private string $buffer = '';

    /**
     * @param resource $stream A connected stream; it is switched to non-blocking mode.
     */
    public function __construct(private $stream, private int $maxLineBytes)
    {
        stream_set_blocking($this->stream, false);
    }

    /**
     * The next line without its "\n" (and "\r"), or null when $deadline (microtime(true)) passes
     * first.
     *
     * @throws ServerClosedException when the peer closed the connection.
     * @throws BadResponseException when a line exceeds maxLineBytes.
     */
    public function readLine(float $deadline): ?string
    {
        while (true) {
            $end = strpos($this->buffer, "\n");
            if ($end !== false) {
                $line = substr($this->buffer, 0, $end);
                $this->buffer = (string) substr($this->buffer, $end + 1);
                return rtrim($line, "\r");
            }
            if (strlen($this->buffer) > $this->maxLineBytes) {
                $this->buffer = '';
                throw new BadResponseException("Reply exceeds maxMessageBytes ({$this->maxLineBytes} bytes)");
            }
            $left = $deadline - microtime(true);
            if ($left <= 0) {
                return null;
            }
            if (!$this->waitReadable($left)) {
                continue;
            }
            $this->fill();
        }
    }

    /** True when data (or EOF) is ready; false on a timeout or an interrupted wait. */
    private function waitReadable(float $seconds): bool
    {
        $read = [$this->stream];
        $write = null;
        $except = null;
        $whole = (int) floor($seconds);
        $ready = @stream_select($read, $write, $except, $whole, (int) (($seconds - $whole) * 1_000_000));
        return $ready !== false && $ready > 0;
    }

    /** Reads everything available now. */
    private function fill(): void
    {
        $got = false;
        while (true) {
            $chunk = fread($this->stream, self::CHUNK);
            if ($chunk === false || $chunk === '') {
                break;
            }
            $got = true;
            $this->buffer .= $chunk;
        }
        if (!$got && feof($this->stream)) {
            throw new ServerClosedException('Server closed the connection (readMessage)');
        }
    }
}
