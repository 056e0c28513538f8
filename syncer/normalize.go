package syncer

import (
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/tapd-mirror/tapd-mirror/storage"
	"github.com/tapd-mirror/tapd-mirror/tapd"
)

// Platform is the platform value of every mirrored record.
const Platform = "tapd"

// normalize maps one TAPD record into the common activity-log schema.
func normalize(r tapd.Record, labels labelIndex, t Target) storage.Activity {
	extra := map[string]string{}
	clean := func(field, v string) string {
		c := storeable(v)
		if c != v {
			extra[field+"_raw"] = strconv.QuoteToASCII(v) // the exact value, escaped so any database keeps it
		}
		return c
	}
	r.Title, r.Creator, r.ProjectName = clean("title", r.Title), clean("creator", r.Creator), clean("project_name", r.ProjectName)
	r.Action, r.URL, r.IP, r.UA = clean("action", r.Action), clean("url", r.URL), clean("ip", r.IP), clean("ua", r.UA)
	r.OperateObject, r.OperateType = clean("operate_object", r.OperateObject), clean("operate_type", r.OperateType)

	objectKey := labels.objects[r.OperateObject]
	detail := r.Title
	if r.OperateObject != "" {
		detail = r.OperateObject + ": " + r.Title
	}
	actionType, ok := labels.types[r.OperateType]
	if !ok {
		actionType = r.OperateType // unknown label: keep it verbatim rather than guess
	}
	for k, v := range map[string]string{
		"ip": r.IP, "ua": r.UA, "url": r.URL, "project_name": r.ProjectName,
		"operate_object": r.OperateObject, "operate_type": r.OperateType,
		"action": r.Action, "title": r.Title, "operate_object_key": objectKey,
		"created": r.CreatedRaw, // TAPD's own text: the instant is derived from it and its zone
	} {
		if v != "" {
			extra[k] = v
		}
	}
	return storage.Activity{
		Platform:     Platform,
		Serial:       serialOf(r, t),
		ActionType:   actionType,
		ActionDetail: detail,
		Username:     r.Creator,
		Timestamp:    r.Created,
		Source:       storage.SourceTAPD,
		SourceID:     r.ID,
		WorkspaceID:  t.Key,
		Extra:        extra,
	}
}

// storeable makes text every database accepts: PostgreSQL refuses NUL in
// text and JSON, and invalid UTF-8 anywhere. NUL is dropped and invalid
// sequences become U+FFFD.
func storeable(s string) string {
	if utf8.ValidString(s) && !strings.ContainsRune(s, 0) {
		return s
	}
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "")
}

// serialOf is the project a record belongs to: the url starts with the
// project id ("10074561/prong/…"), which matters for records fetched through
// a company id; otherwise the workspace asked for.
func serialOf(r tapd.Record, t Target) string {
	prefix, _, _ := strings.Cut(strings.TrimPrefix(r.URL, "/"), "/")
	if prefix != "" && strings.Trim(prefix, "0123456789") == "" {
		return prefix
	}
	return t.WorkspaceID
}

// labelIndex reverses TAPD's key → label maps.
type labelIndex struct {
	types, objects map[string]string // label → key
}

func indexLabels(p tapd.Page) labelIndex {
	rev := func(m map[string]string) map[string]string {
		out := make(map[string]string, len(m))
		for k, v := range m {
			out[v] = k
		}
		return out
	}
	return labelIndex{types: rev(p.OperateTypes), objects: rev(p.OperateObjects)}
}
