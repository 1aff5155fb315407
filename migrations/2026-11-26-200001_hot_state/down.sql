ALTER TABLE stream_metrics_minute RESET (fillfactor);
ALTER TABLE stream_state RESET (fillfactor);
DROP INDEX stream_state_open_idx;
ALTER TABLE stream_state ADD COLUMN open_windows INTEGER NOT NULL DEFAULT 0;
UPDATE stream_state SET open_windows = 1 WHERE has_open_windows;
ALTER TABLE stream_state DROP COLUMN has_open_windows;
CREATE INDEX stream_state_open_idx ON stream_state (topic, partition) WHERE open_windows > 0;
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
CREATE INDEX stream_latest_window_start_idx ON stream_latest (window_start);
INSERT INTO stream_latest
SELECT m.stream_id, m.window_start, m.window_end, m.active_viewers, m.chat_messages,
       m.donations_cents, m.events, m.chat_chars, m.donations, m.viewer_joins,
       m.viewer_leaves, m.unique_chatters, m.is_final, m.updated_at
  FROM stream_state ss
  JOIN stream_metrics_minute m
    ON m.window_start = ss.latest_window_start AND m.stream_id = ss.stream_id;
DROP INDEX stream_state_latest_idx;
ALTER TABLE stream_state DROP COLUMN latest_window_start;
