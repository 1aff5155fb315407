ALTER TABLE stream_metrics_minute ALTER COLUMN stream_id TYPE TEXT COLLATE "default";
ALTER TABLE stream_state ALTER COLUMN stream_id TYPE TEXT COLLATE "default";
ALTER TABLE stream_viewers
    ALTER COLUMN stream_id TYPE TEXT COLLATE "default",
    ALTER COLUMN user_id TYPE TEXT COLLATE "default";
ALTER TABLE window_chatter_chunks ALTER COLUMN stream_id TYPE TEXT COLLATE "default";
