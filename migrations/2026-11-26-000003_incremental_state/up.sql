-- What a restore needs is stored incrementally (cost tracks change): the
-- small per-stream state beside the stream's state row, its presence set
-- and its open windows' distinct chatters as rows, added and removed per
-- checkpoint. Open windows' counters are their non-final result rows.
ALTER TABLE stream_state
    ADD COLUMN topic        TEXT,
    ADD COLUMN partition    INTEGER,
    ADD COLUMN watermark    TIMESTAMPTZ,
    ADD COLUMN open_windows INTEGER NOT NULL DEFAULT 0;
-- Streams with open windows are restored when their partition is assigned.
CREATE INDEX stream_state_open_idx ON stream_state (topic, partition) WHERE open_windows > 0;

CREATE TABLE stream_viewers (
    stream_id TEXT NOT NULL,
    user_id   TEXT NOT NULL,
    PRIMARY KEY (stream_id, user_id)
);

CREATE TABLE window_chatters (
    stream_id    TEXT        NOT NULL,
    window_start TIMESTAMPTZ NOT NULL,
    user_id      TEXT        NOT NULL,
    PRIMARY KEY (stream_id, window_start, user_id)
);

-- Carry the JSON snapshots of earlier versions over, then drop them.
UPDATE stream_state ss
   SET topic = ws.topic,
       partition = ws.partition,
       watermark = (ws.state ->> 'watermark')::timestamptz,
       open_windows = (SELECT count(*) FROM jsonb_object_keys(ws.state -> 'open'))
  FROM window_snapshots ws
 WHERE ws.stream_id = ss.stream_id;
INSERT INTO stream_viewers (stream_id, user_id)
SELECT ws.stream_id, v
  FROM window_snapshots ws, jsonb_array_elements_text(ws.state -> 'viewers') v
ON CONFLICT DO NOTHING;
INSERT INTO window_chatters (stream_id, window_start, user_id)
SELECT ws.stream_id, o.key::timestamptz, c
  FROM window_snapshots ws, jsonb_each(ws.state -> 'open') o,
       jsonb_array_elements_text(o.value -> 'chatters') c
ON CONFLICT DO NOTHING;
DROP TABLE window_snapshots;
