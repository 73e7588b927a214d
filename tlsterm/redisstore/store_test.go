package redisstore

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"slices"
	"testing"
	"time"

	"github.com/l4edge/l4edge/tlsterm/redisstore/redistest"
)

func newStore(t *testing.T, addr, prefix string) *Storage {
	t.Helper()
	s := New(Options{Address: addr, Prefix: prefix, Lease: 2 * time.Second})
	t.Cleanup(func() { _ = s.Close() })
	if err := s.Check(context.Background(), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	return s
}

// The certmagic.Storage contract, against a real redis-server.
func TestConformance(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	s := newStore(t, srv.Addr, "one")
	other := newStore(t, srv.Addr, "two")
	ctx := context.Background()
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB

	mustStore := func(key string, v []byte) {
		t.Helper()
		if err := s.Store(ctx, key, v); err != nil {
			t.Fatal(err)
		}
	}
	mustStore("certificates/ca/a.test/a.test.crt", []byte("crt-a"))
	mustStore("certificates/ca/a.test/a.test.key", []byte("key-a"))
	mustStore("certificates/ca/b.test/b.test.crt", []byte("crt-b"))
	mustStore("acme/ca/users/x.json", []byte("user"))
	mustStore("big", big)
	mustStore("over", []byte("first"))
	mustStore("over", []byte("second"))

	for _, tc := range []struct {
		name string
		run  func(t *testing.T)
	}{
		{"load", func(t *testing.T) {
			if v, err := s.Load(ctx, "certificates/ca/a.test/a.test.crt"); err != nil || string(v) != "crt-a" {
				t.Fatalf("%q %v", v, err)
			}
		}},
		{"load missing", func(t *testing.T) {
			if _, err := s.Load(ctx, "nope"); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("want fs.ErrNotExist, got %v", err)
			}
		}},
		{"overwrite", func(t *testing.T) {
			if v, _ := s.Load(ctx, "over"); string(v) != "second" {
				t.Fatalf("%q", v)
			}
		}},
		{"large value", func(t *testing.T) {
			v, err := s.Load(ctx, "big")
			if err != nil || !bytes.Equal(v, big) {
				t.Fatalf("%d bytes back of %d, %v", len(v), len(big), err)
			}
			info, err := s.Stat(ctx, "big")
			if err != nil || info.Size != int64(len(big)) || !info.IsTerminal {
				t.Fatalf("%+v %v", info, err)
			}
		}},
		{"exists", func(t *testing.T) {
			for key, want := range map[string]bool{"over": true, "certificates": true, "certificates/ca/a.test": true,
				"certificates/c": false, "nope": false, "certificates/ca/a.test/a.test.crt": true} {
				if got := s.Exists(ctx, key); got != want {
					t.Errorf("Exists(%q) = %v", key, got)
				}
			}
		}},
		{"stat", func(t *testing.T) {
			info, err := s.Stat(ctx, "over")
			if err != nil || !info.IsTerminal || info.Size != 6 || time.Since(info.Modified) > time.Minute {
				t.Fatalf("%+v %v", info, err)
			}
			dir, err := s.Stat(ctx, "certificates/ca")
			if err != nil || dir.IsTerminal || dir.Key != "certificates/ca" {
				t.Fatalf("directory: %+v %v", dir, err)
			}
			if _, err := s.Stat(ctx, "nope"); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("missing: %v", err)
			}
		}},
		{"list", func(t *testing.T) {
			got, err := s.List(ctx, "certificates/ca", false)
			if want := []string{"certificates/ca/a.test", "certificates/ca/b.test"}; err != nil || !slices.Equal(got, want) {
				t.Fatalf("%v %v", got, err)
			}
			got, err = s.List(ctx, "certificates", true)
			want := []string{"certificates/ca", "certificates/ca/a.test", "certificates/ca/a.test/a.test.crt",
				"certificates/ca/a.test/a.test.key", "certificates/ca/b.test", "certificates/ca/b.test/b.test.crt"}
			if err != nil || !slices.Equal(got, want) {
				t.Fatalf("recursive %v %v", got, err)
			}
			if _, err := s.List(ctx, "nope", true); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("missing directory: %v", err)
			}
		}},
		{"prefix isolation", func(t *testing.T) {
			if other.Exists(ctx, "over") || other.Exists(ctx, "certificates") {
				t.Fatal("cluster two sees cluster one's keys")
			}
			if err := other.Store(ctx, "over", []byte("theirs")); err != nil {
				t.Fatal(err)
			}
			if v, _ := s.Load(ctx, "over"); string(v) != "second" {
				t.Fatalf("cluster two overwrote cluster one: %q", v)
			}
			if got, _ := other.List(ctx, "", true); !slices.Equal(got, []string{"over"}) {
				t.Fatalf("cluster two lists %v", got)
			}
		}},
		{"delete", func(t *testing.T) {
			if err := s.Delete(ctx, "certificates/ca/a.test"); err != nil {
				t.Fatal(err)
			}
			if s.Exists(ctx, "certificates/ca/a.test/a.test.key") || s.Exists(ctx, "certificates/ca/a.test") {
				t.Fatal("deleted directory still there")
			}
			if !s.Exists(ctx, "certificates/ca/b.test/b.test.crt") {
				t.Fatal("delete took a sibling")
			}
			if err := s.Delete(ctx, "nope"); err != nil {
				t.Fatalf("deleting a missing key: %v", err)
			}
		}},
	} {
		t.Run(tc.name, tc.run)
	}
}

// A value written by hand that is not l4edge's layout is an error, not a
// crash.
func TestGarbageValue(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	s := newStore(t, srv.Addr, "g")
	if got := srv.Command("SET", "g:v:certificates/x.crt", "garbage"); got != "+OK" {
		t.Fatal(got)
	}
	ctx := context.Background()
	if _, err := s.Load(ctx, "certificates/x.crt"); !errors.Is(err, fs.ErrInvalid) || errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("want a WRONGTYPE error wrapping fs.ErrInvalid, got %v", err)
	}
	if up, _ := s.Health(); !up {
		t.Fatal("an error reply marked Redis down")
	}
	if err := s.Store(ctx, "certificates/x.crt", []byte("good")); err != nil {
		t.Fatalf("Store over a foreign value: %v", err)
	}
	if v, err := s.Load(ctx, "certificates/x.crt"); err != nil || string(v) != "good" {
		t.Fatalf("%q %v", v, err)
	}
}
