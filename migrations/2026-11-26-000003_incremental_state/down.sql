-- Reverting drops the stored window state: the previous version restarts
-- every stream from empty, so revert only together with the results.
CREATE TABLE window_snapshots (
    stream_id  TEXT        PRIMARY KEY,
    topic      TEXT        NOT NULL,
    partition  INTEGER     NOT NULL,
    state      JSONB       NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX window_snapshots_partition_idx ON window_snapshots (topic, partition);
DROP TABLE window_chatters;
DROP TABLE stream_viewers;
DROP INDEX stream_state_open_idx;
ALTER TABLE stream_state
    DROP COLUMN open_windows,
    DROP COLUMN watermark,
    DROP COLUMN partition,
    DROP COLUMN topic;
