package console_test

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/tapd-mirror/tapd-mirror/storage/storagetest"
	"github.com/tapd-mirror/tapd-mirror/syncer"
)

// The coverage page counts and draws what only the mirror holds (records
// older than TAPD's horizon), and every span and label of its axes lies
// inside the chart, in both languages, on both databases: before anything
// left TAPD (no grey span, the horizon at the axis' left edge) and a month
// later (a grey span from the oldest record to the horizon).
func TestConsoleInBrowserBeyondHorizon(t *testing.T) {
	for _, dialect := range storagetest.Dialects {
		t.Run(dialect, func(t *testing.T) {
			m := startMirror(t, storagetest.URL(t, dialect), scopedTokens())
			b := newBrowser(t, "en-US,en;q=0.9").with(t)
			b.signIn(m.url, adminTok)
			for _, lang := range []string{"en", "zh"} {
				b.open(m.url + "/coverage?lang=" + lang)
				if n := eval[int](b, `document.querySelectorAll("svg.axis rect.mirror, svg.axis .mirror-label, #beyond-total").length`); n != 0 {
					t.Fatalf("%s: %d grey spans or counts before anything left TAPD", lang, n)
				}
				assertAxesInside(t, b, lang+", nothing beyond the horizon")
			}

			// A month on, TAPD's oldest month is gone; the mirror keeps it.
			m.fake.Advance(30 * 24 * time.Hour)
			if _, err := m.syncer.RunAll(context.Background(), syncer.RunOptions{Trigger: syncer.TriggerManual}, ""); err != nil {
				t.Fatal(err)
			}
			total, err := m.store.RecordsBeyond(context.Background(), m.syncer.Horizon())
			if err != nil || total.Records == 0 {
				t.Fatalf("nothing beyond the horizon after a month: %+v, %v", total, err)
			}
			statuses, err := m.syncer.Status(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]string{"en": thousands(int(total.Records)) + " records are older than TAPD's horizon",
				"zh": thousands(int(total.Records)) + " 条记录早于 TAPD 可查询起点"}
			for _, lang := range []string{"en", "zh"} {
				b.open(m.url + "/coverage?lang=" + lang)
				if got := b.text(`#beyond-total`); !strings.HasPrefix(got, want[lang]) {
					t.Fatalf("%s: the page says %q, want %q…", lang, got, want[lang])
				}
				for _, st := range statuses {
					n := thousands(int(st.BeyondHorizon.Records))
					sel := `section[data-workspace="` + st.Workspace + `"]`
					if got := eval[string](b, fmt.Sprintf(`document.querySelector(%q).textContent`, sel+` svg.axis .mirror-label`)); !strings.Contains(got, n) {
						t.Errorf("%s %s: grey span labelled %q, want its %s records", lang, st.Workspace, got, n)
					}
					if got := b.text(sel + ` dd.beyond`); !strings.HasPrefix(got, n) {
						t.Errorf("%s %s: facts say %q, want %s", lang, st.Workspace, got, n)
					}
					// Drawn from the data: from the oldest record (the axis' start) to the horizon.
					span := eval[[]float64](b, `(() => { const s = document.querySelector('`+sel+` svg.axis');
						const r = s.querySelector("rect.mirror"), h = s.querySelector("line.horizon");
						return [Number(r.getAttribute("x")), Number(r.getAttribute("width")), Number(h.getAttribute("x1"))]; })()`)
					if span[0] < 8 || span[0] > 10 || span[1] <= 0 || math.Abs(span[0]+span[1]-span[2]) > 0.01 {
						t.Errorf("%s %s: grey span x=%v width=%v, horizon at %v", lang, st.Workspace, span[0], span[1], span[2])
					}
				}
				assertAxesInside(t, b, lang+", a month beyond the horizon")
				if dialect == "sqlite" {
					shoot(b, map[string]string{"en": "console-coverage.png", "zh": "console-coverage-zh.png"}[lang])
				}
			}
		})
	}
}

// assertAxesInside fails unless every span, line and label of every
// coverage axis on the page lies inside its chart.
func assertAxesInside(t *testing.T, b *browser, when string) {
	t.Helper()
	type drawn struct {
		What   string  `json:"what"`
		Inside bool    `json:"inside"`
		Width  float64 `json:"width"`
	}
	all := eval[[]drawn](b, `[...document.querySelectorAll("svg.axis")].flatMap(svg => {
		const box = svg.getBoundingClientRect();
		return [...svg.querySelectorAll("rect, line, text")].map(e => {
			const r = e.getBoundingClientRect();
			return {what: (e.getAttribute("class") || e.tagName) + " " + e.textContent, width: r.width,
				inside: r.left >= box.left - 0.5 && r.right <= box.right + 0.5 && r.top >= box.top - 0.5 && r.bottom <= box.bottom + 0.5};
		});
	})`)
	labels := 0
	for _, d := range all {
		if !d.Inside {
			t.Errorf("%s: %q is drawn outside its chart", when, d.What)
		}
		if strings.HasPrefix(d.What, "lane ") {
			labels++
			if d.Width == 0 {
				t.Errorf("%s: label %q has no width", when, d.What)
			}
		}
	}
	if len(all) == 0 || labels == 0 {
		t.Fatalf("%s: no axis drawn (%d elements, %d lane labels)", when, len(all), labels)
	}
}

// shoot saves what the window shows for the README when
// CONSOLE_SCREENSHOTS names a directory (see writeScreenshots).
func shoot(b *browser, file string) {
	dir := os.Getenv("CONSOLE_SCREENSHOTS")
	if dir == "" {
		return
	}
	png := get(b, chromedp.CaptureScreenshot())
	if err := os.WriteFile(filepath.Join(dir, file), png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	b.t.Logf("screenshot %s", filepath.Join(dir, file))
}
