package tapdtest

import (
	"fmt"
	"math/rand/v2"
	"time"
)

// Record is one activity the fake knows, with the keys TAPD hides behind labels.
type Record struct {
	ID           string
	Workspace    string // project id, or the company id for company-level logs
	CompanyLevel bool
	Created      time.Time // whole seconds, in Shanghai
	Creator      string
	ProjectName  string
	TypeKey      string // add, delete, upload, download
	ObjectKey    string // story, iteration, …
	Title        string
	URL          string
	IP           string
	UA           string
	Action       string
	// TitleJSON, when set, is sent verbatim between the quotes of the
	// title, bypassing the encoder: a lone surrogate escape (`a\ud800b`)
	// or raw invalid UTF-8 ("caf\xe9"), as some TAPD data holds. Title is
	// then what a Go client decodes: encoding/json turns both into U+FFFD.
	TitleJSON string
}

// Label maps exactly as TAPD sends them.
var (
	OperateTypes = map[string]string{"add": "新增", "delete": "删除", "upload": "上传", "download": "下载"}
	// OperateObjects has TAPD's 13 objects.
	OperateObjects = map[string]string{"board": "看板", "story": "需求", "bug": "缺陷", "iteration": "迭代",
		"wiki": "wiki", "document": "文档", "attachment": "附件", "task": "任务", "tcase": "测试用例",
		"testplan": "测试计划", "launch": "发布评审", "release": "发布计划", "member_activity_log": "成员活动日志"}
)

var (
	typeKeys   = []string{"add", "add", "add", "delete", "upload", "download"}
	objectKeys = []string{"board", "story", "bug", "iteration", "wiki", "document", "attachment", "task",
		"tcase", "testplan", "launch", "release", "member_activity_log"}
	creators = []string{"啊啊啊", "张伟", "李娜", `王"小明"`, "Zoë 🚀", "o'brien", `back\slash`, "陈静", "alice"}
	titles   = []string{"batch_create_%d", "登录页改版 #%d", "修复支付回调 %d", "季度规划 🗓️ %d",
		`"quoted" title %d`, "テスト %d", "<script>alert(%d)</script>", "路径/含/斜杠 %d"}
	uas = []string{
		"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/117.0.0.0 Safari/537.36",
		"Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Safari/605.1.15",
		"TAPD-iOS/5.2.1",
	}
)

// newRecord makes one plausible record in workspace at created.
func newRecord(rng *rand.Rand, workspace, projectName string, companyLevel bool, created time.Time) Record {
	typ := typeKeys[rng.IntN(len(typeKeys))]
	obj := objectKeys[rng.IntN(len(objectKeys))]
	n := rng.IntN(100000)
	verb := map[string]string{"add": "create", "delete": "delete", "upload": "upload", "download": "download"}[typ]
	return Record{
		Workspace:    workspace,
		CompanyLevel: companyLevel,
		Created:      created.Truncate(time.Second),
		Creator:      creators[rng.IntN(len(creators))],
		ProjectName:  projectName,
		TypeKey:      typ,
		ObjectKey:    obj,
		Title:        fmt.Sprintf(titles[rng.IntN(len(titles))], n),
		URL:          fmt.Sprintf("%s/prong/%ss/card_view/11%s%09d", workspace, obj, workspace, n),
		IP:           fmt.Sprintf("10.%d.%d.%d", rng.IntN(256), rng.IntN(256), 1+rng.IntN(254)),
		UA:           uas[rng.IntN(len(uas))],
		Action:       "/" + obj + "/" + verb,
	}
}
