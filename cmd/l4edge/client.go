//go:build linux

package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/l4edge/l4edge/config"
)

// adminClient talks to a running l4edge over its admin API.
type adminClient struct {
	addr string // as given or configured, for messages
	base string // http://host:port, an unspecified host replaced by loopback
	http *http.Client
}

// newAdminClient uses -admin when given, else the admin.listen of the file.
func newAdminClient(admin, path string, cfg *config.Config) (*adminClient, error) {
	addr := admin
	if addr == "" {
		if cfg == nil {
			var err error
			if cfg, err = config.Load(path); err != nil {
				return nil, fmt.Errorf("no -admin given and the admin address cannot be read from %s: %w\n"+
					"pass -admin ADDR (the admin.listen of the running l4edge) or -config FILE", path, err)
			}
		}
		addr = cfg.Admin.Listen
		if addr == "" {
			return nil, fmt.Errorf("%s has no admin.listen, so l4edge serves no admin API; set admin.listen "+
				"(for example 127.0.0.1:9901) and restart l4edge, or pass -admin ADDR", path)
		}
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("admin address %q: %v; want HOST:PORT such as 127.0.0.1:9901", addr, err)
	}
	// An admin API listening on every address is reached on loopback.
	if ip, err := netip.ParseAddr(host); err == nil && ip.IsUnspecified() {
		host = "127.0.0.1"
		if ip.Is6() {
			host = "::1"
		}
	}
	return &adminClient{addr: addr, base: "http://" + net.JoinHostPort(host, port),
		http: &http.Client{Timeout: 60 * time.Second}}, nil
}

// do sends a request and decodes a JSON answer into out (raw, if non-nil,
// receives the body as sent). An answer other than 2xx is an error naming
// the address and carrying the API's own message.
func (c *adminClient) do(method, path string, out any, raw *[]byte) error {
	req, err := http.NewRequest(method, c.base+path, nil)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return c.reachError(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("admin API at %s: reading the answer to %s %s: %w", c.addr, method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		return c.apiError(resp.StatusCode, method, path, body)
	}
	if raw != nil {
		*raw = body
	}
	if out != nil {
		if err := json.Unmarshal(body, out); err != nil {
			return fmt.Errorf("admin API at %s: the answer to %s %s is not the JSON expected (%v); is %s an l4edge admin address?",
				c.addr, method, path, err, c.addr)
		}
	}
	return nil
}

// apiErrorBody is the admin API's error answer.
type apiErrorBody struct {
	Error  string   `json:"error"`
	Errors []string `json:"errors"`
}

func (c *adminClient) apiError(code int, method, path string, body []byte) error {
	var e apiErrorBody
	msg := strings.TrimSpace(string(body))
	if json.Unmarshal(body, &e) == nil && (e.Error != "" || len(e.Errors) > 0) {
		msg = e.Error
		if len(e.Errors) > 0 {
			msg = strings.Join(e.Errors, "\n  ")
		}
	}
	return fmt.Errorf("admin API at %s answered %s %s with %d %s: %s", c.addr, method, path, code, http.StatusText(code), msg)
}

// reachError says what failed and what to check.
func (c *adminClient) reachError(err error) error {
	cause := err.Error()
	var errno syscall.Errno
	var ne net.Error
	switch {
	case errors.As(err, &errno):
		cause = errno.Error()
	case errors.As(err, &ne) && ne.Timeout():
		cause = fmt.Sprintf("no answer within %s", c.http.Timeout)
	}
	return fmt.Errorf("cannot reach admin API at %s: %s; is l4edge running with admin.listen set?", c.addr, cause)
}

// isTerminal reports whether w is a terminal that colour may be written to.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok || os.Getenv("NO_COLOR") != "" || os.Getenv("TERM") == "dumb" {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
