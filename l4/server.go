package l4

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/l4edge/l4edge/balancer"
	"github.com/l4edge/l4edge/l4/closereason"
	"github.com/l4edge/l4edge/l4/relayloop"
	"github.com/l4edge/l4edge/l4/tlsrelay"
)

// Options configure a Server.
type Options struct {
	// Log receives the server's own logs.
	Log *zap.Logger
	// AccessLog receives one "connection" entry per finished connection
	// while the runtime's log.access is on; nil turns it off entirely.
	AccessLog *zap.Logger
	// OnDone, if set, is called with every finished connection's record
	// (metrics). It must not keep the record.
	OnDone func(*Record)
	// OnHandshake, if set, is told the duration of every successful
	// terminating TLS handshake (metrics).
	OnHandshake func(listener string, d time.Duration)
	// KeepAlive is the TCP keepalive period of client connections (default 30s).
	KeepAlive time.Duration
	// EventLoops is how many event loops relay plain TCP (default
	// GOMAXPROCS). Each holds one of Go's Ps while it waits for events.
	EventLoops int
}

// Server runs listeners against the current Runtime.
type Server struct {
	opts    Options
	log     *zap.Logger
	relayer *tlsrelay.Relayer
	loops   *relayloop.Relay // nil: every connection relays in its own goroutines
	ctx     context.Context  // cancelled at shutdown: aborts dials
	epoch   time.Time        // connections' start times are offsets from it
	cancel  context.CancelFunc

	current atomic.Pointer[Runtime]
	nextID  atomic.Uint64

	mu        sync.Mutex
	listeners map[string]*listener // by configured listen address
	conns     map[*conn]struct{}
	closing   bool
	handlers  sync.WaitGroup
	accepters sync.WaitGroup
}

// NewServer returns a server with no listeners; Apply gives it some.
func NewServer(opts Options) *Server {
	if opts.Log == nil {
		opts.Log = zap.NewNop()
	}
	if opts.KeepAlive == 0 {
		opts.KeepAlive = 30 * time.Second
	}
	if opts.EventLoops <= 0 {
		opts.EventLoops = runtime.GOMAXPROCS(0)
	}
	ctx, cancel := context.WithCancel(context.Background())
	loops, err := relayloop.New(opts.EventLoops)
	if err != nil {
		opts.Log.Warn("no event loops; relaying plain TCP in goroutines", zap.Error(err))
		loops = nil
	}
	return &Server{
		loops:     loops,
		opts:      opts,
		log:       opts.Log,
		relayer:   tlsrelay.New(),
		ctx:       ctx,
		epoch:     time.Now(),
		cancel:    cancel,
		listeners: map[string]*listener{},
		conns:     map[*conn]struct{}{},
	}
}

// Runtime returns the runtime new connections use.
func (s *Server) Runtime() *Runtime { return s.current.Load() }

// Apply makes rt current. Listeners whose address is unchanged keep their
// socket; new ones are bound first (if any bind fails, nothing changes and
// the error names the listener); removed ones stop accepting while their
// open connections finish.
func (s *Server) Apply(rt *Runtime) error {
	closed, err := s.apply(rt)
	// A listener's socket is released once no event loop can touch it
	// (accept_loop.go), which may need s.mu: wait for that here, so that
	// a removed listener no longer accepts once Apply returns.
	for _, l := range closed {
		l.waitReleased()
	}
	return err
}

// apply is Apply under s.mu; it returns the listeners it closed.
func (s *Server) apply(rt *Runtime) (closed []*listener, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return nil, errors.New("server is shutting down")
	}
	fresh := map[string]*listener{}
	for addr, lr := range rt.listeners {
		if _, ok := s.listeners[addr]; ok {
			continue
		}
		ln, err := s.bind(lr)
		if err != nil {
			for _, l := range fresh {
				l.close()
				closed = append(closed, l)
			}
			return closed, err
		}
		fresh[addr] = ln
	}
	s.current.Store(rt)
	for addr, l := range s.listeners {
		if lr, ok := rt.listeners[addr]; ok {
			l.rt.Store(lr)
			continue
		}
		l.close()
		closed = append(closed, l)
		delete(s.listeners, addr)
		s.log.Info("listener removed", zap.String("listener", l.rt.Load().cfg.Name), zap.String("address", addr))
	}
	for addr, l := range fresh {
		s.listeners[addr] = l
		s.accepters.Add(1)
		go l.serve()
		s.log.Info("listening", zap.String("listener", l.rt.Load().cfg.Name), zap.Stringer("address", l.bound))
	}
	return closed, nil
}

func (s *Server) bind(lr *listenerRuntime) (*listener, error) {
	// Keepalive is set once on the listening socket, which accepted
	// sockets inherit, instead of four setsockopt calls per connection.
	lc := net.ListenConfig{KeepAlive: -1, Control: listenControl(s.opts.KeepAlive)}
	// Go listens with MPTCP by default (since 1.24); l4edge only on request.
	lc.SetMultipathTCP(lr.cfg.Multipath)
	ln, err := lc.Listen(context.Background(), "tcp", lr.cfg.Listen)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("listeners[%d].listen: address %q already in use; stop the other process or pick another port", lr.index, lr.cfg.Listen)
		}
		return nil, fmt.Errorf("listeners[%d].listen: %w", lr.index, err)
	}
	tl := ln.(*net.TCPListener)
	l := &listener{srv: s, addr: lr.cfg.Listen, bound: tl.Addr(), fd: -1, perIP: newIPLimiter()}
	l.rt.Store(lr)
	if s.loops != nil && lr.rawAccept {
		err = l.acceptInLoops(tl)
	} else {
		err = l.acceptInGoroutine(tl)
	}
	if err != nil {
		return nil, fmt.Errorf("listeners[%d].listen: %w", lr.index, err)
	}
	return l, nil
}

