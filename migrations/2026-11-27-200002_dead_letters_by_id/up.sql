-- Retention walks dead letters by id, which is their arrival order (each
-- is stamped by the database's clock as it is inserted): the index on
-- received_at is no longer read, and it cost every dead letter an index
-- entry, about a sixth of a checkpoint's time in a replay full of them.
DROP INDEX dead_letters_received_at_idx;
