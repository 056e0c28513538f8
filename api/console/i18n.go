package console

import (
	"net/http"
	"sort"
	"strconv"
	"strings"
)

// Languages the console speaks; the first is the fallback.
var languages = []string{"en", "zh"}

// langCookie remembers the language switch.
const langCookie = "tapd_mirror_lang"

// chooseLang picks the page language: the switch (?lang=), then its cookie,
// then Accept-Language. setCookie is true when the switch was used.
func chooseLang(r *http.Request) (lang string, setCookie bool) {
	if l := r.URL.Query().Get("lang"); known(l) {
		return l, true
	}
	if c, err := r.Cookie(langCookie); err == nil && known(c.Value) {
		return c.Value, false
	}
	return fromAcceptLanguage(r.Header.Get("Accept-Language")), false
}

func known(l string) bool { return l == "en" || l == "zh" }

// fromAcceptLanguage returns the supported language the header prefers
// most (RFC 9110 quality values; zh-CN, zh-Hans, … count as zh).
func fromAcceptLanguage(header string) string {
	type pref struct {
		lang string
		q    float64
		pos  int
	}
	var prefs []pref
	for i, part := range strings.Split(header, ",") {
		tag, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		q := 1.0
		if v, ok := strings.CutPrefix(strings.TrimSpace(params), "q="); ok {
			if f, err := strconv.ParseFloat(v, 64); err == nil {
				q = f
			}
		}
		primary, _, _ := strings.Cut(strings.ToLower(tag), "-")
		if known(primary) && q > 0 {
			prefs = append(prefs, pref{primary, q, i})
		}
	}
	sort.SliceStable(prefs, func(i, j int) bool { return prefs[i].q > prefs[j].q })
	if len(prefs) > 0 {
		return prefs[0].lang
	}
	return languages[0]
}

// ActionKeys are TAPD's operate_type keys, in the order the console lists them.
var ActionKeys = []string{"add", "delete", "upload", "download"}

// ObjectKeys are TAPD's operate_object keys, in the order the console lists them.
var ObjectKeys = []string{"story", "bug", "task", "iteration", "attachment", "wiki", "document", "board",
	"tcase", "testplan", "launch", "release", "member_activity_log"}

// ActionLabels and ObjectLabels are TAPD's labels by language: Chinese
// exactly as TAPD sends them (operate_types, operate_objects), English as
// TAPD's English interface names them.
var (
	ActionLabels = map[string]map[string]string{
		"zh": {"add": "新增", "delete": "删除", "upload": "上传", "download": "下载"},
		"en": {"add": "Create", "delete": "Delete", "upload": "Upload", "download": "Download"},
	}
	ObjectLabels = map[string]map[string]string{
		"zh": {"board": "看板", "story": "需求", "bug": "缺陷", "iteration": "迭代", "wiki": "wiki", "document": "文档",
			"attachment": "附件", "task": "任务", "tcase": "测试用例", "testplan": "测试计划", "launch": "发布评审",
			"release": "发布计划", "member_activity_log": "成员活动日志"},
		"en": {"board": "Board", "story": "Story", "bug": "Bug", "iteration": "Iteration", "wiki": "Wiki",
			"document": "Document", "attachment": "Attachment", "task": "Task", "tcase": "Test case",
			"testplan": "Test plan", "launch": "Release review", "release": "Release plan",
			"member_activity_log": "Member activity log"},
	}
)

