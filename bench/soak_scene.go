//go:build linux

package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"go.uber.org/zap"
)

// soakConf is l4edge's configuration in the soak. Held WebSockets go to
// held-term (TLS terminated by l4edge) and held-pass (TLS passed through to
// wsecho -cert); no backend of theirs is ever killed, so no held connection
// may be cut. Churn goes to the churn pool, whose second backend is killed
// and restarted. Each reload toggles the spare listener.
const soakConf = `log: {level: info, format: json, access: false}
shutdown_grace: 2s
admin: {listen: {{.Admin}}}
tls:
  storage: {file: {{.Dir}}/storage}
listeners:
  - name: term
    listen: {{.Term}}
    inspect_timeout: {{.Inspect}}
    routes:
      - name: ws-term
        match: {sni: [localhost]}
        pool: held-term
        tls: {mode: terminate, cert: files, cert_file: {{.Certs.Cert}}, key_file: {{.Certs.Key}}}
  - name: pass
    listen: {{.Pass}}
    inspect_timeout: {{.Inspect}}
    routes:
      - name: ws-pass
        match: {sni: [localhost]}
        pool: held-pass
  - name: churn
    listen: {{.Churn}}
    routes: [{name: all, pool: churn}]
{{- if .Spare}}
  - name: spare
    listen: {{.Spare}}
    routes: [{name: all, pool: churn}]
{{- end}}
pools:
  held-term:
    backends: [{address: {{index .Backends 0}}}, {address: {{index .Backends 1}}}]
    health: {check: websocket, path: /health, interval: 2s}
  held-pass:
    backends: [{address: {{index .Backends 2}}}, {address: {{index .Backends 3}}}]
    health: {check: tls, sni: localhost, ca_file: {{.Certs.Cert}}, interval: 2s}
  churn:
    backends: [{address: {{index .Backends 4}}}, {address: {{index .Backends 5}}}]
    connect_timeout: 1s
    health: {check: tcp, interval: 1s, timeout: 500ms, rise: 1, fall: 1}
`

// soakConfData fills soakConf.
type soakConfData struct {
	Admin, Term, Pass, Churn, Spare, Dir, Inspect string
	Backends                                      []string
	Certs                                         certFiles
}

// Indexes of the backends in soakConfData.Backends; killed is the one the
// fault loop kills.
const (
	soakBackends = 6
	killedIdx    = 5
)

// soakScene is the running soak: l4edge, its backends, and the addresses
// and clients the drivers use.
type soakScene struct {
	p          soakParams
	log        *zap.Logger
	dir        string
	bin        string
	commit     string
	wsecho     string
	certs      certFiles
	conf       soakConfData
	spare      string // the spare listener's address, on or off
	confPath   string
	l4edge     *proc
	logFile    *os.File // everything l4edge wrote
	backends   []*proc
	backArgs   [][]string
	admin      *http.Client
	clientTLS  *tls.Config
	metricsURL string
}

