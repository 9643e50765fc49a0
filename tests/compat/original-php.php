<?php
// Drives the original PixlIPCClient (loaded unchanged from $ORIGINAL_PIXL_IPC) against our server:
// the original PHP test list plus a timed-out reply that must be skipped. Prints one line per
// check and a closing "N passed, N failed".
require getenv('ORIGINAL_PIXL_IPC') . '/clients/PixlIPCClient.class.php';
$sock = $argv[1]; $results = [];
function check($name, $ok) { global $results; $results[] = ($ok ? "ok   " : "FAIL ") . $name; }
function sized($n) { $m = []; for ($i = 0; $i < $n; $i++) { $m["key_$i"] = str_pad("GiveMe", 1024, "Dataz"); } return $m; }
try { $bad = new PixlIPCClient('/tmp/nosuch.sock'); $bad->connect(); check('bad path throws', false); }
catch (Exception $e) { check('bad path throws 5001', $e->getCode() == 5001); }
$c = new PixlIPCClient($sock, ['requestTimeout' => 2000]);
$c->connect();
$msg = ["hello" => "there/you", "n" => 5];
check('echo', $c->send('/ipcserver/test/echo', $msg) == $msg);
$big = sized(1024);
check('1 MiB echo', $c->send('/ipcserver/test/echo', $big) == $big);
$d = ['delay' => 20];
$r = $c->send('/ipcserver/test/delay', $d); check('delay', $r['delay'] == 20);
$u = ['foo' => 1];
$r = $c->send('/no/such', $u); check('unknown uri', $r['code'] == 'no_handler_found');
$short = new PixlIPCClient($sock, ['requestTimeout' => 100]);
$short->connect();
$d = ['delay' => 300];
check('timeout returns false', $short->send('/ipcserver/test/delay', $d) === false);
usleep(350000);
$e = ['after' => 'timeout'];
check('stale reply skipped, next answer is ours', $short->send('/ipcserver/test/echo', $e) == $e);
$ua = new PixlIPCClient($sock, ['userAgent' => 'phpAgent']); $ua->connect();
$r = $ua->send('/ipcserver/test/echo', $e); check('custom UA client', $r == $e);
// Many sequential requests.
$ok = true; for ($i = 0; $i < 500; $i++) { $m = ['i' => $i]; $ok = $ok && $c->send('/ipcserver/test/echo', $m) == $m; }
check('500 sequential echoes', $ok);
$failed = count(array_filter($results, fn($r) => str_starts_with($r, 'FAIL')));
echo implode("\n", $results), "\n", (count($results) - $failed), " passed, $failed failed\n";
exit($failed ? 1 : 0);
