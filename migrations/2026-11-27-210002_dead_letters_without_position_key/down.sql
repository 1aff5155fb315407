ALTER TABLE dead_letters ADD CONSTRAINT dead_letters_position_key UNIQUE (partition, kafka_offset, topic);
