package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/coder/websocket"
)

// runClient connects to url, sends each input line as a text message and
// prints each reply; it returns the exit code.
func runClient(url string, insecure bool, in io.Reader, out, errOut io.Writer) int {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: insecure}}}
	c, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPClient: hc})
	cancel()
	if err != nil {
		fmt.Fprintf(errOut, "wsecho: dial %s: %v\n", url, err)
		return 1
	}
	defer c.CloseNow()
	fmt.Fprintf(errOut, "connected to %s (backend %s); type lines, Ctrl-D to end\n", url, resp.Header.Get("X-Backend-Name"))
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := c.Write(ctx, websocket.MessageText, sc.Bytes())
		var reply []byte
		if err == nil {
			_, reply, err = c.Read(ctx)
		}
		cancel()
		if err != nil {
			fmt.Fprintf(errOut, "wsecho: %v\n", err)
			return 1
		}
		fmt.Fprintf(out, "%s\n", reply)
	}
	_ = c.Close(websocket.StatusNormalClosure, "")
	return 0
}
