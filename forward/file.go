package forward

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/tapd-mirror/tapd-mirror/config"
)

// partialSuffix marks the file being written: readers pick up *.ndjson only,
// and a file gets that name (by rename, atomically) once it is complete.
const partialSuffix = ".partial"

// file writes batches to NDJSON files in a directory, rotated by size and
// age. A batch is acknowledged once written and synced to the open file.
type file struct {
	dir, name string
	// stem starts every file's name: the destination's name, or for alert
	// batches name+".alert" (no destination name holds a dot, so neither
	// stream's files match the other's, nor another destination's).
	stem string
	// each closes the file after every batch (alerts: a SIEM should see an
	// alert at once, not after rotate_age).
	each      bool
	format    string
	maxBytes  int64
	maxAge    time.Duration
	now       func() time.Time
	cur       *os.File
	curPath   string
	curSize   int64
	curOpened time.Time
}

func newFile(f config.Forward, now func() time.Time, alerts bool) (*file, error) {
	d := &file{dir: f.Path, name: f.Name, stem: f.Name, each: alerts, format: f.Format, maxBytes: f.RotateBytes, maxAge: f.RotateAge.Duration, now: now}
	if alerts {
		d.stem = f.Name + ".alert"
	}
	if err := os.MkdirAll(d.dir, 0o750); err != nil {
		return nil, fmt.Errorf("file destination %s: creating %s: %w", f.Name, d.dir, err)
	}
	if err := d.recover(); err != nil {
		return nil, err
	}
	return d, nil
}

// recover closes the partial files a stopped process left: everything up
// to their last newline was acknowledged or is about to be sent again (the
// cursor did not move past it); a half-written last line is cut off.
func (d *file) recover() error {
	// stem-<20 digits>-…: not the files of a destination "stem-x" that
	// shares the path.
	parts, err := filepath.Glob(filepath.Join(d.dir, d.stem+"-"+strings.Repeat("[0-9]", 20)+"-*.ndjson"+partialSuffix))
	if err != nil {
		return err
	}
	for _, p := range parts {
		raw, err := os.ReadFile(p)
		if err != nil {
			return fmt.Errorf("file destination %s: reading %s: %w", d.name, p, err)
		}
		keep := bytes.LastIndexByte(raw, '\n') + 1
		if keep == 0 {
			if err := os.Remove(p); err != nil {
				return fmt.Errorf("file destination %s: %w", d.name, err)
			}
			continue
		}
		if keep < len(raw) {
			if err := os.Truncate(p, int64(keep)); err != nil {
				return fmt.Errorf("file destination %s: cutting the half line off %s: %w", d.name, p, err)
			}
		}
		if err := d.publish(p); err != nil {
			return err
		}
	}
	return nil
}

// publish renames a complete partial file to its final name.
func (d *file) publish(partial string) error {
	final := strings.TrimSuffix(partial, partialSuffix)
	if err := os.Rename(partial, final); err != nil {
		return fmt.Errorf("file destination %s: closing %s: %w", d.name, final, err)
	}
	return syncDir(d.dir)
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

func (d *file) Deliver(ctx context.Context, b Batch) error {
	body, err := ndjson(d.format, b)
	if err != nil {
		return err
	}
	if err := d.rotate(false); err != nil {
		return err
	}
	if d.cur == nil {
		now := d.now()
		// The first index (alerts: firing id) names the file (log order
		// sorts as names do); the opening time keeps a name unused when a
		// batch is sent again.
		d.curPath = filepath.Join(d.dir, fmt.Sprintf("%s-%020d-%d.ndjson%s", d.stem, b.First, now.UnixNano(), partialSuffix))
		f, err := os.OpenFile(d.curPath, os.O_CREATE|os.O_EXCL|os.O_WRONLY|os.O_APPEND, 0o640)
		if err != nil {
			return fmt.Errorf("file destination %s: %w", d.name, err)
		}
		d.cur, d.curSize, d.curOpened = f, 0, now
	}
	n, err := d.cur.Write(body)
	d.curSize += int64(n)
	if err == nil {
		err = d.cur.Sync()
	}
	if err != nil {
		// A short write leaves a half line: cut it, or give up the file.
		if terr := d.cur.Truncate(d.curSize - int64(n)); terr == nil {
			d.curSize -= int64(n)
		}
		return fmt.Errorf("file destination %s: writing %s to %s: %w", d.name, b.span(), d.curPath, err)
	}
	return d.rotate(d.each)
}

// rotate closes the open file when it is full or old enough (or always).
func (d *file) rotate(always bool) error {
	if d.cur == nil || !(always || d.curSize >= d.maxBytes || d.now().Sub(d.curOpened) >= d.maxAge) {
		return nil
	}
	if err := d.cur.Close(); err != nil {
		return fmt.Errorf("file destination %s: closing %s: %w", d.name, d.curPath, err)
	}
	d.cur = nil
	return d.publish(d.curPath)
}

// Idle lets an open file be closed by age while no events come.
func (d *file) Idle() error { return d.rotate(false) }

// Close closes the open file: what it holds was acknowledged.
func (d *file) Close() error { return d.rotate(true) }
