package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	neturl "net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/tapd-mirror/tapd-mirror/config"
	"github.com/tapd-mirror/tapd-mirror/integrity"
	"github.com/tapd-mirror/tapd-mirror/storage"
)

// backupCmd writes a full or an incremental backup.
func (m *Main) backupCmd(ctx context.Context, args []string) error {
	var c common
	fs := m.flags("backup --out FILE [--incremental-from EARLIER]", "Write a backup of the archive: every event of the integrity log with its content and\n"+
		"the sync state a restore needs to resume, read in one consistent snapshot (safe while\n"+
		"serve runs), with a checkpoint signed at its end. With --incremental-from, only what\n"+
		"came after an earlier backup, with the proof that this log extends it.\n"+
		"'tapd-mirror restore' replays backups into an empty database of either dialect.", &c)
	out := fs.String("out", "", "backup `file` to write (required)")
	from := fs.String("incremental-from", "", "an earlier backup `file` (full or incremental): write only what came after it")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *out == "" {
		return usageError{errors.New("backup: --out FILE is required")}
	}
	cfg, log, err := m.setup(c)
	if err != nil {
		return err
	}
	st, err := openStore(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer st.Close()
	key, _, err := signingKey(cfg)
	if err != nil {
		return err
	}
	start := time.Now()
	res, size, err := writeBackupFile(ctx, st, key, *out, *from, m.now())
	if err != nil {
		return err
	}
	kind := "full"
	if res.From > 0 {
		kind = fmt.Sprintf("incremental (after %s, events from %d)", *from, res.From)
	}
	fmt.Fprintf(m.Stdout, "wrote %s backup %s: %d events, %d state rows, %d bytes; log of %d events, root %s; took %s\n",
		kind, *out, res.Events, res.StateRows, size, res.Checkpoint.Size, res.Checkpoint.Root, time.Since(start).Round(time.Millisecond))
	fmt.Fprintf(m.Stdout, "restore with: tapd-mirror restore FULL [INCREMENTAL…] --key %s\n", key.VerifierKey())
	return nil
}

// signingKey loads (or creates: created) the archive's checkpoint signing key.
func signingKey(cfg config.Config) (key *integrity.Key, created bool, err error) {
	key, created, err = integrity.LoadOrCreateKey(cfg.IntegrityKeyFile(), cfg.Integrity.LogName)
	if err != nil {
		return nil, false, fmt.Errorf("integrity signing key (integrity.key_file, TAPD_MIRROR_INTEGRITY_KEY_FILE): %w", err)
	}
	return key, created, nil
}

// maxWitness bounds what is read of a published witness file.
const maxWitness = 64 << 20

// readWitness reads a witness file from a path or an http(s) URL.
func readWitness(ctx context.Context, where string) ([]byte, error) {
	if !strings.HasPrefix(where, "http://") && !strings.HasPrefix(where, "https://") {
		return os.ReadFile(where)
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, where, nil)
	if err != nil {
		return nil, errors.New("not a valid URL") // the parse error would quote it
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		var ue *neturl.Error
		if errors.As(err, &ue) {
			err = ue.Err // without the URL
		}
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("the witness answered %s", resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxWitness+1))
	if err == nil && len(data) > maxWitness {
		err = fmt.Errorf("the witness file is larger than %d MiB", maxWitness>>20)
	}
	return data, err
}

// writeBackupFile writes a backup to path, never leaving a partial file:
// it is written beside path, synced, then renamed into place. earlier is
// the backup an incremental one continues ("" for a full backup).
func writeBackupFile(ctx context.Context, st *storage.Store, key *integrity.Key, path, earlier string, now time.Time) (storage.BackupResult, int64, error) {
	var from *integrity.Checkpoint
	if earlier != "" {
		cp, err := readBackupCheckpoint(earlier, key.VerifierKey())
		if err != nil {
			return storage.BackupResult{}, 0, err
		}
		from = &cp
	}
	var res storage.BackupResult
	size, err := writeFileAtomic(path, func(w io.Writer) error {
		var err error
		res, err = st.WriteBackup(ctx, w, key, from, now)
		return err
	})
	if err != nil {
		return res, 0, fmt.Errorf("writing backup %s: %w", path, err)
	}
	return res, size, nil
}

// writeFileAtomic writes path through write, never leaving a partial
// file: into a temporary file beside it, buffered, synced, then renamed
// into place. It returns the file's size.
func writeFileAtomic(path string, write func(w io.Writer) error) (int64, error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+"-*")
	if err != nil {
		return 0, err
	}
	defer os.Remove(tmp.Name())
	bw := bufio.NewWriterSize(tmp, 1<<20)
	err = write(bw)
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		err = tmp.Sync()
	}
	var size int64
	if fi, serr := tmp.Stat(); serr == nil {
		size = fi.Size()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	return size, err
}

// readBackupCheckpoint reads the signed checkpoint of an earlier backup.
func readBackupCheckpoint(path, vkey string) (integrity.Checkpoint, error) {
	f, err := os.Open(path)
	if err != nil {
		return integrity.Checkpoint{}, fmt.Errorf("opening the earlier backup: %w", err)
	}
	defer f.Close()
	cp, _, err := integrity.ReadBackupCheckpoint(bufio.NewReader(f), vkey)
	if err != nil {
		return cp, fmt.Errorf("earlier backup %s: %w", path, err)
	}
	return cp, nil
}

