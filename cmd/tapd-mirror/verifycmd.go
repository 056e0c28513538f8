package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/tapd-mirror/tapd-mirror/config"
	"github.com/tapd-mirror/tapd-mirror/integrity"
)

func (m *Main) integrityCmd(_ context.Context, args []string) error {
	if err := m.wantSubcommand(args, "integrity", "pubkey", "[--key-file FILE] [--name NAME]"); err != nil {
		return err
	}
	var c common
	fs := m.flags("integrity pubkey", "Print the verifier (public) key of the archive's checkpoint signing key, which\n"+
		"auditors pass to 'tapd-mirror verify --key'. Creates the signing key (mode 0600)\nif the key file does not exist.", &c)
	keyFile := fs.String("key-file", "", "signing key `file` (default integrity.key_file, $TAPD_MIRROR_INTEGRITY_KEY_FILE, else "+config.DefaultKeyFile+" beside the SQLite file)")
	name := fs.String("name", "", "the log's `name` (no spaces or '+'), used only when creating the key (default integrity.log_name)")
	if err := parse(fs, args[1:]); err != nil {
		return err
	}
	// Only the key's settings are needed: the rest of the config is not validated.
	cfg, err := config.Load(c.configPath, m.Getenv)
	if err != nil {
		return err
	}
	path := *keyFile
	if path == "" {
		path = cfg.IntegrityKeyFile()
	}
	if *name == "" {
		*name = cfg.Integrity.LogName
	}
	k, created, err := integrity.LoadOrCreateKey(path, *name)
	if err != nil {
		return err
	}
	if created {
		fmt.Fprintf(m.Stderr, "created signing key %s for log %q: keep it secret and back it up\n", path, k.Name())
	}
	fmt.Fprintln(m.Stdout, k.VerifierKey())
	return nil
}

func (m *Main) verify(ctx context.Context, args []string) error {
	var c common
	fs := m.flags("verify BUNDLE | verify BACKUP [INCREMENTAL…] | verify --database", "Verify an archive bundle offline: its checkpoint's signature, that its events are\n"+
		"exactly the signed log (a full bundle) or each belong to it (a filtered one); with\n"+
		"--checkpoint that the log extends a checkpoint kept from an earlier audit.\n"+
		"Backups (a full one, then its incrementals) are verified as restore would, offline.\n"+
		"Needs no config and no database. Exit code 1 names the first bad event.\n\n"+
		"With --database, verify the configured database instead (config from --config and\n"+
		"env as for serve): every live record against its latest event, every event against\n"+
		"its leaf hash, the stored tree and every signed checkpoint; each record changed,\n"+
		"added or removed behind the service's back is named. Exit code 1 on any problem.", &c)
	key := fs.String("key", "", "the log's verifier `key` (name+hash+keydata), or a file holding it (required for a bundle; with --database, default: the key file's)")
	earlierFile := fs.String("checkpoint", "", "an earlier signed checkpoint `file` the log must extend")
	database := fs.Bool("database", false, "verify the configured database against its integrity log instead of a bundle")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if *database {
		if len(pos) != 0 {
			return usageError{fmt.Errorf("verify --database takes no bundle, got %d arguments", len(pos))}
		}
		vkey := ""
		if *key != "" {
			if vkey, err = readVerifierKey(*key); err != nil {
				return usageError{err}
			}
		}
		return m.verifyDatabase(ctx, c, vkey)
	}
	backups := len(pos) > 0 && isBackupFile(pos[0])
	if len(pos) != 1 && !backups {
		fs.Usage()
		return usageError{fmt.Errorf("verify: want one bundle file (or a chain of backups), got %d arguments", len(pos))}
	}
	if *key == "" {
		return usageError{fmt.Errorf("verify: --key is required")}
	}
	vkey, err := readVerifierKey(*key)
	if err != nil {
		return usageError{err}
	}
	var earlier *integrity.Checkpoint
	if *earlierFile != "" {
		data, err := os.ReadFile(*earlierFile)
		if err != nil {
			return fmt.Errorf("reading the earlier checkpoint: %w", err)
		}
		// A copy kept by hand or from a witness file may end in blank lines.
		data = append(bytes.TrimRight(data, "\n\t "), '\n')
		c, err := integrity.OpenCheckpoint(data, vkey)
		if err != nil {
			return fmt.Errorf("earlier checkpoint %s: %w", *earlierFile, err)
		}
		earlier = &c
	}
	if backups {
		return m.verifyBackups(pos, vkey, earlier)
	}
	f, err := os.Open(pos[0])
	if err != nil {
		return fmt.Errorf("opening the bundle: %w", err)
	}
	defer f.Close()
	sum, err := integrity.Verify(f, vkey, earlier)
	if err != nil {
		if sum.Events > 0 {
			fmt.Fprintf(m.Stdout, "read %d events before the failure\n", sum.Events)
		}
		return fmt.Errorf("bundle %s FAILED verification: %w", pos[0], err)
	}
	m.printSummary(pos[0], vkey, sum)
	return nil
}

