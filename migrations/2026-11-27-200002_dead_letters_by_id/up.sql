-- Retention walks dead letters by id, about their arrival order (each is
-- stamped by the database's clock as it is inserted): the index on
-- received_at is no longer read, and it cost every dead letter an index
-- entry, about a sixth of a checkpoint's time in a replay full of them.
-- Versions before 2026-11-27 stamped letters with their own clock: one
-- stamped ahead of the database's would stop that walk until it aged out,
-- so such stamps are brought back to now first (the index still finds
-- them).
UPDATE dead_letters SET received_at = now() WHERE received_at > now();
DROP INDEX dead_letters_received_at_idx;
