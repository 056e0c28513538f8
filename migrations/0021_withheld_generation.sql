-- The integrity log's withholding generation (storage/tail.go): every
-- transaction that withholds logged content (a purge, expired access
-- entries, a restore's withheld events) adds one, so a process that keeps
-- recent events in memory knows, from the head it reads anyway, when
-- another process made some of them stale.
ALTER TABLE integrity_state ADD COLUMN withheld BIGINT NOT NULL DEFAULT 0;
