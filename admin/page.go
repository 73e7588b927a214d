package admin

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

// pageHTML is the status page: one file, its style and script inline, no
// request anywhere but this listener.
//
//go:embed ui/index.html
var pageHTML []byte

// eventEvery is how often the event stream sends the status document.
const eventEvery = time.Second

// page answers GET /: the live status page.
func (s *Server) page(w http.ResponseWriter, _ *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	// Nothing loads from elsewhere, and no other site may frame the page
	// (a framed page's drain buttons could be clicked for the operator).
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "+
		"connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	_, _ = w.Write(pageHTML)
}

// events answers GET /events with Server-Sent Events: a "status" event
// (the /status document) every eventEvery, and a "history" event (the
// charts' data, as /status/history) whenever a new sample was taken. The
// stream ends when the client goes or the server shuts down.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	// net/http clears the read deadline once the request is read, so the
	// server's ReadTimeout does not end a long stream; WriteTimeout would,
	// so each write gets a deadline of its own.
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	tick := time.NewTicker(eventEvery)
	defer tick.Stop()
	var sent time.Time // the newest sample sent
	for {
		_ = rc.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if err := writeEvent(w, "status", s.statusDoc()); err != nil {
			return
		}
		if at := s.history.newest(); at.After(sent) {
			sent = at
			if err := writeEvent(w, "history", s.history.doc()); err != nil {
				return
			}
		}
		if err := rc.Flush(); err != nil {
			return
		}
		select {
		case <-r.Context().Done():
			return
		case <-s.done:
			return
		case <-tick.C:
		}
	}
}

// writeEvent writes one event; compact JSON holds no newline.
func writeEvent(w http.ResponseWriter, name string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "event: %s\ndata: %s\n\n", name, b)
	return err
}
