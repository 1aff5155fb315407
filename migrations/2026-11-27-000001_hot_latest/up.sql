-- `/metrics/latest` walks the streams that have a newest window through a
-- partial index. With `latest_window_start` itself in the index predicate,
-- every checkpoint that moved a stream to a new window changed an indexed
-- column, so Postgres could not update the state row in place (heap-only):
-- each such update wrote new entries in all three indexes and a tuple
-- lock. The predicate is now a stored flag that changes only when a
-- stream gains its first window or retention removes its last one.
ALTER TABLE stream_state
    ADD COLUMN has_windows BOOLEAN GENERATED ALWAYS AS (latest_window_start IS NOT NULL) STORED;
DROP INDEX stream_state_latest_idx;
CREATE INDEX stream_state_latest_idx ON stream_state (stream_id) WHERE has_windows;
ALTER TABLE stream_state SET (fillfactor = 50);
