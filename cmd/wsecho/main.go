// Command wsecho is l4edge's demo and test backend: a WebSocket echo server
// on any path (a text "whoami" is answered with its name, and the 101
// carries X-Backend-Name), which echoes raw TCP when the first bytes are not
// HTTP. With -cert and -key it serves both inside TLS (a backend behind a
// passthrough route). With -dial it is a small interactive WebSocket client
// instead.
//
//	wsecho -listen 127.0.0.1:9001 -name backend-1
//	wsecho -listen 127.0.0.1:9443 -cert cert.pem -key key.pem
//	wsecho -dial wss://localhost:8443/ -insecure
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"go.uber.org/zap"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:9001", "address to serve on")
	hostname, _ := os.Hostname()
	name := flag.String("name", hostname, "name this backend reports")
	dial := flag.String("dial", "", "act as a client: ws:// or wss:// URL to connect to")
	insecure := flag.Bool("insecure", false, "with -dial: do not verify the server certificate")
	certFile := flag.String("cert", "", "serve TLS with this certificate (PEM); needs -key")
	keyFile := flag.String("key", "", "the private key (PEM) of -cert")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "wsecho: unexpected argument %q\n", flag.Arg(0))
		os.Exit(2)
	}
	if *dial != "" {
		os.Exit(runClient(*dial, *insecure, os.Stdin, os.Stdout, os.Stderr))
	}
	log, err := zap.NewProduction()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ln, err := listenOn(*listen, *certFile, *keyFile)
	if err != nil {
		log.Error("listen", zap.String("address", *listen), zap.Error(err))
		os.Exit(1)
	}
	log.Info("wsecho listening", zap.Stringer("address", ln.Addr()), zap.String("name", *name))
	s := newServer(*name, log)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sigs
		ln.Close()
	}()
	if err := s.serve(ln); err != nil && !errors.Is(err, net.ErrClosed) {
		log.Error("serve", zap.Error(err))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	s.shutdown(ctx)
}

// listenOn listens on addr, inside TLS with the certificate and key files
// when either is given.
func listenOn(addr, certFile, keyFile string) (net.Listener, error) {
	var cfg *tls.Config
	if certFile != "" || keyFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("load the TLS certificate %q and key %q (give both -cert and -key): %w", certFile, keyFile, err)
		}
		cfg = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	if cfg != nil {
		ln = tls.NewListener(ln, cfg)
	}
	return ln, nil
}
