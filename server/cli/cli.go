// Package cli is Palisade's command line: serve, check-config, user
// administration and the compliance archive. Exit status: 0 success, 1 runtime failure, 2 bad usage or
// configuration.
package cli

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"syscall"

	"github.com/palisade-im/palisade/modules/archive"
	"github.com/palisade-im/palisade/server"
	"github.com/palisade-im/palisade/server/config"
	"github.com/palisade-im/palisade/server/module"
	"github.com/palisade-im/palisade/server/password"
	"github.com/palisade-im/palisade/server/sasl"
	"github.com/palisade-im/palisade/storage"
	"github.com/palisade-im/palisade/storage/sqlite"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/term"
	"mellium.im/xmpp/jid"
)

// Version is the build's version, set with -ldflags "-X ...cli.Version=...".
var Version = "dev"

const usage = `usage: palisade [--config FILE] <command> [args]

commands:
  serve                    run the server (the default with no command)
  check-config FILE        validate a configuration file
  user add JID             create an account (password from stdin or a prompt)
  user passwd JID          set an account's password
  user del JID             delete an account and its data
  user list DOMAIN         list the accounts of a domain
  user unlock JID          clear an account's failed logins and lockout on the running server
  user kick JID            end the sessions of a bare JID (or one full JID) on the running server
  user group add JID GROUP put an internal account in a [groups] group
  user group remove JID GROUP
                           take it out again
  user group list [JID|GROUP]
                           every group with its members, one group's
                           members, or one account's groups
  archive verify [--verifier-key KEY|FILE]
                           recompute the journal's Merkle tree, check every
                           checkpoint's signature and consistency; exit 1
                           naming the first bad record
  archive pubkey [--openpgp]
                           print the checkpoint note verifier key (or the
                           OpenPGP public key that signs exports)
  archive export --out DIR [--from DAY] [--to DAY] [--user JID]...
                 [--with JID]... [--kind KIND]...
                           write a signed, provable bundle for regulators
                           (DIR ending in .tar: a tar file)
                 [--decrypt-key FILE] [--recipient KEYFILE]
                           (NAME.tar.gpg with --recipient: encrypted to it)
  archive verify-export [--verifier-key KEY|FILE] [--openpgp-key FILE]
                 [--trusted-checkpoint FILE] [--officer-key FILE]... BUNDLE
                           check a bundle's manifest, signature and proofs
  archive hold add --custodian JID... --reason TEXT [--name NAME]
                 [--from DAY] [--to DAY] [--by WHO]
  archive hold list [--all]
  archive hold release NAME --reason TEXT [--by WHO]
                           legal holds (they beat retention)
  archive purge [--dry-run [--as-of DAY]] [--by WHO]
                           remove content past retention and not held
  archive search [--user JID]... [--with JID]... [--from DAY] [--to DAY]
                 [--kind KIND]... [--text TEXT] [--decrypt-key FILE]
                           an officer's search (journaled)
  federation status [--json]
                           the running server's server-to-server streams:
                           peer, partner, direction, authentication,
                           certificate expiry (over the admin listener)
  version                  print the version

Without --config, the embedded default serves localhost with data in ./data.
`

// env is what a command may touch, so tests can run commands in-process.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	configPath     string
}

// exitError carries an exit status.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }

func usageErr(format string, args ...any) error {
	return &exitError{code: 2, err: fmt.Errorf(format, args...)}
}

// Main runs the command line and returns the exit status.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	e := &env{stdin: stdin, stdout: stdout, stderr: stderr}
	fs := flag.NewFlagSet("palisade", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	fs.StringVar(&e.configPath, "config", "", "configuration file (TOML)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	rest := fs.Args()
	cmd := "serve"
	if len(rest) > 0 {
		cmd, rest = rest[0], rest[1:]
	}
	// Allow --config after the subcommand too: "palisade user add --config f JID".
	rest, err := e.takeConfigFlag(rest)
	if err == nil {
		err = e.run(cmd, rest)
	}
	if err != nil {
		fmt.Fprintln(stderr, "palisade:", err)
		var ee *exitError
		if errors.As(err, &ee) {
			return ee.code
		}
		return 1
	}
	return 0
}

func (e *env) takeConfigFlag(args []string) ([]string, error) {
	var out []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--config" || a == "-config":
			if i+1 >= len(args) {
				return nil, usageErr("--config needs a file")
			}
			e.configPath = args[i+1]
			i++
		case strings.HasPrefix(a, "--config="):
			e.configPath = strings.TrimPrefix(a, "--config=")
		default:
			out = append(out, a)
		}
	}
	return out, nil
}

