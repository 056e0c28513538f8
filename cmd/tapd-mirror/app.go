package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"github.com/tapd-mirror/tapd-mirror/config"
	"github.com/tapd-mirror/tapd-mirror/storage"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

// errHelp means --help was asked for and printed; not a failure.
var errHelp = flag.ErrHelp

// usageError is a mistake on the command line (exit code 2).
type usageError struct{ error }

// exitError ends the program with a code of its own (sync's 3 and 4).
type exitError struct {
	code int
	error
}

// Main is the whole program, callable from tests: they run it in-process
// against a fake TAPD and a real database, exactly as main does.
type Main struct {
	Stdout, Stderr io.Writer
	Getenv         func(string) string
	// Listening, when set, is told the API's bound address once serving starts.
	Listening func(addr string)
	// Clock, when set, is the sync engine's and the backups' clock (the
	// drill runs on its fake TAPD's clock); nil: the real time.
	Clock func() time.Time
	// Wait, when set with Clock, is how doctor's TAPD client waits out
	// quota pauses (a test's clock jumps ahead); nil: it sleeps.
	Wait func(ctx context.Context, t time.Time) error

	// secrets of the loaded configuration: scrubbed from every log line and
	// from the error Run returns.
	secrets []string
}

type command struct {
	name, summary string
	run           func(m *Main, ctx context.Context, args []string) error
}

func commands() []command {
	return []command{
		{"serve", "serve the API and run the sync schedule (default)", (*Main).serve},
		{"sync", "sync the configured workspaces once and exit", (*Main).sync},
		{"doctor", "doctor [--json] [--record DIR]: check the TAPD account and workspaces before a first sync", (*Main).doctor},
		{"demo", "mirror a built-in fake TAPD into a temp SQLite file and serve it", (*Main).demo},
		{"config", "config check: validate settings and print them, secrets masked", (*Main).configCmd},
		{"migrate", "apply pending database migrations and exit", (*Main).migrate},
		{"maintenance", "maintenance rebuild-counts: recompute the daily and hourly counts from the table", (*Main).maintenance},
		{"export", "export --bundle FILE [filters]: write an archive bundle for auditors", (*Main).exportCmd},
		{"backup", "backup --out FILE [--incremental-from EARLIER]: write a self-verifying backup", (*Main).backupCmd},
		{"restore", "restore FULL [INCREMENTAL…]: replay backups into an empty database of either dialect", (*Main).restoreCmd},
		{"drill", "drill: a disaster drill against a fake TAPD: backfill, back up, lose the database, restore, sync", (*Main).drill},
		{"verify", "verify BUNDLE|BACKUP… --key KEY [--checkpoint EARLIER] (offline), or verify --database", (*Main).verify},
		{"report", "report --from DATE --to DATE [--workspace T] [--lang zh|en] --out FILE: write the signed completeness report", (*Main).reportCmd},
		{"verify-report", "verify-report FILE --key KEY: check a completeness report offline, naming the first field that does not match", (*Main).verifyReport},
		{"integrity", "integrity pubkey: print the checkpoint verifier key (creating the signing key)", (*Main).integrityCmd},
		{"version", "print the version", (*Main).printVersion},
	}
}

// now is the program's clock (Clock, or the real time).
func (m *Main) now() time.Time {
	if m.Clock != nil {
		return m.Clock()
	}
	return time.Now()
}

// Run parses args (the subcommand first) and runs it until ctx ends.
func (m *Main) Run(ctx context.Context, args []string) error {
	if m.Getenv == nil {
		m.Getenv = os.Getenv
	}
	if len(args) > 0 && isHelpFlag(args[0]) { // before any command: list the commands
		m.usage()
		return errHelp
	}
	name := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		name, args = args[0], args[1:]
	}
	if name == "help" {
		m.usage()
		return errHelp
	}
	for _, c := range commands() {
		if c.name == name {
			return m.scrub(c.run(m, ctx, args))
		}
	}
	m.usage()
	return usageError{fmt.Errorf("unknown command %q", name)}
}

// isHelpFlag is -h, -help or --help: before any command it asks for the
// list of commands, not serve's flags.
func isHelpFlag(a string) bool { return a == "-h" || a == "-help" || a == "--help" }

// wantSubcommand checks that a command group's args start with its one
// subcommand; otherwise it prints the usage, and --help is not an error.
func (m *Main) wantSubcommand(args []string, group, sub, flags string) error {
	if len(args) > 0 && args[0] == sub {
		return nil
	}
	fmt.Fprintf(m.Stderr, "usage: tapd-mirror %s %s %s\n", group, sub, flags)
	if len(args) > 0 && isHelpFlag(args[0]) {
		return errHelp
	}
	return usageError{fmt.Errorf("%s: want the subcommand %s", group, sub)}
}

func (m *Main) usage() {
	fmt.Fprintln(m.Stderr, "usage: tapd-mirror [command] [flags]\n\ncommands:")
	width := 0
	for _, c := range commands() {
		width = max(width, len(c.name))
	}
	for _, c := range commands() {
		fmt.Fprintf(m.Stderr, "  %-*s  %s\n", width, c.name, c.summary)
	}
	fmt.Fprintln(m.Stderr, "\nrun 'tapd-mirror COMMAND --help' for a command's flags; settings come from --config FILE and TAPD_MIRROR_* env vars (see README)")
}

// common are the flags every command that touches config shares.
type common struct {
	configPath string
	logFormat  string
	logLevel   string
}

