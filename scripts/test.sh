#!/usr/bin/env bash
# The test command: installs what is missing, checks formatting and lints,
# then runs every test tier against a real Postgres and a real tansu broker
# that the test harness starts on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh

cargo fmt --all --check
bash scripts/check-compose.sh
cargo clippy -j2 --all-targets -- -D warnings
cargo test -j2 --workspace --lib --bins --tests -- --test-threads=2

# Every process a test started must be gone.
leftover=$(pgrep -af 'streamstats-pg_|streamstats-prom_|sqlite://tansu.db|target/debug/streamstats ' || true)
if [ -n "$leftover" ]; then
    echo "test processes left running:" >&2
    echo "$leftover" >&2
    exit 1
fi
echo "test.sh: all tests passed"