// restoreCmd replays backups into an empty database.
func (m *Main) restoreCmd(ctx context.Context, args []string) error {
	var c common
	fs := m.flags("restore FULL [INCREMENTAL…]", "Restore backups into the configured database (database_url), which must be empty:\n"+
		"a full backup, then its incrementals in order. Each event is replayed in order (record\n"+
		"ids kept) and verified as it is read; the rebuilt log's root must equal each backup's\n"+
		"signed checkpoint. A damaged, truncated, reordered or foreign backup is refused,\n"+
		"naming the first bad event, and nothing is written (one transaction). Either dialect\n"+
		"restores either dialect's backups: this is how an archive moves to PostgreSQL.", &c)
	key := fs.String("key", "", "the verifier `key` (name+hash+keydata, or a file holding it) the backups must be signed by;\nwithout it they are checked against the key they name (undamaged, one log — not who wrote them)")
	published := fs.String("checkpoint", "", "a published checkpoint the restored log must extend: the witness `file` or an http(s) URL\nthat serves it (its last checkpoint is used)")
	dir := fs.String("dir", "", "restore the newest chain of scheduled backups in this `directory` (backup.dir): its newest full backup and the incrementals after it")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if *dir != "" {
		if len(pos) > 0 {
			return usageError{errors.New("restore: give backup files or --dir, not both")}
		}
		files, err := listBackups(*dir)
		if err != nil {
			return err
		}
		for _, f := range latestChain(files) {
			pos = append(pos, f.path)
		}
		if len(pos) == 0 {
			return fmt.Errorf("restore: no full backup in %s", *dir)
		}
	}
	if len(pos) == 0 {
		fs.Usage()
		return usageError{errors.New("restore: want a full backup file, then its incrementals")}
	}
	vkey := ""
	if *key != "" {
		if vkey, err = readVerifierKey(*key); err != nil {
			return usageError{err}
		}
	}
	cfg, log, err := m.setup(c)
	if err != nil {
		return err
	}
	files, closeAll, err := openAll(pos)
	if err != nil {
		return err
	}
	defer closeAll()
	opts := storage.RestoreOptions{Key: vkey}
	if *published != "" {
		trust := vkey
		if trust == "" { // the key the full backup names, as for the backups
			f, err := os.Open(pos[0])
			if err != nil {
				return err
			}
			rd, err := integrity.OpenBackup(f, "", nil, nil)
			f.Close()
			if err != nil {
				return fmt.Errorf("backup %s: %w", pos[0], err)
			}
			trust = rd.Key
		}
		cp, err := readPublished(ctx, *published, trust)
		if err != nil {
			return err
		}
		opts.Published = &cp
	}
	st, err := openStore(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer st.Close()
	start := time.Now()
	res, err := st.Restore(ctx, files, opts)
	if err != nil {
		return fmt.Errorf("restore FAILED, nothing was written: %w", err)
	}
	for i, b := range res.Backups {
		kind := "full"
		if b.Manifest.Incremental() {
			kind = "incremental"
		}
		fmt.Fprintf(m.Stdout, "restored %s backup %s: events %d to %d, %d state rows; root %s matches its checkpoint signed %s\n",
			kind, pos[i], b.Manifest.From, b.Checkpoint.Size-1, b.StateRows, b.Checkpoint.Root, b.Checkpoint.Time.Format(time.RFC3339))
	}
	trust := "signatures checked with " + res.Key
	if vkey == "" {
		trust = "checked against the key the backups name (" + res.Key + "); pass --key to check who signed them"
	}
	fmt.Fprintf(m.Stdout, "OK: %d live records, a log of %d events, root %s; %s; into %s; took %s\n", res.Records, res.Size, res.Root,
		trust, config.RedactDatabaseURL(cfg.DatabaseURL), time.Since(start).Round(time.Millisecond))
	if opts.Published != nil {
		fmt.Fprintf(m.Stdout, "the restored log extends the published checkpoint of %d events\n", opts.Published.Size)
	}
	return nil
}

// readPublished reads the last signed checkpoint of a witness file (one or
// more checkpoints, appended), from a path or an http(s) URL, and checks it
// with vkey.
func readPublished(ctx context.Context, where, vkey string) (integrity.Checkpoint, error) {
	data, err := readWitness(ctx, where)
	path, _ := config.RedactDestinationURL(where) // a URL's query may hold a token
	if err != nil {
		return integrity.Checkpoint{}, fmt.Errorf("reading the published checkpoint %s: %w", path, err)
	}
	// A checkpoint starts with its origin line (the key's name) followed by
	// its size: the last such pair starts the last checkpoint.
	name, _, _ := strings.Cut(strings.TrimSpace(vkey), "+")
	lines := strings.Split(string(data), "\n")
	last := -1
	for i := 0; i+1 < len(lines); i++ {
		if _, err := strconv.ParseInt(lines[i+1], 10, 64); lines[i] == name && err == nil {
			last = i
		}
	}
	if last < 0 {
		return integrity.Checkpoint{}, fmt.Errorf("published checkpoint %s: no checkpoint of log %q in it", path, name)
	}
	text := append(bytes.TrimRight([]byte(strings.Join(lines[last:], "\n")), "\n\t "), '\n')
	cp, err := integrity.OpenCheckpoint(text, vkey)
	if err != nil {
		return cp, fmt.Errorf("published checkpoint %s: %w", path, err)
	}
	return cp, nil
}

// openAll opens backup files for reading, buffered; closeAll closes them.
func openAll(paths []string) (files []io.Reader, closeAll func(), err error) {
	var opened []*os.File
	closeAll = func() {
		for _, f := range opened {
			f.Close()
		}
	}
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			closeAll()
			return nil, nil, fmt.Errorf("opening backup: %w", err)
		}
		opened = append(opened, f)
		files = append(files, bufio.NewReaderSize(f, 1<<20))
	}
	return files, closeAll, nil
}
