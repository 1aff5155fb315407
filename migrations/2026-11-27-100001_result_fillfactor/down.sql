ALTER TABLE stream_metrics_minute SET (fillfactor = 90);
