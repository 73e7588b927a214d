//go:build linux

package relayloop

import (
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// acceptBatch bounds the connections one loop accepts from one listener
// per turn, so a flood of connects cannot starve the flows of that loop;
// the registration is level-triggered, so the rest are reported again.
const acceptBatch = 16

// Acceptor accepts connections on a listening socket inside the event
// loops, as HAProxy's and nginx's threads do: the socket is registered in
// every loop (EPOLLEXCLUSIVE: a connection wakes one idle loop, not all),
// and the loop that is woken calls accept4 and hands each connection to
// accepted, in the loop's goroutine. Setup then costs no Go accept goroutine
// parked and woken by the netpoller and no thread handing the connection
// to a loop on another CPU.
type Acceptor struct {
	r        *Relay
	fd       int
	slot     int32
	accepted func(fd int, peer syscall.Sockaddr, home Home) error
	failed   func(error)

	mu     sync.Mutex // orders Pause, Resume and Close
	paused atomic.Bool
	closed atomic.Bool
}

// Accept returns an acceptor for the listening socket fd (nonblocking,
// owned by the caller, open until Close releases it), paused: Resume
// registers it in every loop. accepted runs in a loop's goroutine for each
// connection, with a nonblocking, close-on-exec descriptor it owns and the
// loop's Home (a flow given it is relayed in that loop); like a
// Connector's methods it must not block. An error from it, or an accept4
// error other than a connection that went away, pauses the acceptor:
// failed then runs in a goroutine of its own with the error, and nothing
// is accepted until Resume (the caller backs off first, as after EMFILE).
func (r *Relay) Accept(fd int, accepted func(fd int, peer syscall.Sockaddr, home Home) error, failed func(error)) *Acceptor {
	a := &Acceptor{r: r, fd: fd, accepted: accepted, failed: failed}
	a.paused.Store(true)
	r.amu.Lock()
	a.slot = int32(len(r.acceptors))
	for i, b := range r.acceptors {
		if b == nil {
			a.slot = int32(i)
			break
		}
	}
	if int(a.slot) == len(r.acceptors) {
		r.acceptors = append(r.acceptors, nil)
	}
	r.acceptors[a.slot] = a
	r.amu.Unlock()
	for _, l := range r.loops {
		l.mu.Lock()
		for len(l.acceptors) <= int(a.slot) {
			l.acceptors = append(l.acceptors, nil)
		}
		l.acceptors[a.slot] = a
		l.mu.Unlock()
	}
	return a
}

// register adds the socket to every loop's epoll instance.
func (a *Acceptor) register() error {
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLEXCLUSIVE, Fd: wakeID, Pad: a.slot + 1}
	for i, l := range a.r.loops {
		if err := l.epollCtl(unix.EPOLL_CTL_ADD, a.fd, &ev); err != nil {
			a.deregister(i)
			return fmt.Errorf("relay: epoll_ctl add listener: %w", err)
		}
	}
	return nil
}

// deregister removes the socket from the first n loops' epoll instances.
func (a *Acceptor) deregister(n int) {
	for _, l := range a.r.loops[:n] {
		_ = l.epollCtl(unix.EPOLL_CTL_DEL, a.fd, nil)
	}
}

// pause stops accepting after err and tells failed; once only until Resume.
func (a *Acceptor) pause(err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed.Load() || !a.paused.CompareAndSwap(false, true) {
		return
	}
	a.deregister(len(a.r.loops))
	go a.failed(err)
}

// Resume starts a new acceptor, or accepts again after a pause; it does
// nothing on a closed or running acceptor. On an error the acceptor stays
// paused (and may have been registered for a moment: Close it to release
// the socket).
func (a *Acceptor) Resume() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed.Load() || !a.paused.Load() {
		return nil
	}
	if err := a.register(); err != nil {
		return err
	}
	a.paused.Store(false)
	return nil
}