func (e *env) run(cmd string, args []string) error {
	switch cmd {
	case "serve":
		if len(args) > 0 {
			return usageErr("serve takes no arguments")
		}
		return e.serve()
	case "check-config":
		if len(args) != 1 {
			return usageErr("usage: palisade check-config FILE")
		}
		cfg, err := config.Load(args[0], module.ConfigRegistry{})
		if err != nil {
			return &exitError{code: 2, err: err}
		}
		bind, err := archive.CheckLockBinding(context.Background(), cfg)
		if err != nil {
			return &exitError{code: 2, err: fmt.Errorf("%s: %w", args[0], err)}
		}
		note, err := checkLocks(cfg)
		if err != nil {
			return &exitError{code: 2, err: fmt.Errorf("%s: %w", args[0], err)}
		}
		fmt.Fprintf(e.stdout, "%s: OK\n%s%s%s%s", args[0], cfg.Summary(), federationSummary(cfg), note, bind)
		// What weakens compliance: reported, not refused.
		for _, w := range server.Posture(cfg) {
			fmt.Fprintf(e.stdout, "warning: %s (%s)\n", w.Text, w.Code)
		}
		return nil
	case "user":
		return e.user(args)
	case "archive":
		return e.archive(args)
	case "federation":
		return e.federation(args)
	case "version":
		fmt.Fprintln(e.stdout, "palisade", Version)
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(e.stdout, usage)
		return nil
	}
	return usageErr("unknown command %q (see palisade help)", cmd)
}

func (e *env) loadConfig() (*config.Config, error) {
	if e.configPath == "" {
		return config.Default(), nil
	}
	cfg, err := config.Load(e.configPath, module.ConfigRegistry{})
	if err != nil {
		return nil, &exitError{code: 2, err: err}
	}
	return cfg, nil
}

// newLogger builds the zap logger the configuration asks for.
func newLogger(c config.Log, w io.Writer) (*zap.Logger, error) {
	level, err := zapcore.ParseLevel(orDefault(c.Level, "info"))
	if err != nil {
		return nil, fmt.Errorf("log level: %w", err)
	}
	return zap.New(zapcore.NewCore(logEncoder(c), zapcore.AddSync(w), level)), nil
}

// logEncoder is the encoder of c's format.
func logEncoder(c config.Log) zapcore.Encoder {
	encCfg := zap.NewProductionEncoderConfig()
	encCfg.TimeKey = "time"
	encCfg.EncodeTime = zapcore.ISO8601TimeEncoder
	if c.Format == "console" {
		encCfg.EncodeLevel = zapcore.CapitalLevelEncoder
		return zapcore.NewConsoleEncoder(encCfg)
	}
	return zapcore.NewJSONEncoder(encCfg)
}

// newAuditedLogger is newLogger whose audit events (loggers "audit",
// "audit.*") also go to the [log] audit_file and audit_syslog sinks; the
// closer closes them. rotate false leaves the file's rotation to the
// running server (for short-lived commands).
func newAuditedLogger(c config.Log, w io.Writer, rotate bool) (*zap.Logger, io.Closer, error) {
	log, err := newLogger(c, w)
	if err != nil {
		return nil, nil, err
	}
	sinks, err := openAuditSinks(c, logEncoder(c), rotate)
	if err != nil {
		return nil, nil, err
	}
	if len(sinks.cores) == 0 {
		return log, sinks, nil
	}
	cores := []zapcore.Core{log.Core()}
	for _, sc := range sinks.cores {
		cores = append(cores, auditOnly{sc})
	}
	return zap.New(zapcore.NewTee(cores...)), sinks, nil
}

