<?php

declare(strict_types=1);

namespace PixlIPC;

use PixlIPC\Exception\BadResponseException;
use PixlIPC\Exception\ServerClosedException;

/**
 * Buffered line reads from a socket with one deadline for the whole line, so a large reply that
 * arrives in many pieces is neither cut nor mistaken for a timeout (the original applied its
 * timeout to each fgets). Bytes after the line stay buffered for the next read.
 *
 * Work is linear in the bytes received: lines are taken from an offset into the buffer (the
 * consumed part is dropped only once it is at least half of the buffer), a partial line is never
 * searched twice, and each fill reads at most FILL_LIMIT bytes, so a server that floods cannot
 * keep one call inside fill() or make it copy its backlog once per line. The deadline is checked
 * on every call, also when a complete line is already buffered.
 */
final class LineReader
{
    private const CHUNK = 65536;
    private const FILL_LIMIT = 1 << 20;

    private string $buffer = '';
    /** Start of the unread part of $buffer. */
    private int $pos = 0;
    /** Where to resume looking for "\n" (everything from $pos up to here has none). */
    private int $scanned = 0;

    /**
     * @param resource $stream A connected stream; it is switched to non-blocking mode.
     */
    public function __construct(private $stream, private int $maxLineBytes)
    {
        stream_set_blocking($this->stream, false);
    }

    /**
     * The next line without its "\n" (and "\r"), or null when $deadline (microtime(true)) has
     * passed, even if a complete line is already buffered.
     *
     * With $keepEnding the line may end with its "\n" (or "\r\n"): when it is all that is
     * buffered it is handed over as it is, without the copy cutting its ending off would take
     * (the reply of a call made one at a time usually is; for JSON the ending is whitespace).
     *
     * @throws ServerClosedException when the peer closed the connection.
     * @throws BadResponseException when a line exceeds maxLineBytes.
     */
    public function readLine(float $deadline, bool $keepEnding = false): ?string
    {
        while (true) {
            $left = $deadline - microtime(true);
            if ($left <= 0) {
                return null;
            }
            $end = strpos($this->buffer, "\n", max($this->pos, $this->scanned));
            if ($end !== false) {
                if ($keepEnding && $this->pos === 0 && $end === strlen($this->buffer) - 1) {
                    // The buffer is this line: no substr copy of it (100 KB replies measured
                    // about 100,000 instructions a call, the gap to the original client).
                    $line = $this->buffer;
                    $this->buffer = '';
                    $this->scanned = 0;
                    return $line;
                }
                $line = substr($this->buffer, $this->pos, $end - $this->pos);
                $this->pos = $end + 1;
                $this->scanned = $this->pos;
                if ($this->pos >= strlen($this->buffer)) {
                    $this->buffer = '';
                    $this->pos = $this->scanned = 0;
                } elseif ($this->pos > self::CHUNK && $this->pos * 2 >= strlen($this->buffer)) {
                    // Drop the consumed part; amortised linear since it is at least half.
                    $this->buffer = substr($this->buffer, $this->pos);
                    $this->pos = $this->scanned = 0;
                }
                return rtrim($line, "\r");
            }
            $this->scanned = strlen($this->buffer);
            if ($this->scanned - $this->pos > $this->maxLineBytes) {
                $this->buffer = '';
                $this->pos = $this->scanned = 0;
                throw new BadResponseException("Reply exceeds maxMessageBytes ({$this->maxLineBytes} bytes)");
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

    /** Reads what is available now, up to FILL_LIMIT bytes. */
    private function fill(): void
    {
        $got = 0;
        while ($got < self::FILL_LIMIT) {
            $chunk = fread($this->stream, self::CHUNK);
            if ($chunk === false || $chunk === '') {
                break;
            }
            $got += strlen($chunk);
            $this->buffer .= $chunk;
            if (strlen($chunk) < self::CHUNK) {
                // Short read: the socket is most likely drained. Reading again would only
                // return EAGAIN (one wasted syscall per reply); readLine() selects again if
                // the line is not complete.
                break;
            }
        }
        if ($got === 0 && feof($this->stream)) {
            throw new ServerClosedException('Server closed the connection (readMessage)');
        }
    }
}