// acceptInGoroutine makes a bound listener one its serve goroutine accepts
// from, through tl or (once raw) a duplicate that can wait for
// readability. It takes tl over.
func (l *listener) acceptInGoroutine(tl *net.TCPListener) error {
	f, err := tl.File()
	if err != nil {
		tl.Close()
		return fmt.Errorf("duplicate the listening socket: %w", err)
	}
	raw, err := f.SyscallConn()
	if err != nil {
		tl.Close()
		f.Close()
		return err
	}
	l.ln, l.file, l.raw = tl, f, raw
	return nil
}

// Addr returns the bound address of the listener with the given name, or
// nil. Tests use it to find ports bound as ":0".
func (s *Server) Addr(name string) net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.listeners {
		if l.rt.Load().cfg.Name == name {
			return l.bound
		}
	}
	return nil
}

// Listeners returns a snapshot of every listener's counters.
func (s *Server) Listeners() []ListenerStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]ListenerStats, 0, len(s.listeners))
	for _, l := range s.listeners {
		out = append(out, l.stats())
	}
	return out
}

// ActiveConnections returns the number of connections being handled.
func (s *Server) ActiveConnections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// track registers a connection for shutdown; it fails once shutdown began.
func (s *Server) track(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *Server) untrack(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// CloseBackend closes every open connection to one backend with the given
// reason (close_on_unhealthy). It returns how many it closed. A connection
// still connecting is left to its connect, which moves on to another
// backend if this one fails.
func (s *Server) CloseBackend(b *balancer.Backend, reason closereason.Reason) int {
	s.mu.Lock()
	var victims []*conn
	for c := range s.conns {
		if c.has(connRouted) && c.backendRef.Load() == b {
			victims = append(victims, c)
		}
	}
	s.mu.Unlock()
	for _, c := range victims {
		c.forceClose(reason)
	}
	return len(victims)
}

// StopAccepting closes every listener and returns once no connection can
// be accepted any more; open connections go on. Shutdown begins with it.
func (s *Server) StopAccepting() {
	s.mu.Lock()
	if !s.closing {
		s.closing = true
		for _, l := range s.listeners {
			l.close()
		}
	}
	s.mu.Unlock()
	s.accepters.Wait()
}

// Shutdown stops accepting at once, lets open connections finish until ctx
// is done, then closes what remains with close reason "shutdown". It returns
// when every handler has ended.
func (s *Server) Shutdown(ctx context.Context) error {
	s.StopAccepting()

	done := make(chan struct{})
	go func() { s.handlers.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		s.mu.Lock()
		victims := make([]*conn, 0, len(s.conns))
		for c := range s.conns {
			victims = append(victims, c)
		}
		s.mu.Unlock()
		n := len(victims)
		for _, c := range victims { // outside mu: a close may end the conn here
			c.forceClose(closereason.Shutdown)
		}
		s.cancel()
		err = fmt.Errorf("shutdown grace over: closed %d open connections", n)
		<-done
	}
	s.cancel()
	if s.loops != nil {
		s.loops.Close()
	}
	return err
}

// ConnInfo is a snapshot of one open connection for status and metrics.
type ConnInfo struct {
	// ID identifies the connection (as Record.ID).
	ID                             uint64
	Listener, Route, Pool, Backend string
	Start                          time.Time
	// ReceivedFromClient and ReceivedFromBackend are live byte counts of a
	// connection whose totals are final only when it ends: the event loop's
	// own counts, or for goroutine-relayed (TLS) connections the kernel's
	// TCP_INFO bytes_received of each socket, which include TLS overhead.
	ReceivedFromClient, ReceivedFromBackend uint64
}

// Connections returns a snapshot of every open connection that has a route.
func (s *Server) Connections() []ConnInfo {
	s.mu.Lock()
	list := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		list = append(list, c)
	}
	s.mu.Unlock()
	out := make([]ConnInfo, 0, len(list))
	for _, c := range list {
		if !c.has(connRouted) {
			continue
		}
		ci := ConnInfo{
			ID: c.id, Listener: c.lr.cfg.Name, Route: c.route.name, Pool: c.route.pool.Name,
			Backend: c.backendRef.Load().Address, Start: s.epoch.Add(c.start),
		}
		if c.has(connInLoop) {
			tb, tc := c.flow.Bytes()
			ci.ReceivedFromClient, ci.ReceivedFromBackend = uint64(tb), uint64(tc)
		} else {
			if cl := c.clientConn.Load(); cl != nil {
				ci.ReceivedFromClient = tlsrelay.TCPBytesReceived(cl)
			}
			if b := c.backendConn.Load(); b != nil {
				ci.ReceivedFromBackend = tlsrelay.TCPBytesReceived(b)
			}
		}
		out = append(out, ci)
	}
	return out
}
