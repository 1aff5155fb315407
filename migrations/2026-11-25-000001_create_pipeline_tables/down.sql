DROP TABLE window_snapshots;
DROP TABLE consumer_offsets;
DROP TABLE dead_letters;
DROP TABLE stream_state;
DROP TABLE stream_metrics_minute;