func orDefault(v, d string) string {
	if v == "" {
		return d
	}
	return v
}

func openStore(ctx context.Context, cfg *config.Config) (storage.Store, error) {
	path := filepath.Join(cfg.Server.DataDir, "palisade.db")
	st, err := sqlite.Open(ctx, path)
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", path, err)
	}
	return st, nil
}

func (e *env) serve() error {
	cfg, err := e.loadConfig()
	if err != nil {
		return err
	}
	level, err := zapcore.ParseLevel(orDefault(cfg.Log.Level, "info"))
	if err != nil {
		return fmt.Errorf("log level: %w", err)
	}
	// The core takes Info for the audit events; the limiter keeps the
	// ordinary lines at the configured level.
	rootLog := cfg.Log
	if level > zapcore.InfoLevel {
		rootLog.Level = "info"
	}
	log, sinks, err := newAuditedLogger(rootLog, e.stderr, true)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	defer func() { _ = sinks.Close() }()
	defer func() { _ = log.Sync() }()
	// Floods of identical lines and audit events are summarised (lograte.go).
	log, stopLimits := rateLimited(log, level)
	defer stopLimits()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := checkOfficerKeys(cfg); err != nil {
		return &exitError{code: 2, err: err}
	}
	// A journal holding locked policies or holds stays on (lockmarker.go).
	if _, err := archive.CheckLockBinding(ctx, cfg); err != nil {
		return &exitError{code: 2, err: err}
	}
	st, err := openStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	srv, err := server.New(cfg, st, log)
	var lockErr *archive.LockError
	var bindErr *archive.BindError
	if errors.As(err, &lockErr) || errors.As(err, &bindErr) {
		// A configuration problem: it weakens a locked retention policy.
		return &exitError{code: 2, err: err}
	}
	if err != nil {
		return err
	}
	src := cfg.Path
	if src == "" {
		src = "embedded default"
	}
	// SIGHUP reloads what can be: the partner list (reloadConfig).
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				reloadConfig(ctx, cfg, srv, log)
			}
		}
	}()
	log.Info("palisade starting", zap.String("version", Version), zap.String("config", src),
		zap.Strings("domains", cfg.Server.Domains), zap.String("data_dir", cfg.Server.DataDir),
		zap.String("add_user", "palisade user add alice@"+cfg.Server.Domains[0]+configHint(e.configPath)))
	err = srv.Run(ctx)
	log.Info("palisade stopped")
	return err
}

func configHint(path string) string {
	if path == "" {
		return ""
	}
	return " --config " + path
}

