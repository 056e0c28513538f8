-- A lighter integrity log (issue 12: ingest with the log at ≥ 0.85 × without).
-- A record event's content is the row it logged: its body stays NULL while
-- the row is that version, and is stored when the row changes or is deleted.
-- Each new row keeps the index of its latest event (log_idx), so no index
-- over every event is needed: integrity_event's record index covers only
-- events whose content is stored. Rows logged before keep log_idx NULL (no
-- rewrite of a big table): all their events store content, so that index
-- still finds them. Content withheld by a retention purge becomes an empty
-- body (it was NULL, which now means "in the live row").
ALTER TABLE activity_log ADD COLUMN log_idx BIGINT;
UPDATE integrity_event SET body = ''::bytea WHERE body IS NULL;
DROP INDEX integrity_event_record_idx;
CREATE INDEX integrity_event_record_idx ON integrity_event (record_id, idx) WHERE body IS NOT NULL;
