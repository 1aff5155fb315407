ALTER TABLE dead_letters ALTER COLUMN reason TYPE TEXT COLLATE "default";
