#!/usr/bin/env bash
# HTTP load figures: requests/s and latency percentiles of /metrics/latest
# and /streams/top under wrk on loopback, while the local stack runs the
# pipeline with the generator at GEN_RATE events/s (default 2000).
#   bash scripts/bench-http.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
if ! command -v wrk >/dev/null 2>&1; then
    if [ "$(id -u)" -eq 0 ]; then apt-get install -y -qq wrk; else sudo apt-get install -y -qq wrk; fi
fi
cargo build --release -j2 --bin streamstats
source scripts/stack-lib.sh
port=18000
start_stack $port 55999 19999 19990 "${GEN_RATE:-2000}"
wait_until curl -fsS "http://127.0.0.1:$port/ready"
# Let windows accumulate so the queries have rows to read.
sleep 20
for path in /metrics/latest '/streams/top?by=donations_usd&minutes=60'; do
    echo "== GET $path (wrk -t2 -c16 -d20s)"
    wrk -t2 -c16 -d20s --latency "http://127.0.0.1:$port$path" | grep -E 'Requests/sec|Latency|50%|90%|99%|requests in'
done
echo "== pipeline during the load"
curl -fsS "http://127.0.0.1:$port/prometheus" | grep -E '^streamstats_(events_consumed_total|checkpoints_total\{outcome="committed"\}|last_checkpoint_age_seconds) '
