#!/usr/bin/env bash
# The floor of issue 10's uniform case: what Postgres must write for the
# two tables SPEC §3 names, with nothing else (no presence sets, chatters
# or dead letters, no index beyond the primary keys, every write sorted by
# key, heap-only rewrites where the page has room).
#
# 300,000 events over 100,000 streams, 20 ms apart in event time (as
# `cargo bench --bench state_scale`'s uniform run), written in CHECKPOINTS
# transactions. Each transaction inserts the windows first seen in it (open,
# SPEC §3: visible and refreshed at every checkpoint), rewrites the stored
# windows that got an event or became final (window end at or before the
# stream's latest event time minus 10 minutes), and writes the state row of
# every stream that got an event; a last transaction finalizes what is left
# open (idle finalization). Prints the time and the WAL per event (the
# cluster's WAL; the stack's idle `serve` adds a few bytes a second).
# Every event is valid here, so there are about 4% more windows than in
# the bench's run, which has malformed, late and duplicate events.
#   bash scripts/bench-wal-floor.sh            (CHECKPOINTS=6)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cargo build --release -j2 --bin streamstats

checkpoints=${CHECKPOINTS:-6}
events=300000
per=$(( (events + checkpoints - 1) / checkpoints ))
source scripts/stack-lib.sh
start_stack 18101 55997 19997 19988 0
wait_until sql -c "SELECT 1"

{
cat <<SQL
DROP SCHEMA IF EXISTS floor CASCADE;
CREATE SCHEMA floor;
SET search_path = floor;
-- The events: which stream, when, in which checkpoint.
CREATE TABLE ev AS
SELECT i, (i / $per)::int AS ck,
       'stream-' || ((hashint4(i) & 2147483647) % 100000) AS s,
       timestamptz '2025-12-20 18:00:00+00' + i * interval '20 milliseconds' AS ts
FROM generate_series(0, $events - 1) AS i;
-- Each window: the checkpoint that saw it first and the one it became
-- final in (its end at or before its stream's latest event time minus 10
-- minutes; else the last, idle one).
CREATE TABLE wm AS SELECT s, ck, max(ts) - interval '10 minutes' AS wm FROM ev GROUP BY 1, 2;
CREATE INDEX ON wm (s, ck);
CREATE TABLE win AS
SELECT s, date_trunc('minute', ts) AS w, min(ck) AS first_ck FROM ev GROUP BY 1, 2;
ALTER TABLE win ADD COLUMN final_ck int;
UPDATE win SET final_ck = coalesce((SELECT min(ck) FROM wm
    WHERE wm.s = win.s AND wm.ck >= win.first_ck AND win.w + interval '1 minute' <= wm.wm), $checkpoints);
CREATE TABLE touched AS SELECT DISTINCT s, date_trunc('minute', ts) AS w, ck FROM ev;
-- What each checkpoint writes, listed beforehand.
CREATE TABLE ins AS SELECT first_ck AS ck, w, s, final_ck = first_ck AS f FROM win;
CREATE TABLE upd AS
SELECT DISTINCT k.ck, win.w, win.s, win.final_ck = k.ck AS f
FROM win JOIN (SELECT s, w, ck FROM touched UNION SELECT s, w, final_ck FROM win) AS k USING (s, w)
WHERE k.ck > win.first_ck;
CREATE TABLE seen AS SELECT s, min(ck) AS first_ck FROM ev GROUP BY 1;
CREATE TABLE st_ins AS SELECT first_ck AS ck, s FROM seen;
CREATE TABLE st_upd AS
SELECT DISTINCT e.ck, e.s FROM ev e JOIN seen USING (s) WHERE e.ck > seen.first_ck;
CREATE INDEX ON ins (ck, w, s);
CREATE INDEX ON upd (ck, w, s);
CREATE INDEX ON st_ins (ck, s);
CREATE INDEX ON st_upd (ck, s);
ANALYZE;
-- The two tables SPEC §3 names, primary keys only.
CREATE TABLE m (
    window_start TIMESTAMPTZ NOT NULL, window_end TIMESTAMPTZ NOT NULL,
    stream_id TEXT COLLATE "C" NOT NULL, active_viewers BIGINT NOT NULL,
    chat_messages BIGINT NOT NULL,
    donations_usd NUMERIC(20, 2) GENERATED ALWAYS AS (donations_cents::NUMERIC / 100) STORED,
    donations_cents BIGINT NOT NULL, events BIGINT NOT NULL, chat_chars BIGINT NOT NULL,
    donations BIGINT NOT NULL, viewer_joins BIGINT NOT NULL, viewer_leaves BIGINT NOT NULL,
    unique_chatters BIGINT NOT NULL, is_final BOOLEAN NOT NULL, updated_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (window_start, stream_id)) WITH (fillfactor = 75);
CREATE TABLE st (
    stream_id TEXT COLLATE "C" PRIMARY KEY, is_live BOOLEAN NOT NULL,
    active_viewers BIGINT NOT NULL, last_event_at TIMESTAMPTZ, updated_at TIMESTAMPTZ NOT NULL)
    WITH (fillfactor = 50);
-- Nothing but the writes below in the measured WAL: no autovacuum of the
-- setup tables (just rewritten) or of the two tables during the run.
DO \$\$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['ev', 'wm', 'win', 'touched', 'ins', 'upd', 'seen', 'st_ins', 'st_upd', 'm', 'st'] LOOP
        EXECUTE format('ALTER TABLE %I SET (autovacuum_enabled = off)', t);
    END LOOP;
END \$\$;
VACUUM ev, wm, win, touched, ins, upd, seen, st_ins, st_upd;
CHECKPOINT;
SET enable_hashjoin = off;
SET enable_mergejoin = off;
SELECT pg_current_wal_lsn() AS l0, clock_timestamp() AS t0 \gset
SQL
for k in $(seq 0 "$checkpoints"); do
cat <<SQL
BEGIN;
INSERT INTO m (window_start, window_end, stream_id, active_viewers, chat_messages,
    donations_cents, events, chat_chars, donations, viewer_joins, viewer_leaves,
    unique_chatters, is_final, updated_at)
SELECT w, w + interval '1 minute', s, 1, 1, 100, 1, 10, 1, 1, 0, 1, f, now()
FROM ins WHERE ck = $k ORDER BY w, s;
UPDATE m SET events = m.events + 1, is_final = t.f, updated_at = now()
FROM (SELECT w, s, f FROM upd WHERE ck = $k ORDER BY w, s) AS t
WHERE m.window_start = t.w AND m.stream_id = t.s;
UPDATE st SET active_viewers = st.active_viewers + 1, last_event_at = now(), updated_at = now()
FROM (SELECT s FROM st_upd WHERE ck = $k ORDER BY s) AS t
WHERE st.stream_id = t.s;
INSERT INTO st SELECT s, true, 1, now(), now() FROM st_ins WHERE ck = $k ORDER BY s;
COMMIT;
SQL
done
cat <<'SQL'
SELECT round(extract(epoch FROM clock_timestamp() - :'t0')::numeric, 2) AS seconds,
       round(pg_wal_lsn_diff(pg_current_wal_lsn(), :'l0') / 300000.0) AS wal_bytes_per_event,
       (SELECT count(*) FROM m) AS window_rows,
       (SELECT count(*) FROM m WHERE is_final) AS final_rows,
       (SELECT count(*) FROM st) AS streams;
SQL
} > "$stack_dir/floor.sql"
sql -f "$stack_dir/floor.sql"
