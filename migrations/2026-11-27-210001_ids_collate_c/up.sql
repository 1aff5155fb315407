-- Stream and user ids are opaque keys: compare them byte by byte (cost
-- tracks change, issue 10). Under the database's collation (a libc
-- locale, even C.UTF-8) every comparison in an index descent copies both
-- ids and calls strcoll; with "C" it is a memcmp. Writing a checkpoint of
-- 100k streams, whose rows land at random places of the stream-keyed
-- indexes, took about a tenth less time. Equality is unchanged; ordering
-- by stream id (`/streams`, `/metrics/latest`) becomes byte order. The
-- tables are not rewritten; the indexes holding these columns are rebuilt.
ALTER TABLE stream_metrics_minute ALTER COLUMN stream_id TYPE TEXT COLLATE "C";
ALTER TABLE stream_state ALTER COLUMN stream_id TYPE TEXT COLLATE "C";
ALTER TABLE stream_viewers
    ALTER COLUMN stream_id TYPE TEXT COLLATE "C",
    ALTER COLUMN user_id TYPE TEXT COLLATE "C";
ALTER TABLE window_chatter_chunks ALTER COLUMN stream_id TYPE TEXT COLLATE "C";
