-- A lighter integrity log (issue 12: ingest with the log at ≥ 0.85 × without).
-- A record event's content is the row it logged: its body stays NULL while
-- the row is that version, and is stored when the row changes or is deleted.
-- Each row keeps the index of its latest event (log_idx), so no index over
-- every event is needed: integrity_event's record index covers only events
-- whose content is stored (every kind but a live record's record event).
-- Content withheld by a retention purge becomes an empty body (it was NULL).
ALTER TABLE activity_log ADD COLUMN log_idx BIGINT;
UPDATE activity_log AS a SET log_idx = e.latest
    FROM (SELECT record_id, MAX(idx) AS latest FROM integrity_event WHERE record_id > 0 GROUP BY record_id) AS e
    WHERE a.id = e.record_id;
UPDATE integrity_event SET body = ''::bytea WHERE body IS NULL;
DROP INDEX integrity_event_record_idx;
CREATE INDEX integrity_event_record_idx ON integrity_event (record_id, idx) WHERE body IS NOT NULL;
