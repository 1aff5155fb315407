DROP INDEX stream_state_latest_idx;
ALTER TABLE stream_state DROP COLUMN has_windows;
CREATE INDEX stream_state_latest_idx ON stream_state (stream_id)
    WHERE latest_window_start IS NOT NULL;
ALTER TABLE stream_state SET (fillfactor = 80);
