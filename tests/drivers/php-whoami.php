<?php
// Driven by tests/tests/php_client.rs: calls /whoami with the default and a custom user agent
// through our PHP client and prints the two replies as one JSON line.
declare(strict_types=1);

require __DIR__ . '/../../client-php/autoload.php';

$socket = $argv[1];
$request = ['probe' => true];
$replies = [];
$replies[] = (new PixlIPCClient($socket))->send('/whoami', $request);
$replies[] = (new PixlIPCClient($socket, ['userAgent' => 'phpTestAgent']))->send('/whoami', $request);
echo json_encode($replies), "\n";
