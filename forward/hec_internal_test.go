package forward

import (
	"encoding/json"
	"testing"
	"time"
)

// epochMillis is a JSON number for any time, 1970 and before included.
func TestEpochMillisIsAJSONNumber(t *testing.T) {
	for _, at := range []time.Time{time.UnixMilli(1767225600123), time.UnixMilli(0), time.UnixMilli(-500), time.UnixMilli(-1500)} {
		n := epochMillis(at)
		var f float64
		if err := json.Unmarshal([]byte(n), &f); err != nil {
			t.Fatalf("%v: %s is not a JSON number: %v", at, n, err)
		}
		if got := int64(f*1000 + 0.5*sign(f)); got != at.UnixMilli() {
			t.Errorf("%s reads %d ms, want %d", n, got, at.UnixMilli())
		}
	}
}

func sign(f float64) float64 {
	if f < 0 {
		return -1
	}
	return 1
}
