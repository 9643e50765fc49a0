#!/usr/bin/env bash
# A consumer project installs this package the way a Composer user would, from a `path`
# repository with Packagist disabled and the network off (COMPOSER_DISABLE_NETWORK), then calls
# the real server through Composer's autoloader with both APIs. Needs composer, php and
# $PIXL_IPC_SERVER_BIN (default: target/debug/pixl-ipc-server). Leaves nothing behind.
set -euo pipefail
package="$(cd "$(dirname "$0")/.." && pwd)"
server_bin="${PIXL_IPC_SERVER_BIN:-$package/../target/debug/pixl-ipc-server}"
[ -x "$server_bin" ] || { echo "no server binary at $server_bin (set PIXL_IPC_SERVER_BIN)" >&2; exit 1; }

work="$(mktemp -d)"
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

mkdir "$work/app" "$work/home"
cat >"$work/app/composer.json" <<JSON
{
    "name": "example/consumer",
    "require": { "pixl-ipc-rs/client": "*@dev" },
    "repositories": [
        { "packagist.org": false },
        { "type": "path", "url": "$package" }
    ]
}
JSON
cat >"$work/app/main.php" <<'PHP'
<?php
require __DIR__ . '/vendor/autoload.php';
$client = new PixlIPC\Client($argv[1]);
$msg = ['via' => 'global'];
$legacy = new PixlIPCClient($argv[1]);
echo json_encode([
    $client->send('/ipcserver/test/echo', ['lit' => 1]),
    $legacy->send('/ipcserver/test/echo', $msg),
    $legacy instanceof PixlIPC\BaseClient,
]), "\n";
PHP

(cd "$work/app" && COMPOSER_HOME="$work/home" COMPOSER_DISABLE_NETWORK=1 \
  composer install --no-interaction --no-progress --quiet)
[ -f "$work/app/vendor/pixl-ipc-rs/client/LICENSE" ] || { echo "installed package has no LICENSE" >&2; exit 1; }

"$server_bin" --socket "$work/ipc.sock" >/dev/null 2>&1 &
server_pid=$!
for _ in $(seq 100); do [ -S "$work/ipc.sock" ] && break; sleep 0.05; done

got="$(php "$work/app/main.php" "$work/ipc.sock")"
want='[{"lit":1},{"via":"global"},true]'
[ "$got" = "$want" ] || { echo "consumer printed $got, expected $want" >&2; exit 1; }
echo "composer consumer (path repository, offline): ok"
