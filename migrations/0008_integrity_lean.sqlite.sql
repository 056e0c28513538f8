-- A lighter integrity log: see 0008_integrity_lean.postgres.sql.
ALTER TABLE activity_log ADD COLUMN log_idx INTEGER;
UPDATE integrity_event SET body = X'' WHERE body IS NULL;
DROP INDEX integrity_event_record_idx;
CREATE INDEX integrity_event_record_idx ON integrity_event (record_id, idx) WHERE body IS NOT NULL;
