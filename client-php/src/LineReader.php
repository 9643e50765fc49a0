<?php

declare(strict_types=1);

namespace PixlIPC;

use PixlIPC\Exception\BadResponseException;
use PixlIPC\Exception\ServerClosedException;

// Imported so that PHP binds these calls when it compiles the file (strlen and is_array become
// single opcodes) instead of looking for a PixlIPC\ function of the same name at run time:
// they run for every request.
use function feof;
use function fread;
use function microtime;
use function stream_select;
use function strlen;
use function strpos;

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
    private const MIN_READ = 1024;

    private string $buffer = '';
    /** Start of the unread part of $buffer. */
    private int $pos = 0;
    /** Where to resume looking for "\n" (everything from $pos up to here has none). */
    private int $scanned = 0;
    /**
     * What the first fread() of a wait asks for: 1.5 times the last line handed over whole (see
     * readLine()), from MIN_READ to FILL_LIMIT.
     */
    private int $readSize = self::CHUNK;

    /**
     * @param resource $stream A connected stream; it is switched to non-blocking mode, and its
     *        read buffer is turned off so that one fread() takes all it asks for from the socket
     *        (through PHP's 8 KB buffer a 100 KB reply took 13 waits and reads; now one).
     */
    public function __construct(private $stream, private int $maxLineBytes)
    {
        stream_set_blocking($this->stream, false);
        stream_set_read_buffer($this->stream, 0);
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
        // Every reply passes here once or twice, so the wait and the first read are inline
        // rather than helper methods: a PHP method call costs more than the work they wrap.
        while (true) {
            $left = $deadline - microtime(true);
            if ($left <= 0) {
                return null;
            }
            if ($this->buffer !== '') {
                // Everything from $pos up to $scanned is known to hold no "\n".
                $end = strpos($this->buffer, "\n", $this->scanned);
                if ($end !== false) {
                    if ($end - $this->pos > $this->maxLineBytes) {
                        // Its "\n" came in the same read as the bytes over the limit (a read
                        // takes up to FILL_LIMIT): refused all the same, whatever the read sizes.
                        $this->refuseLongLine();
                    }
                    if ($keepEnding && $this->pos === 0 && $end === strlen($this->buffer) - 1) {
                        // The buffer is this line: no substr copy of it (100 KB replies
                        // measured about 100,000 instructions a call, the gap to the original
                        // client).
                        $line = $this->buffer;
                        $this->buffer = '';
                        $this->scanned = 0;
                        // A reply like this one then comes in one read, into a string of about
                        // its size: fread() allocates all it asks for, and copies a read of less
                        // than half of that into a smaller string.
                        $size = ($end + 1) * 3 >> 1;
                        $this->readSize = $size < self::MIN_READ ? self::MIN_READ : ($size > self::FILL_LIMIT ? self::FILL_LIMIT : $size);
                        return $line;
                    }
                    return $this->cutLine($end);
                }
                $this->scanned = strlen($this->buffer);
                if ($this->scanned - $this->pos > $this->maxLineBytes) {
                    $this->refuseLongLine();
                }
            }
            $read = [$this->stream];
            $write = null;
            $except = null;
            $whole = (int) $left;
            if (!@stream_select($read, $write, $except, $whole, (int) (($left - $whole) * 1_000_000))) {
                continue; // a timeout (caught above) or an interrupted wait
            }
            $chunk = fread($this->stream, $this->readSize);
            if ($chunk === false || $chunk === '') {
                if (feof($this->stream)) {
                    throw new ServerClosedException('Server closed the connection (readMessage)');
                }
                continue;
            }
            $this->buffer .= $chunk;
            if (strlen($chunk) === $this->readSize) {
                $this->fillMore($this->readSize);
            }
            // A short read most likely drained the socket: reading again would only return
            // EAGAIN (one wasted syscall per reply); the loop waits again if the line is not
            // complete.
        }
    }

    /** Drops the buffer and throws: the line being read is longer than maxLineBytes. */
    private function refuseLongLine(): never
    {
        $this->buffer = '';
        $this->pos = $this->scanned = 0;
        throw new BadResponseException("Reply exceeds maxMessageBytes ({$this->maxLineBytes} bytes)");
    }

    /** Cuts the line ending at $end (the offset of its "\n") out of the buffer, without its "\r". */
    private function cutLine(int $end): string
    {
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

    /**
     * After a read that got all it asked for ($got bytes): reads on while more is available now,
     * up to FILL_LIMIT bytes in all, so a server that floods cannot keep one call here.
     */
    private function fillMore(int $got): void
    {
        while ($got < self::FILL_LIMIT) {
            $chunk = fread($this->stream, min(self::CHUNK, self::FILL_LIMIT - $got));
            if ($chunk === false || $chunk === '') {
                return; // drained; the end of stream, if that is why, shows on the next read
            }
            $got += strlen($chunk);
            $this->buffer .= $chunk;
            if (strlen($chunk) < self::CHUNK) {
                return;
            }
        }
    }
}
