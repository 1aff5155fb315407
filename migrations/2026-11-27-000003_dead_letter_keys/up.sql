-- Dead letters' indexes, for the cost of writing them and for reading them
-- back from a table of millions:
-- * The source position's unique key compares the integers first: every
--   letter of a topic or file shares its (long) name, so the old order
--   compared that text at every step of every insert's descent (about a
--   fifth of the key's insert cost). The upsert fallback's ON CONFLICT
--   names the same columns, in any order.
-- * `/dead_letters?reason=` reads the newest letters of one reason: with
--   (reason, id) that is one backward range scan, however rare the reason
--   and however old its letters, instead of a walk of the primary key
--   filtering by reason or a sort of every letter of that reason.
ALTER TABLE dead_letters DROP CONSTRAINT dead_letters_topic_partition_kafka_offset_key;
ALTER TABLE dead_letters ADD CONSTRAINT dead_letters_position_key UNIQUE (partition, kafka_offset, topic);
DROP INDEX dead_letters_reason_idx;
CREATE INDEX dead_letters_reason_idx ON dead_letters (reason, id);
