//go:build linux

package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"time"

	"go.uber.org/zap"
)

// backendAddrs are the six services of the backend process, or the six
// listeners of a proxy in front of them.
type backendAddrs struct {
	// Echo echoes every byte; Source writes zeros until the peer goes away
	// (download); Sink reads and discards until the peer goes away (upload).
	Echo   string `json:"echo"`
	Source string `json:"source"`
	Sink   string `json:"sink"`
	// TLSEcho, TLSSource and TLSSink are the same over TLS (the direct
	// reference for the TLS scenarios; proxies terminate TLS and use the
	// plain ones).
	TLSEcho   string `json:"tls_echo"`
	TLSSource string `json:"tls_source"`
	TLSSink   string `json:"tls_sink"`
	// WS is a WebSocket echo over plain HTTP; WSS the same over TLS (for
	// the backend, the direct reference). A proxy terminates TLS on WSS
	// and forwards to WS, and passes WSSPass through to the backend's WSS.
	WS      string `json:"ws"`
	WSS     string `json:"wss"`
	WSSPass string `json:"wss_pass"`
	// Iperf is an iperf3 server (see startIperfServer).
	Iperf string `json:"iperf"`
}

// all lists the addresses in a fixed order.
func (a backendAddrs) all() []string {
	return []string{a.Echo, a.Source, a.Sink, a.TLSEcho, a.TLSSource, a.TLSSink, a.WS, a.WSS, a.WSSPass, a.Iperf}
}

// backendMain is the `backend` subcommand: it serves until its standard
// input closes (the harness exited or stopped it). It runs in its own
// process so that its descriptors do not count against the clients'.
func backendMain(args []string, log *zap.Logger) int {
	fs := flag.NewFlagSet("bench backend", flag.ContinueOnError)
	certFile := fs.String("cert", "", "certificate PEM for the TLS services")
	keyFile := fs.String("key", "", "key PEM for the TLS services")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if err := raiseNoFile(); err != nil {
		log.Warn("cannot raise the descriptor limit", zap.Error(err))
	}
	cert, err := tls.LoadX509KeyPair(*certFile, *keyFile)
	if err != nil {
		log.Error("backend: load certificate", zap.String("cert", *certFile), zap.Error(err))
		return exitFatal
	}
	tlsCfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	var addrs backendAddrs
	services := []struct {
		dst     *string
		handler func(net.Conn)
	}{
		{&addrs.Echo, echoConn},
		{&addrs.Source, sourceConn},
		{&addrs.Sink, sinkConn},
		{&addrs.TLSEcho, tlsHandler(tlsCfg, echoConn)},
		{&addrs.TLSSource, tlsHandler(tlsCfg, sourceConn)},
		{&addrs.TLSSink, tlsHandler(tlsCfg, sinkConn)},
	}
	for _, s := range services {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			log.Error("backend: listen on 127.0.0.1:0", zap.Error(err))
			return exitFatal
		}
		defer ln.Close()
		*s.dst = ln.Addr().String()
		go acceptLoop(ln, s.handler, log)
	}
	ws, err := startWSServices(tlsCfg)
	if err != nil {
		log.Error("backend: WebSocket services", zap.Error(err))
		return exitFatal
	}
	defer ws.close()
	addrs.WS, addrs.WSS, addrs.WSSPass = ws.addr[0], ws.addr[1], ws.addr[1]
	iperf, stopIperf, err := startIperfServer()
	if err != nil {
		log.Error("backend: iperf3 server", zap.Error(err))
		return exitFatal
	}
	defer stopIperf()
	addrs.Iperf = iperf
	if err := json.NewEncoder(os.Stdout).Encode(addrs); err != nil {
		log.Error("backend: announce addresses", zap.Error(err))
		return exitFatal
	}
	// Commands on standard input, one a line, until it closes.
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		if in.Text() == restartWSCommand {
			if err := ws.restart(wsDowntime); err != nil {
				log.Error("backend: restart WebSocket services", zap.Error(err))
				return exitFatal
			}
		}
	}
	return exitOK
}

// acceptLoop serves ln until it is closed, backing off briefly when the
// process runs out of descriptors.
func acceptLoop(ln net.Listener, handler func(net.Conn), log *zap.Logger) {
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			log.Warn("backend: accept", zap.String("listener", ln.Addr().String()), zap.Error(err))
			time.Sleep(10 * time.Millisecond)
			continue
		}
		go handler(c)
	}
}

// tlsHandler completes a TLS handshake (10 s at most) before handing the
// connection on.
func tlsHandler(cfg *tls.Config, next func(net.Conn)) func(net.Conn) {
	return func(c net.Conn) {
		tc := tls.Server(c, cfg)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := tc.HandshakeContext(ctx)
		cancel()
		if err != nil {
			_ = c.Close()
			return
		}
		next(tc)
	}
}

// echoConn writes back everything it reads until the peer closes.
func echoConn(c net.Conn) {
	defer c.Close()
	buf := make([]byte, 4<<10)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// sourceConn writes zeros as fast as the peer takes them, until it goes away.
func sourceConn(c net.Conn) {
	defer c.Close()
	buf := make([]byte, 128<<10)
	for {
		if _, err := c.Write(buf); err != nil {
			return
		}
	}
}

// sinkConn reads and discards everything until the peer closes.
func sinkConn(c net.Conn) {
	defer c.Close()
	_, _ = io.Copy(io.Discard, c)
}

// backendProc is the running backend process.
type backendProc struct {
	p     *proc
	stdin io.WriteCloser
	addrs backendAddrs
}

// startBackend re-executes the harness binary as `backend` and waits (10 s
// at most) for it to announce its addresses.
func startBackend(self string, cf certFiles) (*backendProc, error) {
	cmd := exec.Command(self, "backend", "-cert", cf.Cert, "-key", cf.Key)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("backend stdout pipe: %w", err)
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("backend stdin pipe: %w", err)
	}
	p := newProc("backend", cmd)
	if err := p.start(); err != nil {
		return nil, err
	}
	b := &backendProc{p: p, stdin: stdin}
	line := make(chan error, 1)
	go func() {
		r := bufio.NewReader(stdout)
		l, err := r.ReadBytes('\n')
		if err == nil {
			err = json.Unmarshal(l, &b.addrs)
		}
		line <- err
		_, _ = io.Copy(p.tail, r)
	}()
	select {
	case err = <-line:
	case <-time.After(10 * time.Second):
		err = errors.New("no addresses announced within 10s")
	}
	if err != nil {
		_ = b.stop()
		return nil, fmt.Errorf("start backend: %v; its output: %s", err, p.tail.String())
	}
	return b, nil
}

// restartWS has the backend drop every WebSocket and stop listening for
// them for wsDowntime, as a restarted backend would.
func (b *backendProc) restartWS() error {
	_, err := io.WriteString(b.stdin, restartWSCommand+"\n")
	return err
}

// stop closes the backend's standard input and waits for it to exit.
func (b *backendProc) stop() error {
	_ = b.stdin.Close()
	select {
	case <-b.p.done:
		return nil
	case <-time.After(5 * time.Second):
		return b.p.stop(2 * time.Second)
	}
}
