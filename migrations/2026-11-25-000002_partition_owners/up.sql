-- Fencing across processes (SPEC §5): whoever was assigned a partition last
-- owns it; a checkpoint commits only if its process still owns every
-- partition it covers, so a process that lost a partition cannot commit for it.
CREATE TABLE partition_owners (
    group_id   TEXT        NOT NULL,
    topic      TEXT        NOT NULL,
    partition  INTEGER     NOT NULL,
    owner      TEXT        NOT NULL,
    generation BIGINT      NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, topic, partition)
);