// newSoakScene builds l4edge and wsecho, starts six wsecho backends and
// l4edge in front of them, and waits until everything accepts.
func newSoakScene(ctx context.Context, log *zap.Logger, o options, p soakParams, dir string) (*soakScene, error) {
	sc := &soakScene{p: p, log: log, dir: dir, admin: &http.Client{Timeout: 3 * time.Second}}
	var err error
	if sc.certs, err = writeCert(dir); err != nil {
		return nil, err
	}
	sc.clientTLS = &tls.Config{RootCAs: sc.certs.Pool, ServerName: benchServerName} // default curves: post-quantum hellos
	if sc.bin, sc.commit, err = l4edgeBinary(ctx, log, o.l4edge, dir); err != nil {
		return nil, err
	}
	root, err := moduleRoot()
	if err != nil {
		return nil, err
	}
	sc.wsecho = filepath.Join(dir, "wsecho")
	if err := goBuild(ctx, root, "./cmd/wsecho", sc.wsecho); err != nil {
		return nil, err
	}
	addrs, err := reservePorts(soakBackends + 5)
	if err != nil {
		return nil, err
	}
	sc.conf = soakConfData{Admin: addrs[0], Term: addrs[1], Pass: addrs[2], Churn: addrs[3],
		Dir: dir, Inspect: p.inspect.String(), Backends: addrs[5:], Certs: sc.certs}
	sc.spare = addrs[4]
	sc.metricsURL = "http://" + sc.conf.Admin + "/metrics"
	for i, addr := range sc.conf.Backends {
		args := []string{"-listen", addr, "-name", fmt.Sprintf("b%d", i)}
		if i == 2 || i == 3 {
			args = append(args, "-cert", sc.certs.Cert, "-key", sc.certs.Key)
		}
		sc.backArgs = append(sc.backArgs, args)
		sc.backends = append(sc.backends, nil)
		if err := sc.startBackend(ctx, i); err != nil {
			sc.close(log)
			return nil, err
		}
	}
	sc.confPath = filepath.Join(dir, "l4edge.yaml")
	if err := writeConf(sc.confPath, soakConf, sc.conf); err != nil {
		sc.close(log)
		return nil, err
	}
	cmd := exec.Command(sc.bin, "run", "-config", sc.confPath)
	cmd.Dir = dir
	sc.l4edge = newProc("l4edge", cmd)
	logFile, err := os.Create(filepath.Join(dir, "l4edge.log"))
	if err != nil {
		sc.close(log)
		return nil, fmt.Errorf("create l4edge's log file: %w", err)
	}
	sc.logFile = logFile
	cmd.Stderr = io.MultiWriter(sc.l4edge.tail, logFile)
	cmd.Stdout = cmd.Stderr
	if err := sc.l4edge.start(); err != nil {
		sc.close(log)
		return nil, err
	}
	if err := waitAccepting(ctx, sc.l4edge, []string{sc.conf.Admin, sc.conf.Term, sc.conf.Pass, sc.conf.Churn}, 15*time.Second); err != nil {
		sc.close(log)
		return nil, err
	}
	return sc, nil
}

// startBackend starts wsecho number i on its fixed address and waits until
// it accepts.
func (sc *soakScene) startBackend(ctx context.Context, i int) error {
	p := newProc(fmt.Sprintf("wsecho-b%d", i), exec.Command(sc.wsecho, sc.backArgs[i]...))
	if err := p.start(); err != nil {
		return err
	}
	sc.backends[i] = p
	return waitAccepting(ctx, p, []string{sc.conf.Backends[i]}, 10*time.Second)
}

// killBackend SIGKILLs backend i (a process the soak started) and reaps it.
func (sc *soakScene) killBackend(i int) error {
	p := sc.backends[i]
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("SIGKILL %s (pid %d): %w", p.name, p.pid(), err)
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(5 * time.Second):
		return fmt.Errorf("%s (pid %d) still alive 5 s after SIGKILL", p.name, p.pid())
	}
}

// stopL4edge stops l4edge with SIGTERM; a slow stop, an unclean exit or a
// panic in its output is recorded as unexplained.
func (sc *soakScene) stopL4edge(l *soakLedger) {
	if err := sc.l4edge.exitErr(); err != nil {
		l.unexplained("l4edge", err)
		return
	}
	if err := sc.l4edge.stop(10 * time.Second); err != nil {
		l.unexplained("l4edge stop", err)
	} else if sc.l4edge.err != nil {
		l.unexplained("l4edge stop", fmt.Errorf("exit after SIGTERM: %v; output ends with:\n%s", sc.l4edge.err, sc.l4edge.tail.String()))
	}
}

// close stops whatever is still running, by PID.
func (sc *soakScene) close(log *zap.Logger) {
	if sc.l4edge != nil {
		if err := sc.l4edge.stop(5 * time.Second); err != nil {
			log.Warn("stop l4edge", zap.Error(err))
		}
	}
	for _, b := range sc.backends {
		if b != nil {
			_ = b.stop(3 * time.Second)
		}
	}
	if sc.logFile != nil {
		_ = sc.logFile.Close()
	}
}

// logSummary counts l4edge's log lines by level and message (its logs are
// JSON, one object a line); lines that are not JSON count as "raw".
func (sc *soakScene) logSummary() (map[string]int64, error) {
	b, err := os.ReadFile(sc.logFile.Name())
	if err != nil {
		return nil, fmt.Errorf("read l4edge's log: %w", err)
	}
	out := map[string]int64{}
	for _, line := range bytes.Split(b, []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var e struct {
			Level string `json:"level"`
			Msg   string `json:"msg"`
		}
		if json.Unmarshal(line, &e) != nil || e.Level == "" {
			out["raw (not JSON)"]++
			continue
		}
		out[e.Level+": "+e.Msg]++
	}
	return out, nil
}
