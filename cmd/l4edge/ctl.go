//go:build linux

package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"

	"github.com/l4edge/l4edge/admin"
	"github.com/l4edge/l4edge/config"
)

// ctlCommand is one client subcommand: its positional arguments and what it does.
type ctlCommand struct {
	args string // usage of the positional arguments
	n    int    // how many
	run  func(c *ctlEnv) error
}

// ctlEnv is what a client subcommand runs with.
type ctlEnv struct {
	client *adminClient
	args   []string
	path   string
	cfg    *config.Config // loaded by reload, nil otherwise
	json   bool
	scope  string // drain and enable: local (default) or cluster
	colour bool
	stdout io.Writer
	stderr io.Writer
}

// ctlCommandFor returns the client subcommand called name.
func ctlCommandFor(name string) (ctlCommand, bool) {
	switch name {
	case "status":
		return ctlCommand{run: ctlStatus}, true
	case "certs":
		return ctlCommand{run: ctlCerts}, true
	case "drain", "enable":
		return ctlCommand{args: "POOL ADDRESS", n: 2, run: func(c *ctlEnv) error { return ctlDrain(c, name) }}, true
	case "reload":
		return ctlCommand{run: ctlReload}, true
	}
	return ctlCommand{}, false
}

// runCtl parses a client subcommand's flags (before its arguments) and runs it.
func runCtl(name string, args []string, stdout, stderr io.Writer) int {
	cmd, _ := ctlCommandFor(name)
	fs := flag.NewFlagSet("l4edge "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	adminAddr := fs.String("admin", "", "admin API address (default: admin.listen of -config)")
	path := fs.String("config", "l4edge.yaml", "configuration file")
	asJSON := fs.Bool("json", false, "print the admin API's JSON answer")
	scope := fs.String("scope", "", "drain and enable: local (this instance, the default) or cluster (every member sharing its Redis)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: l4edge %s [-admin ADDR] [-config FILE] [-json] %s\n", name, cmd.args)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() != cmd.n {
		fmt.Fprintf(stderr, "l4edge %s: want %d arguments (%s), got %d: %q (flags come before the arguments)\n",
			name, cmd.n, strings.TrimSpace(cmd.args+" "), fs.NArg(), fs.Args())
		fs.Usage()
		return exitUsage
	}
	env := &ctlEnv{args: fs.Args(), path: *path, json: *asJSON, scope: *scope, colour: isTerminal(stdout), stdout: stdout, stderr: stderr}
	if name == "reload" {
		// The file is checked here first: a file that does not validate is never sent for reloading.
		cfg, err := config.Load(*path)
		if err != nil {
			fmt.Fprintf(stderr, "%v\nl4edge reload: not reloaded; the running configuration keeps serving\n", err)
			return exitFatal
		}
		env.cfg = cfg
	}
	client, err := newAdminClient(*adminAddr, *path, env.cfg)
	if err != nil {
		fmt.Fprintf(stderr, "l4edge %s: %v\n", name, err)
		return exitFatal
	}
	env.client = client
	if err := cmd.run(env); err != nil {
		fmt.Fprintf(stderr, "l4edge %s: %v\n", name, err)
		return exitFatal
	}
	return exitOK
}

func ctlStatus(c *ctlEnv) error {
	var st admin.StatusDoc
	var raw []byte
	if err := c.client.do("GET", "/status", &st, &raw); err != nil {
		return err
	}
	if c.json {
		_, err := c.stdout.Write(raw)
		return err
	}
	lt := &table{head: []string{"LISTENER", "ADDRESS", "OPEN", "ACCEPTED", "REFUSED"}}
	rt := &table{head: []string{"LISTENER", "ROUTE", "POOL", "TLS", "SNI", "ALPN", "OPEN"}}
	for _, l := range st.Listeners {
		lt.add(plain(l.Name, l.Address, fmt.Sprint(l.Active), fmt.Sprint(l.Accepted), fmt.Sprint(l.Refused))...)
		for _, r := range l.Routes {
			rt.add(plain(l.Name, r.Name, r.Pool, r.TLS, orAny(r.SNI), orAny(r.ALPN), fmt.Sprint(r.Active))...)
		}
	}
	bt := &table{head: []string{"POOL", "BACKEND", "STATE", "ACTIVE", "TOTAL", "FAILURES", "TO BACKEND", "TO CLIENT", "LAST CHECK", "LAST ERROR"}}
	for _, p := range st.Pools {
		name := cell{text: p.Name}
		if p.Panic {
			name = cell{text: p.Name + " (panic)", colour: ansiRed}
		}
		for _, b := range p.Backends {
			bt.add(append([]cell{name, {text: b.Address}, {text: b.State, colour: stateColour(b.State)}},
				plain(fmt.Sprint(b.Active), fmt.Sprint(b.Total), fmt.Sprint(b.Failures), humanBytes(b.BytesToBackend),
					humanBytes(b.BytesToClient), since(b.LastCheck), orDash(b.LastError))...)...)
		}
	}
	lt.write(c.stdout, c.colour)
	fmt.Fprintln(c.stdout)
	rt.write(c.stdout, c.colour)
	fmt.Fprintln(c.stdout)
	bt.write(c.stdout, c.colour)
	return nil
}

func ctlCerts(c *ctlEnv) error {
	var st admin.StatusDoc
	if err := c.client.do("GET", "/status", &st, nil); err != nil {
		return err
	}
	if c.json {
		return writeIndented(c.stdout, st.Certificates)
	}
	if len(st.Certificates) == 0 {
		fmt.Fprintln(c.stdout, "no certificates served")
		return nil
	}
	t := &table{head: []string{"NAMES", "ISSUER", "NOT AFTER", "DAYS LEFT"}}
	for _, cert := range st.Certificates {
		days := int(time.Until(cert.NotAfter).Hours() / 24)
		left := cell{text: fmt.Sprint(days)}
		switch {
		case time.Now().After(cert.NotAfter):
			left = cell{text: "expired", colour: ansiRed}
		case days < 14:
			left.colour = ansiYellow
		}
		t.add(cell{text: strings.Join(cert.Names, ",")}, cell{text: cert.Issuer},
			cell{text: cert.NotAfter.UTC().Format("2006-01-02 15:04 UTC")}, left)
	}
	t.write(c.stdout, c.colour)
	return nil
}

func ctlDrain(c *ctlEnv, action string) error {
	pool, addr := c.args[0], c.args[1]
	var b admin.BackendStatus
	var raw []byte
	path := "/pools/" + url.PathEscape(pool) + "/backends/" + url.PathEscape(addr) + "/" + action
	if c.scope != "" {
		path += "?scope=" + url.QueryEscape(c.scope)
	}
	if err := c.client.do("POST", path, &b, &raw); err != nil {
		return err
	}
	if c.json {
		_, err := c.stdout.Write(raw)
		return err
	}
	state := b.State
	if c.colour {
		state = stateColour(b.State) + state + ansiReset
	}
	where := ""
	if c.scope == admin.ScopeCluster {
		where = ", cluster-wide"
	}
	fmt.Fprintf(c.stdout, "pool %s backend %s: %s (%d active connections%s)\n", pool, addr, state, b.Active, where)
	return nil
}

func ctlReload(c *ctlEnv) error {
	for _, w := range warnings(c.cfg) {
		fmt.Fprintf(c.stderr, "warning: %s\n", w)
	}
	var res struct {
		Result string `json:"result"`
	}
	var raw []byte
	if err := c.client.do("POST", "/reload", &res, &raw); err != nil {
		return fmt.Errorf("%w\nnot reloaded; the running configuration keeps serving", err)
	}
	if c.json {
		_, err := c.stdout.Write(raw)
		return err
	}
	fmt.Fprintf(c.stdout, "%s: ok (%d listeners, %d pools); l4edge at %s reloaded\n", c.path, len(c.cfg.Listeners), len(c.cfg.Pools), c.client.addr)
	return nil
}

func writeIndented(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

func orAny(v []string) string {
	if len(v) == 0 {
		return "*"
	}
	return strings.Join(v, ",")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// since is how long ago t was, in whole seconds ("-" for never).
func since(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return time.Since(*t).Round(time.Second).String() + " ago"
}
