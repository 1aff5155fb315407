#!/usr/bin/env bash
# Query cost against history size (issue 11): fills stream_metrics_minute
# (and the maintained stream_state with each stream's newest window) with
# synthetic rows, first 10k (100 streams x 100 minutes) then 2M (1,000
# streams x 2,000 minutes), and runs `wrk -t2 -c32 -d5s --latency` three times on each
# data route of an idle release `serve` (the local stack, no generator).
# Prints req/s and p99 (the median of ROUNDS runs) and non-2xx (all runs)
# per route for both sizes and the ratio.
#   bash scripts/bench-history.sh            (SIZES="100x100 1000x2000", DURATION=5s, ROUNDS=3)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cargo build --release -j2 --bin streamstats

sizes=${SIZES:-"100x100 1000x2000"}
duration=${DURATION:-5s}
rounds=${ROUNDS:-3}
source scripts/stack-lib.sh
port=18100
start_stack $port 55998 19998 19989 0
wait_until curl -fsS "http://127.0.0.1:$port/health"

# STREAMS streams x MINUTES minutes ending at the current minute; values are
# arbitrary but deterministic. stream_state is filled
# as the checkpoint would have left them.
fill() {
    local streams=$1 minutes=$2
    sql <<SQL
TRUNCATE stream_metrics_minute, stream_state;
INSERT INTO stream_metrics_minute (window_start, window_end, stream_id, active_viewers,
    chat_messages, donations_cents, events, chat_chars, donations, viewer_joins,
    viewer_leaves, unique_chatters, is_final, updated_at)
SELECT t, t + interval '1 minute', 's' || s, (s * 7 + m * 13) % 500, (s * 3 + m) % 50,
       (s * 31 + m * 17) % 1000, (s + m) % 90 + 10, (s * 5 + m) % 400, (s + m) % 3,
       (s + m) % 7, (s + m) % 5, (s + m) % 20, m <= $minutes - 10, now()
FROM generate_series(0, $streams - 1) AS s,
     generate_series(1, $minutes) AS m,
     LATERAL (SELECT date_trunc('minute', now()) - ($minutes - m) * interval '1 minute' AS t) AS w;
INSERT INTO stream_state (stream_id, is_live, active_viewers, last_event_at, updated_at,
    latest_window_start)
SELECT DISTINCT ON (stream_id) stream_id, true, active_viewers,
       window_start + interval '30 seconds', now(), window_start
FROM stream_metrics_minute ORDER BY stream_id, window_start DESC;
VACUUM ANALYZE stream_metrics_minute;
VACUUM ANALYZE stream_state;
SQL
}

# /metrics/latest and /streams answer a page of 100 streams by default at
# both sizes; ?limit=1000 (every stream, up to 1,000) grows with the number
# of streams, not with history.
routes=(/metrics/latest '/metrics/latest?limit=1000' /streams '/metrics?minutes=15&limit=100' '/streams/top?minutes=60&by=donations_usd&n=10'
        /streams/s7/minutes /prometheus /health)
declare -A rate p99 bad
for size in $sizes; do
    streams=${size%x*}
    minutes=${size#*x}
    started=$(date +%s)
    fill "$streams" "$minutes"
    rows=$(sql -At -c "SELECT count(*) FROM stream_metrics_minute")
    echo "== $rows rows ($streams streams x $minutes minutes), filled in $(( $(date +%s) - started )) s"
    for route in "${routes[@]}"; do
        url="http://127.0.0.1:$port$route"
        curl -fsS -o /dev/null "$url"    # warm the cache and the connection pool
        # ROUNDS runs; the median by rate (with its p99) is reported, as
        # one run's figure on a shared VM varies by a third.
        runs=""
        for _ in $(seq 1 "$rounds"); do
            out=$(wrk -t2 -c32 -d"$duration" --latency "$url")
            runs+="$(awk '/^Requests\/sec/ {r=$2} $1 == "99%" {p=$2} /Non-2xx/ {n=$NF} END {print r, p, n+0}' <<<"$out")"$'\n'
        done
        read -r rate[$size$route] p99[$size$route] bad[$size$route] \
            < <(sort -n <<<"${runs%$'\n'}" | sed -n "$(( (rounds + 1) / 2 ))p")
        bad[$size$route]=$(awk '{n += $3} END {print n+0}' <<<"$runs")
        bytes=$(curl -fsS "$url" | wc -c)
        printf '%-48s %10s req/s  p99 %9s  non-2xx %s  body %s B\n' "$route" \
            "${rate[$size$route]}" "${p99[$size$route]}" "${bad[$size$route]:-0}" "$bytes"
    done
done
set -- $sizes
if [ $# -ge 2 ]; then
    echo "== ratio of req/s, $2 over $1"
    for route in "${routes[@]}"; do
        awk -v a="${rate[$1$route]}" -v b="${rate[$2$route]}" -v r="$route" \
            'BEGIN { printf "%-48s %.2f\n", r, b / a }'
    done
fi
echo "== serve while idle: $(curl -fsS "http://127.0.0.1:$port/prometheus" | grep -E '^streamstats_checkpoints_total\{outcome="committed"\}')"