func (e *env) user(args []string) error {
	if len(args) == 0 {
		return usageErr("usage: palisade user add|passwd|del|list|kick|unlock|group ...")
	}
	sub, args := args[0], args[1:]
	if sub == "group" {
		return e.userGroup(args)
	}
	if len(args) != 1 {
		return usageErr("usage: palisade user %s %s", sub, map[bool]string{true: "DOMAIN", false: "JID"}[sub == "list"])
	}
	cfg, err := e.loadConfig()
	if err != nil {
		return err
	}
	ctx := context.Background()
	audit, err := e.auditLogger(cfg)
	if err != nil {
		return err
	}
	audit = audit.With(zap.String("actor", "cli"))

	switch sub {
	case "kick":
		return e.kick(ctx, cfg, args[0])
	case "unlock":
		return e.unlock(ctx, cfg, args[0])
	}
	if sub == "list" {
		domain := args[0]
		if !isServed(cfg, domain) {
			return usageErr("domain %q is not served (server.domains)", domain)
		}
		st, err := openStore(ctx, cfg)
		if err != nil {
			return err
		}
		defer st.Close()
		users, err := st.ListUsers(ctx, domain)
		if err != nil {
			return err
		}
		for _, u := range users {
			fmt.Fprintf(e.stdout, "%s@%s\n", u, domain)
		}
		return nil
	}

	j, err := jid.Parse(args[0])
	if err != nil || j.Localpart() == "" || j.Resourcepart() != "" {
		return usageErr("%q is not a bare JID like alice@%s", args[0], cfg.Server.Domains[0])
	}
	if !isServed(cfg, j.Domainpart()) {
		return usageErr("domain %q is not served (server.domains)", j.Domainpart())
	}
	switch sub {
	case "add", "passwd":
		pw, err := e.readPassword()
		if err != nil {
			return err
		}
		policy := password.Policy{MinLength: cfg.Auth.PasswordMinLength, RejectCommon: cfg.Auth.PasswordRejectCommon}
		if err := policy.Check(pw, j.Localpart(), j.Domainpart()); err != nil {
			return usageErr("password refused for %s: %v ([auth] password policy)", j, err)
		}
		creds, err := sasl.DeriveAll(pw, cfg.Auth.SCRAMIterations)
		if err != nil {
			return err
		}
		st, err := openStore(ctx, cfg)
		if err != nil {
			return err
		}
		defer st.Close()
		if sub == "add" {
			err = st.CreateUser(ctx, storage.User{Localpart: j.Localpart(), Domain: j.Domainpart(), SCRAM: creds})
			if errors.Is(err, storage.ErrExists) {
				return fmt.Errorf("user %s already exists", j)
			}
		} else {
			err = st.SetCredentials(ctx, j.Localpart(), j.Domainpart(), creds)
			if errors.Is(err, storage.ErrNotFound) {
				return fmt.Errorf("user %s does not exist", j)
			}
		}
		if err != nil {
			return err
		}
		act := archive.AdminAct{Act: "user_" + sub, Actor: cliActor(), Target: j.String()}
		if sub == "passwd" {
			// The sessions that logged in with the old password end.
			said, err := e.endAccountSessions(ctx, cfg, j, "passwd")
			if err != nil {
				return fmt.Errorf("%s: password changed, but its sessions may still run: %w", j, err)
			}
			act.Details = map[string]string{"sessions": said}
		}
		if err := recordAct(ctx, cfg, act); err != nil {
			return fmt.Errorf("%s: %s, but %w", j, map[string]string{"add": "created", "passwd": "password changed"}[sub], err)
		}
		audit.Info("user_"+sub, zap.String("jid", j.String()))
		fmt.Fprintf(e.stdout, "%s: %s\n", j, map[string]string{"add": "created", "passwd": "password changed"}[sub])
		return nil
	case "del":
		st, err := openStore(ctx, cfg)
		if err != nil {
			return err
		}
		defer st.Close()
		if err := st.DeleteUser(ctx, j.Localpart(), j.Domainpart()); err != nil {
			if errors.Is(err, storage.ErrNotFound) {
				return fmt.Errorf("user %s does not exist", j)
			}
			return err
		}
		said, err := e.endAccountSessions(ctx, cfg, j, "del")
		if err != nil {
			return fmt.Errorf("%s: deleted, but its sessions may still run: %w", j, err)
		}
		if err := recordAct(ctx, cfg, archive.AdminAct{Act: "user_del", Actor: cliActor(), Target: j.String(),
			Details: map[string]string{"sessions": said}}); err != nil {
			return fmt.Errorf("%s: deleted, but %w", j, err)
		}
		audit.Info("user_del", zap.String("jid", j.String()))
		fmt.Fprintf(e.stdout, "%s: deleted\n", j)
		return nil
	}
	return usageErr("unknown user command %q", sub)
}

func isServed(cfg *config.Config, domain string) bool {
	for _, d := range cfg.Server.Domains {
		if d == domain {
			return true
		}
	}
	return false
}

// readPassword reads the password from a terminal prompt (twice) or, when
// stdin is not a terminal, from its first line. Never from argv.
func (e *env) readPassword() (string, error) {
	if f, ok := e.stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprint(e.stderr, "Password: ")
		p1, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(e.stderr)
		if err != nil {
			return "", err
		}
		fmt.Fprint(e.stderr, "Again: ")
		p2, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(e.stderr)
		if err != nil {
			return "", err
		}
		if string(p1) != string(p2) {
			return "", usageErr("passwords do not match")
		}
		return string(p1), nil
	}
	line, err := bufio.NewReader(e.stdin).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read password: %w", err)
	}
	return strings.TrimRight(line, "\r\n"), nil
}

