#!/usr/bin/env bash
# Installs everything the tests and the local stack need on a fresh Debian
# machine. Idempotent: a second run does nothing that is already done.
#
#   - PostgreSQL server binaries (Debian's `postgresql` package) if missing
#   - Prometheus and promtool (Debian's `prometheus` package) if missing
#   - headless Chromium (Debian's `chromium` package) if missing, for the
#     dashboard test that renders `/` in a real browser
#   - the tansu Kafka-compatible broker, built once into a cache directory
#     outside the repository ($STREAMSTATS_CACHE, default ~/.cache/streamstats)
#   - build tools and headers: a C compiler, make and zlib for the bundled
#     librdkafka, libpq for diesel
#   - wrk (Debian's `wrk` package) for the HTTP benchmarks
set -euo pipefail

cache="${STREAMSTATS_CACHE:-$HOME/.cache/streamstats}"
tansu_version="0.6.0"
mkdir -p "$cache"

sudo_if_needed() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

apt_install() {
    echo "install-deps: installing $* from Debian" >&2
    sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
}

# PostgreSQL server: initdb and pg_ctl must exist somewhere we can find.
pg_bin=""
for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/initdb" ] && pg_bin="$d"
done
if [ -z "$pg_bin" ] && ! command -v initdb >/dev/null 2>&1; then
    apt_install postgresql
fi

# Build tools for rdkafka's bundled librdkafka (C compiler, make, perl are
# on this kind of machine; pkg-config and zlib headers may not be).
missing=()
for tool in cc make pkg-config; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
    apt_install build-essential pkg-config
fi
if ! pkg-config --exists zlib 2>/dev/null && [ ! -e /usr/include/zlib.h ]; then
    apt_install zlib1g-dev
fi
# diesel's Postgres backend links libpq.
if ! pkg-config --exists libpq 2>/dev/null && [ ! -e /usr/include/postgresql/libpq-fe.h ]; then
    apt_install libpq-dev
fi

# Prometheus and promtool: the observability test runs the shipped config
# and dashboard queries against a real Prometheus.
if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then
    apt_install prometheus
fi

# wrk: the HTTP load generator of the benchmark scripts.
if ! command -v wrk >/dev/null 2>&1; then
    apt_install wrk
fi

# Chromium: the dashboard test renders `/` headless and reads the DOM.
if ! command -v chromium >/dev/null 2>&1; then
    apt_install chromium
fi

# tansu: the Kafka-protocol broker used by the tests and the local stack.
tansu="$cache/tansu/bin/tansu"
if [ ! -x "$tansu" ]; then
    echo "install-deps: building tansu $tansu_version into $cache/tansu (about 12 minutes, once)" >&2
    # --locked: tansu does not compile against the newest versions of its deps.
    # libsql: the sqlite:// storage engine, which survives kill -9 and returns
    # correct offsets when a consumer resumes mid-batch (memory:// does not).
    CARGO_TARGET_DIR="$cache/tansu-build" cargo install tansu \
        --version "$tansu_version" --locked --features libsql,dynostore \
        --root "$cache/tansu" -j 2
    rm -rf "$cache/tansu-build"
fi
echo "install-deps: tansu at $tansu" >&2
