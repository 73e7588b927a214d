//go:build !linux

// Command bench measures l4edge, which runs on Linux only, with Linux
// interfaces (/proc, Pdeathsig, RLIMIT_NOFILE). On any other system this file
// is the whole package, and the build stops here with one message naming the
// reason.
package main

func main() { bench_runs_on_linux_only_like_l4edge_itself() }
