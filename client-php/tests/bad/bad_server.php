<?php

// A deliberately misbehaving pixl-ipc server for the tests: `php bad_server.php MODE SOCKET [ARG]`.
// It prints "ready" once listening, serves connections one at a time, and does exactly one bad
// thing per MODE:
//   flood ARG_MB     on connect, writes ARG_MB MiB of small pushes, then never replies
//   flood-then-reply ARG_MB   the same, then the reply to the first request
//   bomb ARG_MB      replies to each request with a reply of ARG_MB MiB of tiny objects
//   late-bomb ARG_MB the same, but holds back the final "}\n" until ARG2 ms after the request

declare(strict_types=1);

[$self, $mode, $path] = $argv;
$arg = (float) ($argv[3] ?? 8);
$arg2 = (int) ($argv[4] ?? 0);
@unlink($path);
$server = stream_socket_server("unix://$path", $errno, $errstr);
if ($server === false) {
    fwrite(STDERR, "listen: $errstr\n");
    exit(1);
}
echo "ready\n";

function tinyObjects(float $mib): string
{
    $item = '{"":0}';
    $n = (int) ($mib * 1048576 / (strlen($item) + 1));
    return '[' . implode(',', array_fill(0, $n, $item)) . ']';
}

function pushes(float $mib): string
{
    $one = "{\"uri\":\"/events\",\"data\":{\"n\":12345}}\n";
    return str_repeat($one, (int) ($mib * 1048576 / strlen($one)));
}

function readRequestId($conn): ?string
{
    $line = fgets($conn);
    if ($line === false) {
        return null;
    }
    return json_decode($line, true)['ipcReqID'] ?? null;
}

while ($conn = @stream_socket_accept($server, -1)) {
    switch ($mode) {
        case 'flood':
        case 'flood-then-reply':
            $id = readRequestId($conn);
            @fwrite($conn, pushes($arg));
            if ($mode === 'flood-then-reply') {
                @fwrite($conn, "{\"ipcReqID\":\"$id\",\"data\":\"after the flood\"}\n");
            }
            while (@fread($conn, 65536) !== '' && !feof($conn)) {
            }
            break;
        case 'bomb':
        case 'late-bomb':
            $body = tinyObjects($arg);
            while (($id = readRequestId($conn)) !== null) {
                $received = hrtime(true);
                $line = "{\"ipcReqID\":\"$id\",\"data\":$body}\n";
                if ($mode === 'late-bomb') {
                    @fwrite($conn, substr($line, 0, -2));
                    usleep(max(0, (int) ($arg2 * 1000 - (hrtime(true) - $received) / 1000)));
                    @fwrite($conn, "}\n");
                } else {
                    @fwrite($conn, $line);
                }
            }
            break;
    }
    @fclose($conn);
}
