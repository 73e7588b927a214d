//go:build linux

// Command l4edge is a layer-4 edge load balancer: it routes TCP and TLS
// connections by SNI and ALPN, passes TLS through or terminates it with
// certificates it obtains over ACME, and splices bytes to healthy backends.
//
//	l4edge run      [-config FILE]
//	l4edge validate [-config FILE]
//	l4edge status | certs | drain POOL ADDRESS | enable POOL ADDRESS | reload
//	                [-admin ADDR] [-config FILE] [-json]
//	l4edge version
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
)

// Exit codes, as the README's "Running it" documents them.
const (
	exitOK    = 0
	exitFatal = 1
	exitUsage = 2
)

// version and commit are set at build time with -ldflags "-X main.version=...".
var (
	version = ""
	commit  = ""
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage:
  l4edge run      [-config FILE]   serve (default FILE ./l4edge.yaml)
  l4edge validate [-config FILE]   check a file, print every problem, exit 1 if any
  l4edge version                   print version, commit and Go version

talk to a running l4edge over its admin API (flags before arguments):
  l4edge status [-json]                 listeners, routes, pools and backends
  l4edge certs  [-json]                 certificates: names, issuer, expiry
  l4edge drain  POOL ADDRESS            stop new connections to a backend
  l4edge enable POOL ADDRESS            undo drain
  l4edge reload [-config FILE]          validate FILE here, then reload the process
  common flags: -admin ADDR (default: admin.listen of -config FILE, ./l4edge.yaml)
`)
}

// run dispatches a subcommand and returns the exit code.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "version", "-version", "--version":
		printVersion(stdout)
		return exitOK
	case "help", "-h", "-help", "--help":
		usage(stdout)
		return exitOK
	case "run", "validate":
	default:
		if _, ok := ctlCommandFor(cmd); ok {
			return runCtl(cmd, rest, stdout, stderr)
		}
		fmt.Fprintf(stderr, "l4edge: unknown command %q\n", cmd)
		usage(stderr)
		return exitUsage
	}
	fs := flag.NewFlagSet("l4edge "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "l4edge.yaml", "configuration file")
	if err := fs.Parse(rest); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "l4edge %s: unexpected argument %q\n", cmd, fs.Arg(0))
		return exitUsage
	}
	if cmd == "validate" {
		return validate(*path, stdout, stderr)
	}
	return serve(*path, stderr)
}

func printVersion(w io.Writer) {
	v, c := buildVersion()
	fmt.Fprintf(w, "l4edge %s\ncommit %s\n%s %s/%s\n", v, c, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// buildVersion returns the version and commit this binary was built from.
func buildVersion() (v, c string) {
	v, c = version, commit
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v == "" {
			v = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && c == "" {
				c = s.Value
			}
		}
	}
	if v == "" {
		v = "(devel)"
	}
	if c == "" {
		c = "unknown"
	}
	return v, c
}
