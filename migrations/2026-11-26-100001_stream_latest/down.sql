DROP INDEX dead_letters_received_at_idx;
DROP TABLE stream_latest;
