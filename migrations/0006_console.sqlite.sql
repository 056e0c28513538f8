-- The console's filters (issue 13): free text over action_detail (q), and
-- the ip and object type held in extra.

-- q is a case-insensitive substring: an FTS5 trigram index answers it for 3
-- characters and more (storage/search.go). External content: the text stays
-- in activity_log only, and triggers keep the index in step with every write
-- path (insert, upsert's update, delete, delete-all).
CREATE VIRTUAL TABLE activity_fts USING fts5(action_detail, content = 'activity_log', content_rowid = 'id', tokenize = 'trigram');
INSERT INTO activity_fts (activity_fts) VALUES ('rebuild');

CREATE TRIGGER activity_fts_insert AFTER INSERT ON activity_log BEGIN
    INSERT INTO activity_fts (rowid, action_detail) VALUES (new.id, new.action_detail);
END;
CREATE TRIGGER activity_fts_delete AFTER DELETE ON activity_log BEGIN
    INSERT INTO activity_fts (activity_fts, rowid, action_detail) VALUES ('delete', old.id, old.action_detail);
END;
CREATE TRIGGER activity_fts_update AFTER UPDATE OF action_detail ON activity_log BEGIN
    INSERT INTO activity_fts (activity_fts, rowid, action_detail) VALUES ('delete', old.id, old.action_detail);
    INSERT INTO activity_fts (rowid, action_detail) VALUES (new.id, new.action_detail);
END;

-- ip and object type: the same expressions as the queries (storage/search.go).
CREATE INDEX activity_log_ip_idx     ON activity_log (json_extract(extra, '$.ip'), timestamp DESC, id DESC);
CREATE INDEX activity_log_object_idx ON activity_log (json_extract(extra, '$.operate_object_key'), timestamp DESC, id DESC);