func (m *Main) flags(name, synopsis string, c *common) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(m.Stderr)
	fs.Usage = func() {
		fmt.Fprintf(m.Stderr, "usage: tapd-mirror %s [flags]\n\n%s\n\nflags:\n", name, synopsis)
		fs.PrintDefaults()
	}
	if c != nil {
		fs.StringVar(&c.configPath, "config", "", "YAML config `file` (env vars TAPD_MIRROR_* override it)")
		fs.StringVar(&c.logFormat, "log-format", "auto", "log format: text, json, or auto (text on a terminal, json otherwise)")
		fs.StringVar(&c.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	}
	return fs
}

func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return errHelp
		}
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("%s: unexpected argument %q", fs.Name(), fs.Arg(0))}
	}
	return nil
}

// setup loads and validates config and builds the logger, which masks the
// configuration's secrets wherever they would appear.
func (m *Main) setup(c common) (config.Config, *slog.Logger, error) {
	cfg, err := config.Load(c.configPath, m.Getenv)
	m.secrets = cfg.Secrets()
	log, lerr := newLogger(m.Stderr, c.logFormat, c.logLevel, m.secrets)
	if lerr != nil {
		return config.Config{}, nil, usageError{lerr}
	}
	if err == nil {
		err = cfg.Validate()
	}
	if err != nil {
		return cfg, log, fmt.Errorf("invalid configuration:\n%w", err)
	}
	return cfg, log, nil
}

// scrub masks the configuration's secrets in err's text. The error chain
// stays reachable (errors.As) for exit codes; only the text is printed.
func (m *Main) scrub(err error) error {
	if err == nil {
		return nil
	}
	if text := config.Scrub(err.Error(), m.secrets...); text != err.Error() {
		return scrubbedError{err: err, text: text}
	}
	return err
}

type scrubbedError struct {
	err  error
	text string
}

func (e scrubbedError) Error() string { return e.text }
func (e scrubbedError) Unwrap() error { return e.err }

// newLogger builds the process logger; every message and attribute value
// (errors included) is scrubbed of secrets, whatever library produced it.
func newLogger(w io.Writer, format, level string, secrets []string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: use debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	opts.ReplaceAttr = func(_ []string, a slog.Attr) slog.Attr {
		switch a.Value.Kind() {
		case slog.KindDuration: // "1.5s", as the text format writes it, not nanoseconds
			a.Value = slog.StringValue(a.Value.Duration().String())
		case slog.KindString: // the message too
			a.Value = slog.StringValue(config.Scrub(a.Value.String(), secrets...))
		case slog.KindAny:
			if err, ok := a.Value.Any().(error); ok {
				a.Value = slog.StringValue(config.Scrub(err.Error(), secrets...))
			}
		}
		return a
	}
	if format == "auto" {
		format = "json"
		if f, ok := w.(*os.File); ok {
			if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
				format = "text"
			}
		}
	}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: use text, json or auto", format)
}

// openStore opens the database and applies pending migrations.
func openStore(ctx context.Context, cfg config.Config, log *slog.Logger) (*storage.Store, error) {
	st, err := storage.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		return nil, err
	}
	st.SetLogger(log)
	st.SetCountsZone(cfg.Location())
	applied, err := st.Migrate(ctx)
	if err != nil {
		st.Close()
		return nil, err
	}
	for _, v := range applied {
		log.Info("migration applied", "version", v)
	}
	start := time.Now()
	if rebuilt, err := st.EnsureCounts(ctx); err != nil {
		st.Close()
		return nil, err
	} else if rebuilt {
		log.Info("daily and hourly counts rebuilt (first start with counts, or timezone changed)", "timezone", cfg.Timezone,
			"took", time.Since(start).Round(time.Millisecond))
	}
	if st.Dialect() == config.SQLite {
		log.Info("embedded SQLite database; sync and serve may share the file, for replicas use PostgreSQL", "database", config.RedactDatabaseURL(cfg.DatabaseURL))
	}
	if cfg.DatabaseReadURL != "" {
		if err := st.UseReplica(ctx, cfg.DatabaseReadURL); err != nil {
			st.Close()
			return nil, err
		}
		log.Info("list, count and export read from a replica", "database_read_url", config.RedactDatabaseURL(cfg.DatabaseReadURL))
	}
	return st, nil
}

func (m *Main) migrate(ctx context.Context, args []string) error {
	var c common
	fs := m.flags("migrate", "Apply pending database migrations (database_url) and print what was applied.", &c)
	if err := parse(fs, args); err != nil {
		return err
	}
	cfg, log, err := m.setup(c)
	if err != nil {
		return err
	}
	st, err := storage.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer st.Close()
	applied, err := st.Migrate(ctx)
	for _, v := range applied {
		fmt.Fprintln(m.Stdout, "applied", v)
	}
	if err != nil {
		return err
	}
	if len(applied) == 0 {
		fmt.Fprintln(m.Stdout, "database is up to date")
	}
	log.Debug("migrate done", "database", config.RedactDatabaseURL(cfg.DatabaseURL))
	return nil
}

func (m *Main) printVersion(_ context.Context, args []string) error {
	fs := m.flags("version", "Print the version.", nil)
	if err := parse(fs, args); err != nil {
		return err
	}
	v := version
	if info, ok := debug.ReadBuildInfo(); ok && v == "dev" && info.Main.Version != "" && info.Main.Version != "(devel)" {
		v = info.Main.Version
	}
	fmt.Fprintln(m.Stdout, "tapd-mirror", v)
	return nil
}
