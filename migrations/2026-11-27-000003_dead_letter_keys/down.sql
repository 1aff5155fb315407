DROP INDEX dead_letters_reason_idx;
CREATE INDEX dead_letters_reason_idx ON dead_letters (reason);
ALTER TABLE dead_letters DROP CONSTRAINT dead_letters_position_key;
ALTER TABLE dead_letters ADD CONSTRAINT dead_letters_topic_partition_kafka_offset_key UNIQUE (topic, partition, kafka_offset);
