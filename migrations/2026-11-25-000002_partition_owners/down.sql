DROP TABLE partition_owners;
