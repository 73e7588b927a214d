//go:build !linux

// Command l4edge runs on Linux only: its relay is built on epoll, splice(2)
// and TCP_INFO. On any other system this file is the whole package, and the
// build stops here with one message naming the reason.
package main

func main() { l4edge_runs_on_linux_only_it_needs_epoll_splice_and_tcp_info() }