// parseInterleaved parses flags that may come after positional arguments
// (the flag package stops at the first one) and returns the positionals.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, errHelp
			}
			return nil, usageError{err}
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// readVerifierKey takes a key as text or from the file that holds it.
func readVerifierKey(s string) (string, error) {
	if _, err := note.NewVerifier(s); err == nil {
		return s, nil
	}
	data, err := os.ReadFile(s)
	if err != nil {
		return "", fmt.Errorf("--key %q is neither a verifier key (name+hash+keydata) nor a readable file", s)
	}
	k := strings.TrimSpace(string(data))
	if _, err := note.NewVerifier(k); err != nil {
		return "", fmt.Errorf("--key file %s does not hold a verifier key: %v", s, err)
	}
	return k, nil
}

func (m *Main) printSummary(file, vkey string, s integrity.Summary) {
	kind := "full"
	if s.Filtered {
		kind = "filtered"
	}
	w := m.Stdout
	fmt.Fprintf(w, "OK: %s bundle %s verified with key %s\n", kind, file, vkey)
	fmt.Fprintf(w, "log        %s: %d events, root %s, signed %s\n", s.Checkpoint.Origin, s.Checkpoint.Size,
		s.Checkpoint.Root, s.Checkpoint.Time.Format(time.RFC3339))
	fmt.Fprintf(w, "events     %d in the bundle: %d records, %d updates, %d deletions, %d purges, %d holds, %d releases, %d accesses",
		s.Events, s.Records, s.Updates, s.Deletions, s.Purges, s.Holds, s.Releases, s.Accesses)
	if s.Withheld > 0 {
		fmt.Fprintf(w, ", %d withheld (content purged)", s.Withheld)
	}
	fmt.Fprintln(w)
	if !s.First.IsZero() {
		fmt.Fprintf(w, "span       %s .. %s\n", s.First.Format(time.RFC3339), s.Last.Format(time.RFC3339))
	}
	if s.Filtered {
		fmt.Fprintf(w, "filter     %q: each event is authentic; the selection's completeness is not provable\n", s.Filter)
	} else {
		fmt.Fprintln(w, "complete   every event of the log up to the checkpoint is present and unaltered")
	}
	if s.Earlier != nil {
		fmt.Fprintf(w, "earlier    the checkpoint of %d events (signed %s) is a prefix of this log\n",
			s.Earlier.Size, s.Earlier.Time.Format(time.RFC3339))
	}
	if !s.Filtered {
		fmt.Fprintf(w, "keep this bundle's checkpoint for the next audit: tar -xOf %s checkpoint > checkpoint-%d.txt\n", file, s.Checkpoint.Size)
	}
}

func isBackupFile(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	return integrity.IsBackup(f)
}

// verifyBackups verifies a chain of backups offline, as restore would.
func (m *Main) verifyBackups(paths []string, vkey string, earlier *integrity.Checkpoint) error {
	files, closeAll, err := openAll(paths)
	if err != nil {
		return err
	}
	defer closeAll()
	sum, err := integrity.VerifyBackups(files, vkey, earlier)
	if err != nil {
		return fmt.Errorf("backups FAILED verification: %w", err)
	}
	fmt.Fprintf(m.Stdout, "OK: %d backups verified with key %s: %d events (%d withheld), %d state lines\n", sum.Backups, vkey,
		sum.Events, sum.Withheld, sum.StateLines)
	fmt.Fprintf(m.Stdout, "log        %s: %d events, root %s, signed %s\n", sum.Checkpoint.Origin, sum.Checkpoint.Size,
		sum.Checkpoint.Root, sum.Checkpoint.Time.Format(time.RFC3339))
	if earlier != nil {
		fmt.Fprintf(m.Stdout, "earlier    the checkpoint of %d events is a prefix of this log\n", earlier.Size)
	}
	return nil
}
