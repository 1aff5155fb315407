CREATE TABLE window_chatters (
    stream_id    TEXT        NOT NULL,
    window_start TIMESTAMPTZ NOT NULL,
    user_id      TEXT        NOT NULL,
    PRIMARY KEY (stream_id, window_start, user_id)
);

INSERT INTO window_chatters (stream_id, window_start, user_id)
SELECT DISTINCT stream_id, window_start, u
FROM window_chatter_chunks, unnest(user_ids) AS u;

DROP TABLE window_chatter_chunks;
