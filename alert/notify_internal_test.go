package alert

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tapd-mirror/tapd-mirror/storage"
)

// TestMessageLinksAndEscapes: a firing's message links to the console
// search of exactly its records (to is exclusive: one second past the last
// one), and a username cannot turn into markdown or a link of its own.
func TestMessageLinksAndEscapes(t *testing.T) {
	sh, _ := time.LoadLocation("Asia/Shanghai")
	e := &Engine{o: Options{Location: sh, Console: sh, ConsoleURL: "https://mirror.example/"}}
	start := time.Date(2026, 12, 1, 2, 3, 4, 0, sh)
	f := storage.AlertFiring{ID: 7, Rule: "bulk-download", Key: "[eve](https://evil.example)*", Count: 120,
		WindowStart: start, WindowEnd: start.Add(59 * time.Minute), FirstRecordID: 10, LastRecordID: 129,
		Search: "action=download&user=%5Beve%5D%28https%3A%2F%2Fevil.example%29%2A"}
	m := e.compose([]storage.AlertFiring{f})
	text := m.text(4096)
	link := "https://mirror.example/?action=download&from=2026-12-01+02%3A03%3A04&to=2026-12-01+03%3A02%3A05&user=%5Beve%5D%28https%3A%2F%2Fevil.example%29%2A"
	if !strings.Contains(text, "[search the records]("+link+")") {
		t.Fatalf("no link to the records' search:\n%s", text)
	}
	if !strings.Contains(text, `> key: \[eve\]\(https://evil.example\)\*`) {
		t.Fatalf("the key is not escaped:\n%s", text)
	}
	if !strings.Contains(text, "120 records from 2026-12-01 02:03:04 to 2026-12-01 03:02:04 (Asia/Shanghai)") {
		t.Fatalf("window:\n%s", text)
	}
	// Cut to a limit on a line boundary, saying what was left out.
	if got := m.text(60); len(got) > 60 || !strings.Contains(got, "more lines)") {
		t.Fatalf("cut text (%d bytes): %q", len(got), got)
	}
}

// TestMarkdownEscapeHostileText: a key cannot close our escape with its
// own backslash, start a line (CR, LF, U+2028), form a tag, entity or
// mention (<@id>, <at id=all>, @all), or hide behind a bidi override.
func TestMarkdownEscapeHostileText(t *testing.T) {
	for in, want := range map[string]string{
		`\[Security notice\](https://evil.example/login)`: `\\\[Security notice\\\]\(https://evil.example/login\)`,
		"eve\r# fake heading\r> quote":                    "eve # fake heading ＞ quote",
		"a\nb\u2028c\u2029d\te\x00f\x7fg\u0085h":          "a b c d e f g h",
		"<@zhangsan> <at id=all></at> @all":               "＜＠zhangsan＞ ＜at id=all＞＜/at＞ ＠all",
		"&lt;at id=all&gt;":                               "＆lt;at id=all＆gt;",
		"**bold** _it_ ~~gone~~ ![img](x) `code`":         `\*\*bold\*\* \_it\_ \~\~gone\~\~ \!\[img\]\(x\) 'code'`,
		"user\u202eexe.pdf":                               "user exe.pdf",
		"张三_01 10.0.0.1":                                  `张三\_01 10.0.0.1`,
	} {
		if got := mdEscape(in); got != want {
			t.Errorf("mdEscape(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestMessagesInChinese: alerts.language zh words every message in
// Chinese, with the same facts in their places, and no phrase of either
// language misses an argument.
func TestMessagesInChinese(t *testing.T) {
	sh, _ := time.LoadLocation("Asia/Shanghai")
	start := time.Date(2026, 12, 1, 2, 3, 4, 0, sh)
	one := storage.AlertFiring{ID: 7, Rule: "bulk-download", Key: "王芳", Count: 120, WindowStart: start,
		WindowEnd: start.Add(59 * time.Minute), FirstRecordID: 10, LastRecordID: 129, FiredAt: start, Search: "user=x"}
	single := one
	single.Count, single.WindowEnd = 1, start
	var burst []storage.AlertFiring
	for i := range 25 {
		f := one
		f.ID, f.Key = int64(100+i), fmt.Sprint("user", i)
		burst = append(burst, f)
	}
	for _, lang := range []string{"en", "zh"} {
		e := &Engine{o: Options{Location: sh, Console: sh, ConsoleURL: "https://mirror.example", Language: lang}}
		for name, fs := range map[string][]storage.AlertFiring{"threshold": {one}, "single": {single}, "burst": burst} {
			text := e.compose(fs).text(4096)
			if strings.Contains(text, "%!") {
				t.Errorf("%s %s: a phrase misses an argument:\n%s", lang, name, text)
			}
			if hasHan := strings.ContainsAny(text, "告警记录条"); hasHan != (lang == "zh") {
				t.Errorf("%s %s: Chinese words %v:\n%s", lang, name, hasHan, text)
			}
		}
	}
	e := &Engine{o: Options{Location: sh, Console: sh, ConsoleURL: "https://mirror.example", Language: "zh"}}
	text := e.compose([]storage.AlertFiring{one}).text(4096)
	for _, want := range []string{"**tapd-mirror 告警：bulk-download**", "> 对象：王芳",
		"> 2026-12-01 02:03:04 至 2026-12-01 03:02:04（Asia/Shanghai）共 120 条记录", "> 记录 #10 至 #129，告警 7", "[查看这些记录](https://mirror.example/?"} {
		if !strings.Contains(text, want) {
			t.Errorf("no %q in\n%s", want, text)
		}
	}
	text = e.compose(burst).text(4096)
	if !strings.Contains(text, "- bulk-download：25 条，user0 (120), ") || !strings.Contains(text, " 等另外 5 个") {
		t.Errorf("burst:\n%s", text)
	}
	if got := e.compose(burst).text(80); !strings.Contains(got, "…（另有 ") {
		t.Errorf("cut text: %q", got)
	}
}
