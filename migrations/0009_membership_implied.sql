-- A live mirrored row is its own first target's membership (workspace_id):
-- activity_target keeps only what no row says (another target that reported
-- a stored record; targets of records no longer in the table), so a new
-- record writes no membership row (issue 15: ingest cost).
DELETE FROM activity_target WHERE EXISTS (
    SELECT 1 FROM activity_log AS a
    WHERE a.source = 'tapd' AND a.source_id = activity_target.source_id AND a.workspace_id = activity_target.target);
