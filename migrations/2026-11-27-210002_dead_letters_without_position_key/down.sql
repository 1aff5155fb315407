-- Without the key, one position may hold several letters (the same file
-- replayed under two source names): keep the first of each.
DELETE FROM dead_letters a USING dead_letters b
 WHERE a.partition = b.partition AND a.kafka_offset = b.kafka_offset
   AND a.topic = b.topic AND a.id > b.id;
ALTER TABLE dead_letters ADD CONSTRAINT dead_letters_position_key UNIQUE (partition, kafka_offset, topic);
