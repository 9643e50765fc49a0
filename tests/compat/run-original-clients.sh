#!/usr/bin/env bash
# Runs the original pixl-ipc Node and PHP clients (from a checkout you provide) against our
# server binary. See README.md beside this script.
set -euo pipefail
original=${1:?usage: run-original-clients.sh /path/to/pixl-ipc-checkout}
original=$(cd "$original" && pwd)
[ -f "$original/client.js" ] && [ -f "$original/clients/PixlIPCClient.class.php" ] || {
  echo "$original does not look like a pixl-ipc checkout (client.js, clients/PixlIPCClient.class.php)" >&2
  exit 2
}
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
work=$(mktemp -d)
server_pid=
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

cargo build --quiet --manifest-path "$repo/Cargo.toml" -p pixl-ipc-server
# The original client.js requires 'pixl-json-stream' and 'pixl-perf' from its own folder: give
# it a copy of the client beside a private node_modules so the checkout is left untouched.
mkdir -p "$work/original/clients"
cp "$original/client.js" "$work/original/"
cp "$original/clients/PixlIPCClient.class.php" "$work/original/clients/"
(cd "$work/original" && npm install --silent --no-audit --no-fund --no-save pixl-json-stream@1.0.6 'pixl-perf@^1.0.8' >/dev/null)

socket="$work/server.sock"
"$repo/target/debug/pixl-ipc-server" --socket "$socket" >"$work/server.out" 2>"$work/server.log" &
server_pid=$!
for _ in $(seq 100); do grep -q "listening on" "$work/server.out" 2>/dev/null && break; sleep 0.05; done

export ORIGINAL_PIXL_IPC="$work/original"
status=0
echo "== original Node client"; node "$here/original-node.js" "$socket" || status=1
echo "== original PHP client"; php "$here/original-php.php" "$socket" || status=1
exit $status
