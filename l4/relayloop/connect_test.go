//go:build linux

package relayloop

import (
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/l4edge/l4edge/internal/testpeer"

	"github.com/l4edge/l4edge/l4/closereason"
)

// scriptedConnector answers the loop's connect hooks from a script.
type scriptedConnector struct {
	retries   []func() (int, error) // ConnectFailed's answers, in turn
	causes    chan error
	header    string // written by Connected
	connected chan struct{}
	done      chan Result
}

func newScripted(retries ...func() (int, error)) *scriptedConnector {
	return &scriptedConnector{retries: retries, causes: make(chan error, 8),
		connected: make(chan struct{}, 1), done: make(chan Result, 1)}
}

func (s *scriptedConnector) FlowEnded(r Result) { s.done <- r }

func (s *scriptedConnector) Connected(_, backendFD int) (time.Duration, error) {
	s.connected <- struct{}{}
	if s.header != "" {
		if _, err := unix.Write(backendFD, []byte(s.header)); err != nil {
			return 0, err
		}
	}
	return 0, nil
}

func (s *scriptedConnector) ConnectFailed(cause error) (int, error) {
	s.causes <- cause
	if len(s.retries) == 0 {
		return -1, errors.New("no attempt left")
	}
	next := s.retries[0]
	s.retries = s.retries[1:]
	return next()
}

// startConnect begins a nonblocking connect to addr.
func startConnect(t testing.TB, addr string) int {
	t.Helper()
	ta, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	sa := &unix.SockaddrInet4{Port: ta.Port}
	copy(sa.Addr[:], ta.IP.To4())
	if err := unix.Connect(fd, sa); err != nil && err != unix.EINPROGRESS {
		unix.Close(fd)
		t.Fatal(err)
	}
	return fd
}

// clientFD returns the proxy's end of a new client connection as a raw
// descriptor, and the client's end.
func clientFD(t testing.TB, ln *net.TCPListener) (int, *net.TCPConn) {
	t.Helper()
	near, far := tcpPair(t, ln)
	fd, err := detach(near)
	if err != nil {
		t.Fatal(err)
	}
	near.Close()
	t.Cleanup(func() { far.Close() })
	return fd, far
}

// A refused connect is handed to ConnectFailed; the next attempt connects,
// Connected's header reaches the backend before the client's bytes (sent
// while the loop was still connecting), and the flow relays both ways.
func TestConnectingRetriesThenRelays(t *testing.T) {
	r := newRelay(t)
	front, back := listen(t), listen(t)
	refusedAddr := testpeer.Refusing(t, 1)[0]
	cfd, client := clientFD(t, front)
	if _, err := client.Write([]byte("early ")); err != nil {
		t.Fatal(err)
	}
	sc := newScripted(func() (int, error) { return startConnect(t, back.Addr().String()), nil })
	sc.header = "HDR "
	if err := r.StartConnecting(&Flow{}, cfd, startConnect(t, refusedAddr), 5*time.Second, sc); err != nil {
		t.Fatal(err)
	}
	backend, err := back.AcceptTCP()
	if err != nil {
		t.Fatal(err)
	}
	defer backend.Close()
	if cause := <-sc.causes; !errors.Is(cause, unix.ECONNREFUSED) {
		t.Fatalf("cause %v, want connection refused", cause)
	}
	<-sc.connected
	_, _ = client.Write([]byte("late"))
	_ = client.CloseWrite()
	_ = backend.SetReadDeadline(time.Now().Add(3 * time.Second))
	got, err := io.ReadAll(backend)
	if err != nil || string(got) != "HDR early late" {
		t.Fatalf("backend read %q, %v", got, err)
	}
	_, _ = backend.Write([]byte("reply"))
	_ = backend.CloseWrite()
	_ = client.SetReadDeadline(time.Now().Add(3 * time.Second))
	if got, err := io.ReadAll(client); err != nil || string(got) != "reply" {
		t.Fatalf("client read %q, %v", got, err)
	}
	res := <-sc.done
	if res.ToBackend != int64(len("early late")) || res.ToClient != 5 || res.Err != nil {
		t.Fatalf("result %+v", res)
	}
}

// A backend that never answers is given up after the connect timeout; when
// ConnectFailed has no other attempt, the flow ends as ConnectFailed and
// the client's socket is closed.
func TestConnectTimeoutThenGiveUp(t *testing.T) {
	r := newRelay(t)
	hole := testpeer.Blackhole(t)
	cfd, client := clientFD(t, listen(t))
	sc := newScripted()
	start := time.Now()
	if err := r.StartConnecting(&Flow{}, cfd, startConnect(t, hole), 200*time.Millisecond, sc); err != nil {
		t.Fatal(err)
	}
	if cause := <-sc.causes; !strings.Contains(cause.Error(), "connect timeout") {
		t.Fatalf("cause %v", cause)
	}
	if el := time.Since(start); el < 200*time.Millisecond || el > 2*time.Second {
		t.Fatalf("gave up after %s, want about 200ms", el)
	}
	res := <-sc.done
	if res.Reason != closereason.DialFailed || res.Err == nil || res.Err.Error() != "no attempt left" {
		t.Fatalf("result %+v, want DialFailed with ConnectFailed's error", res)
	}
	_ = client.SetReadDeadline(time.Now().Add(3 * time.Second))
	if got, err := io.ReadAll(client); err != nil || len(got) != 0 {
		t.Fatalf("client read %q, %v; want EOF", got, err)
	}
	select {
	case <-sc.connected:
		t.Fatal("Connected ran for a connect that never completed")
	default:
	}
}

// A flow whose registration fails (its backend descriptor is its client's,
// which epoll already holds) never reaches the loop: the caller keeps the
// descriptor, and the flow's connect timer does not fire later, even once
// other flows with timers make the loops sweep.
func TestFailedRegistrationLeavesNothingBehind(t *testing.T) {
	r := newRelay(t)
	hole := testpeer.Blackhole(t)
	for range 2 { // first, one timed flow in each loop, so that both sweep
		near, _ := clientFD(t, listen(t))
		if err := r.StartConnecting(&Flow{}, near, startConnect(t, hole), 10*time.Second, newScripted()); err != nil {
			t.Fatal(err)
		}
	}
	cfd, client := clientFD(t, listen(t))
	sc := newScripted()
	if err := r.StartConnecting(&Flow{}, cfd, cfd, 100*time.Millisecond, sc); err == nil {
		t.Fatal("a descriptor registered twice was accepted")
	}
	time.Sleep(500 * time.Millisecond)
	select {
	case cause := <-sc.causes:
		t.Fatalf("a loop timed out the connect of a flow it never took: %v", cause)
	case res := <-sc.done:
		t.Fatalf("a loop ended a flow it never took: %+v", res)
	default:
	}
	if _, err := unix.FcntlInt(uintptr(cfd), unix.F_GETFD, 0); err != nil {
		t.Fatalf("the caller's descriptor was closed: %v", err)
	}
	unix.Close(cfd)
	_ = client.SetReadDeadline(time.Now().Add(3 * time.Second))
	if got, err := io.ReadAll(client); err != nil || len(got) != 0 {
		t.Fatalf("client read %q, %v; want EOF once the caller closed its descriptor", got, err)
	}
}
