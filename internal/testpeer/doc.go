// Package testpeer is the test toolkit every package's tests share: the
// peers a test talks to and the checks it ends with.
//
//   - Servers on 127.0.0.1:0 (Serve, Echo, Lines, Sink) that stop when the
//     test ends, and their per-connection handlers for tests that wrap them.
//   - Addresses: FreeAddrs, FreePorts and Refusing (n at once, drawn
//     together so they are distinct), Blackhole (SYNs unanswered), TCPPair
//     (both ends of a real loopback connection), DialFrom (a chosen
//     loopback source).
//   - Self-signed certificates (Cert, CertFiles; package testcert makes
//     them without importing testing, for the bench).
//   - Leak checks: LeakCheck (goroutines and descriptors back to where they
//     were), OpenFDs, ProcFDs, ProcRSS.
//   - Configuration: Config parses YAML the way l4edge loads a file, so
//     every key a test leaves out has its real default; Pool and Listener
//     build one pool or listener the same way.
//   - ClientHello: the first flight of a crypto/tls client, as bytes.
//
// It is imported only from _test.go files and test helper packages.
package testpeer
