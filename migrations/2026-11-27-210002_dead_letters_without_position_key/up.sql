-- A checkpoint written again after an unknown outcome used to find the
-- dead letters its first attempt had committed through this unique key.
-- It now skips them by the committed offsets instead (a letter below its
-- partition's stored offset is stored), so the key only cost every dead
-- letter an index entry: about a sixth of a checkpoint's time in a replay
-- full of them.
ALTER TABLE dead_letters DROP CONSTRAINT dead_letters_position_key;
