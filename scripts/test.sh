#!/usr/bin/env bash
# The one test command. On a fresh Debian machine with Rust and Node it first installs what is
# missing (php-cli, phpunit, composer and chromium with apt-get when root; npm packages from lock files),
# then runs every check: rustfmt, clippy, rustdoc, the Rust tests (unit, codec, raw-wire, WebSocket,
# lifecycle, client and cross-language tests against the real binaries), and the Node and PHP
# suites of the packages that have them.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

install_debian_packages() {
  local missing=()
  command -v php >/dev/null 2>&1 || missing+=(php-cli)
  command -v phpunit >/dev/null 2>&1 || missing+=(phpunit)
  command -v composer >/dev/null 2>&1 || missing+=(composer)
  # Headless browser for the Node client's browser-entry test (driven by playwright-core).
  [ -x /usr/bin/chromium ] || missing+=(chromium)
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing ${missing[*]}: install them (apt-get install ${missing[*]}) or run this as root" >&2
    exit 1
  fi
  step "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

install_rust_components() {
  cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt
  cargo clippy --version >/dev/null 2>&1 || rustup component add clippy
}

install_node_packages() {
  # The cross-language tests drive third-party clients (Node's ws) from tests/drivers.
  step "npm ci (tests/drivers)"
  (cd tests/drivers && npm ci --no-audit --no-fund --loglevel=error)
}

install_debian_packages
install_rust_components
install_node_packages

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo doc (warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked --quiet

step "cargo package --list: every library crate ships its LICENSE and README"
for crate in pixl-ipc-protocol pixl-ipc-io pixl-ipc-server pixl-ipc-client; do
  listed=$(cargo package -p "$crate" --allow-dirty --list --quiet)
  for file in LICENSE README.md; do
    grep -qx "$file" <<<"$listed" || { echo "$crate: $file missing from the package" >&2; exit 1; }
  done
done

step "cargo build --examples (examples/tests/run_examples.rs runs them)"
cargo build --examples --workspace --locked

step "cargo test"
cargo test --workspace --locked

# A user who wants only UNIX sockets turns the default features off: that build must not pull
# the CLI, WebSocket or TLS stacks, and must work on its own (its own feature set, not the
# workspace's union of features).
step "--no-default-features: dependency tree, clippy, tests"
forbidden='^(clap|anyhow|humantime|tracing-subscriber|rustls|ring|rustls-native-certs|tungstenite|tokio-tungstenite|tokio-rustls)$'
for crate in pixl-ipc-protocol pixl-ipc-io pixl-ipc-server pixl-ipc-client; do
  pulled=$(cargo tree -e normal --no-default-features -p "$crate" --prefix none --locked \
    | sed 's/ v[0-9].*//' | sort -u | grep -E "$forbidden" || true)
  [ -z "$pulled" ] || { echo "$crate without default features still pulls: $pulled" >&2; exit 1; }
done
# One crate at a time: built together, the client's dev-dependency on the server would turn
# the server's default features back on. Each feature alone must build too.
for crate in pixl-ipc-protocol pixl-ipc-io pixl-ipc-server pixl-ipc-client; do
  cargo clippy -p "$crate" --no-default-features --all-targets --locked -- -D warnings
done
for crate in pixl-ipc-server pixl-ipc-client; do
  for feature in ws tls cli; do
    cargo check -p "$crate" --no-default-features --features "$feature" --locked --quiet
  done
done
cargo test -p pixl-ipc-protocol -p pixl-ipc-io --locked
cargo test -p pixl-ipc-server --no-default-features --locked --lib --test features --test handlers --test router
cargo test -p pixl-ipc-client --no-default-features --locked --lib --test bad_server

# The Node and PHP clients' suites start the server binary the Rust tests just built.
export PIXL_IPC_SERVER_BIN="$PWD/target/debug/pixl-ipc-server"

step "node tests: client-node (node --test: npm pack contents, tsc in DOM/CJS/NodeNext projects, esbuild bundle and the plain scripts in headless Chromium)"
(cd client-node && npm ci --no-audit --no-fund --loglevel=error && npm test)

step "php tests: client-php (phpunit)"
phpunit -c client-php/phpunit.xml

step "composer: client-php validates, ships the root LICENSE, installs offline into a consumer"
(cd client-php && composer validate --strict)
cmp LICENSE client-php/LICENSE || { echo "client-php/LICENSE differs from LICENSE: copy it again" >&2; exit 1; }
client-php/tests/composer-consumer.sh

step "all checks passed"
