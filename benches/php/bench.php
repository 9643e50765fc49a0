<?php
// php bench.php SOCKET SIZE COUNT [ORIGINAL]  -> prints ms per message, one request at a time
// (the original's PHP bench). ORIGINAL: a folder holding the original pixl-ipc's
// clients/PixlIPCClient.class.php to measure instead of ours (the same class name and send()).
declare(strict_types=1);

[$_, $socket, $size, $count] = $argv;
require isset($argv[4])
    ? $argv[4] . '/clients/PixlIPCClient.class.php'
    : __DIR__ . '/../../client-php/autoload.php';
$message = [];
for ($i = 0; $i < (int) $size; $i++) {
    $message["key_$i"] = str_pad('GiveMe', 1024, 'Dataz');
}
$client = new PixlIPCClient($socket, ['requestTimeout' => 60000]);
for ($i = 0; $i < 50; $i++) {
    $client->send('/ipcserver/test/echo', $message);
}
$started = hrtime(true);
for ($i = 0; $i < (int) $count; $i++) {
    if ($client->send('/ipcserver/test/echo', $message) === false) {
        fwrite(STDERR, "bench.php: timeout\n");
        exit(1);
    }
}
printf("%.6f\n", (hrtime(true) - $started) / 1e6 / (int) $count);