// messages are the console's own words. A key missing in one language
// falls back to English (a test keeps both complete).
var messages = map[string]map[string]string{
	"en": {
		"app":                 "tapd-mirror console",
		"nav.search":          "Search",
		"nav.timeline":        "Timeline",
		"nav.coverage":        "Coverage",
		"signin":              "Sign in",
		"signout":             "Sign out",
		"signed_in_as":        "Signed in as",
		"open_install":        "Open: no API token is configured, browsing needs no sign-in",
		"f.from":              "From",
		"f.to":                "To",
		"f.time_hint":         "YYYY-MM-DD or YYYY-MM-DD HH:MM, %s; a date alone in To includes that whole day",
		"f.project":           "Project",
		"f.project_hint":      "name or id",
		"f.user":              "User",
		"f.action":            "Action",
		"f.object":            "Object",
		"f.ip":                "IP",
		"f.q":                 "Text",
		"f.q_hint":            "part of the title or detail",
		"f.any":               "any",
		"f.search":            "Search",
		"f.reset":             "Reset",
		"r.count":             "%s records match",
		"r.count_more":        "More than %s records match",
		"r.count_exact":       "count them all (may take a while)",
		"r.count_slow":        "Not counted: counting this search takes longer than %s",
		"r.none":              "No record matches.",
		"r.time":              "Time",
		"r.user":              "User",
		"r.action":            "Action",
		"r.object":            "Object",
		"r.title":             "Title",
		"r.project":           "Project",
		"r.ip":                "IP",
		"p.newer":             "← Newer",
		"p.older":             "Older →",
		"p.newest":            "Newest",
		"x.export":            "Export this search",
		"x.csv":               "CSV",
		"x.ndjson":            "NDJSON",
		"x.bundle":            "Verification bundle",
		"x.bundle_hint":       "signed, verifiable offline with tapd-mirror verify (needs the verifiable archive)",
		"t.title":             "Activity over time",
		"t.by":                "per %s",
		"t.day":               "day",
		"t.week":              "week",
		"t.month":             "month",
		"t.hint":              "Click a bar to search that period.",
		"t.empty":             "Nothing to draw: no record matches.",
		"t.show":              "Timeline of this search",
		"t.since":             "Since %s: without a From, the last year up to the newest record is drawn.",
		"d.title":             "Record %d",
		"d.fields":            "Fields",
		"d.raw":               "Raw TAPD fields",
		"d.provenance":        "Provenance",
		"d.source":            "Source",
		"d.source_id":         "TAPD record id",
		"d.workspace":         "Stored by target",
		"d.ingested":          "Ingested at",
		"d.proof":             "Inclusion proof and checkpoint",
		"d.proof_none":        "No checkpoint has been signed yet: the server signs one within integrity.checkpoint_interval of a change, and this record's inclusion proof appears here then.",
		"d.proof_pending":     "This record changed after the latest signed checkpoint: its inclusion proof appears with the next one (within integrity.checkpoint_interval).",
		"d.cp_size":           "Checkpoint (tree size)",
		"d.cp_signed":         "Signed at",
		"d.cp_root":           "Root hash",
		"d.cp_note":           "The signed checkpoint",
		"d.ev_index":          "Event",
		"d.ev_kind":           "Kind",
		"d.ev_leaf":           "Leaf hash",
		"d.ev_path":           "Inclusion proof",
		"d.ev_hashes":         "hashes",
		"d.ev_checks":         "leads to the checkpoint's root",
		"d.ev_fails":          "does NOT lead to the checkpoint's root",
		"d.proof_how":         "Verify it yourself, offline, with the log's public key: GET /api/v1/integrity/proof/%d, or export a bundle and run tapd-mirror verify.",
		"d.back":              "Back to the results",
		"d.none":              "(none)",
		"c.title":             "Coverage",
		"c.no_syncer":         "Syncing is not running in this process, so there is no coverage to show.",
		"c.none":              "No TAPD workspace is configured (sync.workspaces).",
		"c.running":           "running",
		"c.idle":              "idle",
		"c.checkpoint":        "Checkpoint",
		"c.fresh":             "Fresh as of",
		"c.atrisk":            "Oldest unfetched (expires)",
		"c.next":              "Next run",
		"c.stored":            "Records reported",
		"c.legend_covered":    "verified coverage",
		"c.legend_gap":        "gap",
		"c.legend_acked":      "acknowledged gap",
		"c.legend_mirror":     "held only by the mirror (older than TAPD's horizon)",
		"c.legend_horizon":    "TAPD's horizon",
		"c.quota_paused":      "TAPD quota exceeded: paused until",
		"c.horizon":           "TAPD's horizon",
		"c.gaps":              "Gaps",
		"c.no_gaps":           "No gap.",
		"c.gap_from":          "From",
		"c.gap_to":            "To",
		"c.gap_ack":           "Acknowledged",
		"c.gap_reason":        "Reason",
		"c.yes":               "yes",
		"c.no":                "no",
		"c.runs":              "Last runs",
		"c.no_runs":           "No run yet.",
		"c.run":               "Run",
		"c.trigger":           "Trigger",
		"c.outcome":           "Outcome",
		"c.started":           "Started",
		"c.took":              "Took",
		"c.window":            "Window",
		"c.figures":           "Windows / pages / requests",
		"c.records":           "Fetched / inserted / updated / unchanged / suppressed",
		"c.remote":            "TAPD total",
		"c.error":             "Error and warnings",
		"c.resync":            "Resync",
		"c.resync_all":        "Resync every workspace",
		"c.mode_incremental":  "from the checkpoint",
		"c.mode_full":         "full (TAPD's whole half year)",
		"c.mode_since":        "since",
		"c.ack":               "Acknowledge gaps",
		"c.ack_note":          "Note (why the gap cannot be filled)",
		"c.admin_needed":      "Resync and acknowledging gaps need a token of scope admin.",
		"c.admin_none":        "Resync and acknowledging gaps need an admin token, and none is configured: set TAPD_MIRROR_ADMIN_TOKEN (or an auth.tokens entry of scope admin), restart, and sign in with it.",
		"c.admin_signin":      "Sign in with an admin token to resync or acknowledge gaps.",
		"c.queued":            "Queued: %s.",
		"c.already":           "Already running: %s.",
		"c.failed":            "Could not start: %s.",
		"c.nothing":           "Nothing was queued.",
		"c.acked":             "%d gap(s) of %s acknowledged.",
		"s.title":             "Sign in",
		"s.token":             "API token",
		"s.hint":              "A token of scope read lets you search and export; admin also lets you resync and acknowledge gaps. The token is checked once; the browser then holds a session cookie, never the token.",
		"s.open":              "No API token is configured: browsing needs no sign-in, and admin actions are off.",
		"e.title":             "Something went wrong",
		"e.back":              "Back to search",
		"e.not_found":         "There is no such page.",
		"e.record_not_found":  "Record %d does not exist (or was deleted).",
		"e.csrf":              "The form expired or did not come from this console (missing or wrong CSRF token). Reload the page and try again.",
		"e.cross_site":        "Refused: this form was sent from another site.",
		"e.need_signin":       "Sign in to continue.",
		"e.need_read":         "This needs a token of scope read.",
		"e.bad_time":          "%s: %q is not a time; use YYYY-MM-DD or YYYY-MM-DD HH:MM",
		"e.bad_range":         "From must be before To.",
		"e.bad_text":          "%s: %s",
		"e.too_long":          "%s: at most %d characters",
		"e.bad_cursor":        "This page link is broken; start again from the newest records.",
		"e.unknown_workspace": "Unknown workspace %q.",
		"e.bad_since":         "Resync since: %q is not a date (YYYY-MM-DD).",
		"e.internal":          "Internal error; the server log has the details.",
		"lang.en":             "English",
		"lang.zh":             "中文",
		"zone":                "Times in %s",
	},
	"zh": {
		"app":                 "tapd-mirror 合规控制台",
		"nav.search":          "搜索",
		"nav.timeline":        "时间线",
		"nav.coverage":        "覆盖情况",
		"signin":              "登录",
		"signout":             "退出",
		"signed_in_as":        "已登录：",
		"open_install":        "开放模式：未配置 API 令牌，浏览无需登录",
		"f.from":              "开始",
		"f.to":                "结束",
		"f.time_hint":         "YYYY-MM-DD 或 YYYY-MM-DD HH:MM，时区 %s；结束只填日期时包含当天全天",
		"f.project":           "项目",
		"f.project_hint":      "名称或 ID",
		"f.user":              "用户",
		"f.action":            "操作",
		"f.object":            "对象",
		"f.ip":                "IP",
		"f.q":                 "文本",
		"f.q_hint":            "标题或详情的一部分",
		"f.any":               "全部",
		"f.search":            "搜索",
		"f.reset":             "重置",
		"r.count":             "共 %s 条记录",
		"r.count_more":        "超过 %s 条记录",
		"r.count_exact":       "精确计数（可能较慢）",
		"r.count_slow":        "未计数：此搜索的计数耗时超过 %s",
		"r.none":              "没有匹配的记录。",
		"r.time":              "时间",
		"r.user":              "用户",
		"r.action":            "操作",
		"r.object":            "对象",
		"r.title":             "标题",
		"r.project":           "项目",
		"r.ip":                "IP",
		"p.newer":             "← 较新",
		"p.older":             "较早 →",
		"p.newest":            "最新",
		"x.export":            "导出本次搜索",
		"x.csv":               "CSV",
		"x.ndjson":            "NDJSON",
		"x.bundle":            "验证包",
		"x.bundle_hint":       "已签名，可用 tapd-mirror verify 离线验证（需要可验证归档）",
		"t.title":             "活动时间分布",
		"t.by":                "按%s",
		"t.day":               "天",
		"t.week":              "周",
		"t.month":             "月",
		"t.hint":              "点击柱形即可搜索该时间段。",
		"t.empty":             "没有匹配的记录，无可绘制内容。",
		"t.show":              "本次搜索的时间线",
		"t.since":             "自 %s 起：未填开始时间时，显示截至最新记录的最近一年。",
		"d.title":             "记录 %d",
		"d.fields":            "字段",
		"d.raw":               "TAPD 原始字段",
		"d.provenance":        "来源",
		"d.source":            "来源",
		"d.source_id":         "TAPD 记录 ID",
		"d.workspace":         "写入的同步目标",
		"d.ingested":          "入库时间",
		"d.proof":             "包含证明与检查点",
		"d.proof_none":        "尚未签署任何检查点：服务器会在数据变更后的 integrity.checkpoint_interval 内签署，届时此处将显示该记录的包含证明。",
		"d.proof_pending":     "该记录在最新签名检查点之后才有变更：其包含证明将随下一个检查点出现（integrity.checkpoint_interval 内）。",
		"d.cp_size":           "检查点（树大小）",
		"d.cp_signed":         "签署时间",
		"d.cp_root":           "根哈希",
		"d.cp_note":           "签名检查点",
		"d.ev_index":          "事件",
		"d.ev_kind":           "类型",
		"d.ev_leaf":           "叶子哈希",
		"d.ev_path":           "包含证明",
		"d.ev_hashes":         "个哈希",
		"d.ev_checks":         "可推导出检查点根哈希",
		"d.ev_fails":          "无法推导出检查点根哈希",
		"d.proof_how":         "请使用日志公钥离线自行验证：GET /api/v1/integrity/proof/%d，或导出验证包后运行 tapd-mirror verify。",
		"d.back":              "返回搜索结果",
		"d.none":              "（无）",
		"c.title":             "覆盖情况",
		"c.no_syncer":         "本进程未运行同步，无覆盖情况可显示。",
		"c.none":              "未配置任何 TAPD 工作空间（sync.workspaces）。",
		"c.running":           "运行中",
		"c.idle":              "空闲",
		"c.checkpoint":        "检查点",
		"c.fresh":             "数据新鲜至",
		"c.atrisk":            "最早未拉取（过期于）",
		"c.next":              "下次运行",
		"c.stored":            "已报告记录数",
		"c.legend_covered":    "已验证覆盖",
		"c.legend_gap":        "缺口",
		"c.legend_acked":      "已确认的缺口",
		"c.legend_mirror":     "仅镜像持有（早于 TAPD 可查询范围）",
		"c.legend_horizon":    "TAPD 可查询起点",
		"c.quota_paused":      "TAPD 配额超限：暂停至",
		"c.horizon":           "TAPD 可查询起点",
		"c.gaps":              "缺口",
		"c.no_gaps":           "无缺口。",
		"c.gap_from":          "开始",
		"c.gap_to":            "结束",
		"c.gap_ack":           "已确认",
		"c.gap_reason":        "原因",
		"c.yes":               "是",
		"c.no":                "否",
		"c.runs":              "最近运行",
		"c.no_runs":           "尚无运行记录。",
		"c.run":               "运行",
		"c.trigger":           "触发方式",
		"c.outcome":           "结果",
		"c.started":           "开始时间",
		"c.took":              "耗时",
		"c.window":            "时间窗口",
		"c.figures":           "窗口 / 页 / 请求",
		"c.records":           "获取 / 新增 / 更新 / 未变 / 已抑制",
		"c.remote":            "TAPD 总数",
		"c.error":             "错误与警告",
		"c.resync":            "重新同步",
		"c.resync_all":        "重新同步所有工作空间",
		"c.mode_incremental":  "从检查点开始",
		"c.mode_full":         "全量（TAPD 的整个半年）",
		"c.mode_since":        "自指定日期起",
		"c.ack":               "确认缺口",
		"c.ack_note":          "备注（缺口无法补齐的原因）",
		"c.admin_needed":      "重新同步和确认缺口需要 admin 权限的令牌。",
		"c.admin_none":        "重新同步和确认缺口需要 admin 令牌，但当前未配置：请设置 TAPD_MIRROR_ADMIN_TOKEN（或在 auth.tokens 中添加 admin 权限的令牌），重启后用它登录。",
		"c.admin_signin":      "使用 admin 令牌登录后可重新同步或确认缺口。",
		"c.queued":            "已排队：%s。",
		"c.already":           "已在运行：%s。",
		"c.failed":            "无法启动：%s。",
		"c.nothing":           "没有排队任何同步。",
		"c.acked":             "已确认 %[2]s 的 %[1]d 个缺口。",
		"s.title":             "登录",
		"s.token":             "API 令牌",
		"s.hint":              "read 权限的令牌可搜索和导出；admin 还可重新同步和确认缺口。令牌只校验一次，之后浏览器仅持有会话 Cookie，不保存令牌。",
		"s.open":              "未配置 API 令牌：浏览无需登录，管理操作不可用。",
		"e.title":             "出错了",
		"e.back":              "返回搜索",
		"e.not_found":         "页面不存在。",
		"e.record_not_found":  "记录 %d 不存在（或已被删除）。",
		"e.csrf":              "表单已过期或并非来自本控制台（CSRF 令牌缺失或错误）。请刷新页面后重试。",
		"e.cross_site":        "已拒绝：该表单来自其他站点。",
		"e.need_signin":       "请先登录。",
		"e.need_read":         "需要 read 权限的令牌。",
		"e.bad_time":          "%s：%q 不是有效时间，请使用 YYYY-MM-DD 或 YYYY-MM-DD HH:MM",
		"e.bad_range":         "开始时间必须早于结束时间。",
		"e.bad_text":          "%s：%s",
		"e.too_long":          "%s：最多 %d 个字符",
		"e.bad_cursor":        "分页链接无效，请从最新记录重新开始。",
		"e.unknown_workspace": "未知的工作空间 %q。",
		"e.bad_since":         "重新同步起始日期 %q 无效（YYYY-MM-DD）。",
		"e.internal":          "内部错误，详情见服务器日志。",
		"lang.en":             "English",
		"lang.zh":             "中文",
		"zone":                "时间均为 %s",
	},
}
