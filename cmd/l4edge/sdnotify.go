//go:build linux

package main

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// notifier tells systemd about the service's state (sd_notify(3)): one
// datagram per message to the unix socket named by NOTIFY_SOCKET. Without
// NOTIFY_SOCKET it is nil and every method does nothing.
type notifier struct {
	conn *net.UnixConn
	log  *zap.Logger
	stop chan struct{}
}

// newNotifier connects to $NOTIFY_SOCKET ("@name" is an abstract socket).
func newNotifier(log *zap.Logger) *notifier {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return nil
	}
	if path[0] == '@' {
		path = "\x00" + path[1:]
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		log.Warn("cannot reach systemd's notification socket; readiness and watchdog are not reported",
			zap.String("notify_socket", os.Getenv("NOTIFY_SOCKET")), zap.Error(err))
		return nil
	}
	return &notifier{conn: conn, log: log, stop: make(chan struct{})}
}

// send writes one message ("READY=1", "STATUS=...").
func (n *notifier) send(lines ...string) {
	if n == nil {
		return
	}
	msg := strings.Join(lines, "\n")
	if _, err := n.conn.Write([]byte(msg)); err != nil {
		n.log.Warn("sd_notify failed", zap.String("message", msg), zap.Error(err))
	}
}

// ready reports that every listener is bound (after start or a reload).
func (n *notifier) ready(status string) { n.send("READY=1", "STATUS="+status) }

// reloading reports a reload starting, with the CLOCK_MONOTONIC time
// systemd (Type=notify-reload) matches it against.
func (n *notifier) reloading() {
	if n == nil {
		return
	}
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		n.log.Warn("clock_gettime(CLOCK_MONOTONIC)", zap.Error(err))
	}
	n.send("RELOADING=1", "MONOTONIC_USEC="+strconv.FormatInt(ts.Nano()/1000, 10), "STATUS=reloading")
}

// stopping reports that the service is draining for shutdown.
func (n *notifier) stopping() { n.send("STOPPING=1", "STATUS=draining") }

// watchdog sends WATCHDOG=1 at half the interval systemd asked for in
// WATCHDOG_USEC (WatchdogSec=), until close. WATCHDOG_PID, when set, must
// be this process.
func (n *notifier) watchdog() {
	if n == nil {
		return
	}
	usec, err := strconv.ParseInt(os.Getenv("WATCHDOG_USEC"), 10, 64)
	if err != nil || usec <= 0 {
		return
	}
	if pid := os.Getenv("WATCHDOG_PID"); pid != "" && pid != strconv.Itoa(os.Getpid()) {
		return
	}
	every := time.Duration(usec) * time.Microsecond / 2
	n.log.Info("systemd watchdog enabled", zap.Duration("ping_every", every))
	go func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-n.stop:
				return
			case <-t.C:
				n.send("WATCHDOG=1")
			}
		}
	}()
}

// close stops the watchdog and closes the socket.
func (n *notifier) close() {
	if n == nil {
		return
	}
	close(n.stop)
	_ = n.conn.Close()
}

// statusLine is the STATUS= text once serving.
func statusLine(listeners int) string { return fmt.Sprintf("serving %d listeners", listeners) }
