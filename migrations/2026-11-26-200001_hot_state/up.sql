-- Cost tracks change (issue 10): a checkpoint's rewrite of a stream's
-- state row or of an open window's row should be a heap-only (HOT)
-- update, which writes no index entry. Postgres makes an update HOT only
-- when no indexed column changes (predicates of partial indexes count)
-- and the row's page has room.

-- The newest window of each stream is a column of its state row, read
-- through the window rows' primary key, instead of a copy of that window
-- in a table of its own (one more row and two index entries written per
-- new window).
ALTER TABLE stream_state ADD COLUMN latest_window_start TIMESTAMPTZ;
UPDATE stream_state ss
   SET latest_window_start = sl.window_start
  FROM stream_latest sl
 WHERE sl.stream_id = ss.stream_id;
DROP TABLE stream_latest;
-- /metrics/latest walks the streams that have a newest window, by id;
-- retention clears the column of a stream whose rows are all gone, so the
-- walk does not grow with every stream ever seen. The predicate changes
-- only then, so state updates stay heap-only.
CREATE INDEX stream_state_latest_idx ON stream_state (stream_id)
    WHERE latest_window_start IS NOT NULL;

-- Restores on assignment need the streams holding open windows. The
-- partial index's predicate was a count that changed with every window
-- opened or closed; a flag changes only when a stream goes from nothing
-- open to something open and back.
DROP INDEX stream_state_open_idx;
ALTER TABLE stream_state ADD COLUMN has_open_windows BOOLEAN NOT NULL DEFAULT false;
UPDATE stream_state SET has_open_windows = true WHERE open_windows > 0;
ALTER TABLE stream_state DROP COLUMN open_windows;
CREATE INDEX stream_state_open_idx ON stream_state (topic, partition) WHERE has_open_windows;

-- Room on each page for the new versions of rows rewritten while open.
ALTER TABLE stream_state SET (fillfactor = 80);
ALTER TABLE stream_metrics_minute SET (fillfactor = 90);
