// Package l4 is the connection pipeline: it accepts TCP connections,
// routes them by SNI and ALPN, terminates or passes TLS through, connects
// to a backend of the route's pool and relays the bytes, splicing in the
// kernel where it can.
//
// Every connection goes through the same stages, each in the file of its
// name:
//
//	accept ─► admit ─► route ─► terminate ─► connect ─► relay ─► end
//
//	accept     accept.go         the listener's goroutine, or the event loops
//	                             (accept_loop.go); newConn counts and tracks
//	admit      admit.go          max_connections, PROXY header in (admit_proxy.go),
//	                             max_connections_per_ip
//	route      route.go          read the ClientHello, answer ACME challenges,
//	                             pick the route (match.go)
//	terminate  terminate.go      the TLS handshake, when the route terminates
//	connect    connect.go        balancer.Attempts: retries, passive failures;
//	                             PROXY header out (connect_preamble.go)
//	relay      relay.go          conn.handOff gives the sockets to the event loop
//	                             (relayloop; terminated TLS too, opened and
//	                             sealed there) or, when it refuses, the TLS relay
//	end        end.go            passive health verdict, access record
//	                             (accesslog.go), metrics
//
// Two paths run these stages (paths.go):
//
//	full  Go's accept; every stage, in a goroutine of the connection's.
//	      For listeners that inspect, read a PROXY header or terminate.
//	      A terminated connection with IP-literal backends connects in
//	      the event loop, as the raw path does (connectTLSInLoop): the
//	      goroutine ends after the handshake.
//	raw   accept4 in the event loops (relayloop.Acceptor), for listeners
//	      that read nothing from clients: admit (limits only), the
//	      catch-all route, no TLS. With IP-literal backends the connect
//	      runs in the event loop too (connect_loop.go): a connection's
//	      setup runs in the loop that accepted it, and no goroutine waits
//	      anywhere; with host-name backends a goroutine dials and the loop
//	      takes the accepted descriptor (relayFD).
//
// A raw descriptor whose listener a reload changed meanwhile (to one that
// inspects, reads a PROXY header or terminates) takes the full path
// (serveReloaded). A stage ends a connection by returning an
// ending; the relay stage returns the zero ending once a relay owns the
// connection, and the relay's completion callback runs the end stage.
package l4
