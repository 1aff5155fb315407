-- The distinct chatters of open windows (restored with them), one row per
-- window and checkpoint holding the ids that checkpoint added, instead of
-- one row per chatter: a checkpoint inserts, and a window's close deletes,
-- a row per window that changed rather than one per distinct chatter.
CREATE TABLE window_chatter_chunks (
    stream_id    TEXT        NOT NULL,
    window_start TIMESTAMPTZ NOT NULL,
    chunk        INTEGER     NOT NULL,
    user_ids     TEXT[]      NOT NULL,
    PRIMARY KEY (stream_id, window_start, chunk)
);

INSERT INTO window_chatter_chunks (stream_id, window_start, chunk, user_ids)
SELECT stream_id, window_start, 0, array_agg(user_id ORDER BY user_id)
FROM window_chatters
GROUP BY stream_id, window_start;

DROP TABLE window_chatters;
