-- The newest window of every stream, maintained in the checkpoint
-- transaction (SPEC §6: no route's cost grows with history), so
-- /metrics/latest reads one row per stream instead of the whole table.
CREATE TABLE stream_latest (
    stream_id       TEXT        PRIMARY KEY,
    window_start    TIMESTAMPTZ NOT NULL,
    window_end      TIMESTAMPTZ NOT NULL,
    active_viewers  BIGINT      NOT NULL,
    chat_messages   BIGINT      NOT NULL,
    donations_cents BIGINT      NOT NULL,
    events          BIGINT      NOT NULL,
    chat_chars      BIGINT      NOT NULL,
    donations       BIGINT      NOT NULL,
    viewer_joins    BIGINT      NOT NULL,
    viewer_leaves   BIGINT      NOT NULL,
    unique_chatters BIGINT      NOT NULL,
    is_final        BOOLEAN     NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL
);
-- Retention trims streams whose newest window is past the cutoff.
CREATE INDEX stream_latest_window_start_idx ON stream_latest (window_start);

INSERT INTO stream_latest
SELECT DISTINCT ON (stream_id)
       stream_id, window_start, window_end, active_viewers, chat_messages,
       donations_cents, events, chat_chars, donations, viewer_joins,
       viewer_leaves, unique_chatters, is_final, updated_at
FROM stream_metrics_minute
ORDER BY stream_id, window_start DESC;

-- Retention of dead letters deletes by age in bounded batches.
CREATE INDEX dead_letters_received_at_idx ON dead_letters (received_at);