// federationReloader applies a reloaded [federation]:
// (*server.Server).ReloadFederation.
type federationReloader interface {
	ReloadFederation(ctx context.Context, f config.Federation) error
}

// reloadConfig is SIGHUP: it loads running's file again with the same
// registry. A file that does not parse or validate is logged (each error
// as file:line:col: key: message, as at start), audited
// (config_reload_failed) and changes nothing. Otherwise the new
// [federation] is applied; the other sections are not, and each that
// changed is named in a warning ("needs a restart"). The outcome is
// audited: config_reloaded with the file's SHA-256 and the partner names.
// It reports whether the federation was reloaded.
func reloadConfig(ctx context.Context, running *config.Config, srv federationReloader, log *zap.Logger) bool {
	audit := log.Named("audit").With(zap.Bool("audit", true), zap.String("actor", "sighup"))
	if running.Path == "" {
		log.Warn("SIGHUP: nothing to reload, the server runs the embedded default (start it with --config FILE)")
		audit.Warn("config_reload_failed", zap.String("config", "embedded default"), zap.Strings("errors", []string{"no configuration file"}))
		return false
	}
	next, err := config.Load(running.Path, module.ConfigRegistry{})
	if err != nil {
		lines := strings.Split(err.Error(), "\n")
		for _, l := range lines {
			log.Error("configuration error", zap.String("config", running.Path), zap.String("error", l))
		}
		log.Error("SIGHUP: configuration not reloaded, the server keeps running with the one it has", zap.String("config", running.Path), zap.Int("errors", len(lines)))
		audit.Warn("config_reload_failed", zap.String("config", running.Path), zap.Strings("errors", lines))
		return false
	}
	restart := changedSections(running, next)
	for _, sec := range restart {
		log.Warn("SIGHUP: ["+sec+"] changed and needs a restart: only [federation] is reloaded", zap.String("config", running.Path), zap.String("section", sec))
	}
	partners := make([]string, len(next.Federation.Partners))
	for i, p := range next.Federation.Partners {
		partners[i] = p.Name
	}
	if err := srv.ReloadFederation(ctx, next.Federation); err != nil {
		log.Error("SIGHUP: federation not reloaded", zap.String("config", running.Path), zap.Error(err))
		audit.Warn("config_reload_failed", zap.String("config", running.Path), zap.String("sha256", next.SHA256), zap.Strings("errors", []string{err.Error()}))
		return false
	}
	log.Info("SIGHUP: federation reloaded", zap.String("config", running.Path), zap.Strings("partners", partners))
	audit.Info("config_reloaded", zap.String("config", running.Path), zap.String("sha256", next.SHA256),
		zap.Strings("partners", partners), zap.Strings("restart_needed", restart))
	return true
}

// changedSections names the top-level sections other than [federation]
// whose settings differ between a and b ("modules.NAME" for a module
// section), in the order of Config's fields, then by module name.
func changedSections(a, b *config.Config) []string {
	var out []string
	av, bv := reflect.ValueOf(a).Elem(), reflect.ValueOf(b).Elem()
	t := av.Type()
	for i := 0; i < t.NumField(); i++ {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("toml"), ",")
		if name == "" || name == "-" || name == "federation" {
			continue
		}
		if !reflect.DeepEqual(av.Field(i).Interface(), bv.Field(i).Interface()) {
			out = append(out, name)
		}
	}
	names := make([]string, 0, len(a.Modules)+len(b.Modules))
	for n := range a.Modules {
		names = append(names, n)
	}
	for n := range b.Modules {
		if _, ok := a.Modules[n]; !ok {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	for _, n := range names {
		// The section's values, not its line: moving it is no change.
		sa, okA := a.Modules[n]
		sb, okB := b.Modules[n]
		if okA != okB || !reflect.DeepEqual(sa.Value, sb.Value) {
			out = append(out, "modules."+n)
		}
	}
	return out
}