// Close stops accepting: the loops call accept4 at most for a connection
// being accepted right now. released then runs, in a goroutine of its
// own, once no loop can touch the socket any more; the caller closes it
// there. Close does not wait for the loops, so it may be called while
// holding a lock that accepted takes.
func (a *Acceptor) Close(released func()) {
	a.mu.Lock()
	if a.closed.Swap(true) {
		a.mu.Unlock()
		return
	}
	if !a.paused.Load() {
		a.deregister(len(a.r.loops))
	}
	a.mu.Unlock()
	go a.release(released)
}

// release waits until every loop has ended the turn it was in (an event
// fetched before the deregistration may still be in its batch), frees the
// acceptor's slot and calls released.
func (a *Acceptor) release(released func()) {
	for _, l := range a.r.loops {
		l.passTurn()
		l.mu.Lock()
		l.acceptors[a.slot] = nil
		l.mu.Unlock()
	}
	a.r.amu.Lock()
	a.r.acceptors[a.slot] = nil
	a.r.amu.Unlock()
	released()
}

// acceptorFor returns the live acceptor an event names, or nil. Called
// under mu.
func (l *loop) acceptorFor(ev *unix.EpollEvent) *Acceptor {
	slot := int(ev.Pad) - 1
	if slot < 0 || slot >= len(l.acceptors) {
		return nil
	}
	return l.acceptors[slot]
}

// acceptReady accepts up to acceptBatch connections from each listener
// that was reported readable.
func (l *loop) acceptReady(ready []*Acceptor) {
	for _, a := range ready {
		for range acceptBatch {
			if a.closed.Load() || a.paused.Load() {
				break
			}
			fd, peer, err := Accept4(a.fd)
			if err == unix.EAGAIN {
				break
			}
			if err != nil {
				a.pause(fmt.Errorf("accept4: %w", err))
				break
			}
			l.spawned = true // accepted may start goroutines
			if err := a.accepted(fd, peer, Home{l}); err != nil {
				a.pause(err)
				break
			}
		}
	}
	clear(ready) // keep no closed acceptor alive
}

// Home is the event loop a connection was accepted in. A flow given it
// (Flow.SetHome) before it starts is relayed in that loop, where its
// sockets were made: its setup then stays on one thread. The zero Home
// lets Start pick a loop in turn.
type Home struct{ l *loop }

// SetHome makes a new flow start in home's loop, unless that loop already
// holds more flows than another (see Relay.pick).
func (f *Flow) SetHome(home Home) { f.loop = home.l }

// InLoop reports whether home names a loop: the connection was accepted in
// one, and its accept step runs there.
func (home Home) InLoop() bool { return home.l != nil }

// Accept4 accepts one connection from the nonblocking listening socket
// lfd: a nonblocking, close-on-exec descriptor and the peer's address. It
// skips connections that went away before they were accepted (and
// interrupted calls), as Go's own accept does, and returns EAGAIN when
// none is waiting.
//
// It calls syscall.Accept4, not unix.Accept4: x/sys/unix asks every
// accepted IPv4 or IPv6 socket for SO_PROTOCOL (to tell L2TP sockets
// apart), a system call per connection for nothing here.
func Accept4(lfd int) (int, syscall.Sockaddr, error) {
	for {
		fd, peer, err := syscall.Accept4(lfd, syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC)
		if err == syscall.EINTR || err == syscall.ECONNABORTED {
			continue
		}
		return fd, peer, err
	}
}

// passTurn returns once the loop has ended the turn it is in (or has
// stopped).
func (l *loop) passTurn() {
	ch := make(chan struct{})
	l.mu.Lock()
	l.turnWaiters = append(l.turnWaiters, ch)
	l.mu.Unlock()
	l.requestWake()
	select {
	case <-ch:
	case <-l.stopped:
	}
}

// endTurn tells the goroutines waiting in passTurn that the turn is over.
func (l *loop) endTurn(b *batch) {
	for _, ch := range b.turnWaiters {
		close(ch)
	}
	clear(b.turnWaiters)
	b.turnWaiters = b.turnWaiters[:0]
}
