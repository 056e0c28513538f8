package console

import "testing"

// A trail parameter's value cannot pose as a further field on the page.
func TestTrailParamsCannotPoseAsFields(t *testing.T) {
	for v, want := range map[string]string{
		"csv":                  "csv",
		"2026-01-01T00:00:00Z": "2026-01-01T00:00:00Z",
		"alice@example.com":    "alice@example.com",
		"x status=200":         `"x status=200"`,
		`a"b`:                  `"a\"b"`,
		"line\nstatus=200":     `"line\nstatus=200"`,
		"":                     "",
		"张三":                   "张三",
	} {
		if got := quoteParam(v); got != want {
			t.Errorf("quoteParam(%q) = %s, want %s", v, got, want)
		}
	}
}
