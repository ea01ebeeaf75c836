package httpapi

import (
	"bufio"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/phext/sq/phext"
)

// sseEvent is one parsed Server-Sent Event.
type sseEvent struct {
	id, event string
	data      map[string]any
}

type sseStream struct {
	t    *testing.T
	resp *http.Response
	br   *bufio.Reader
}

func (e *restEnv) stream(tenant, query string, hdr ...string) *sseStream {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodGet, e.hs.URL+"/api/v2/watch?"+query, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+e.tokenOf(tenant))
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := e.hs.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		e.t.Fatalf("watch: %d %v", resp.StatusCode, resp.Header)
	}
	return &sseStream{t: e.t.(*testing.T), resp: resp, br: bufio.NewReader(resp.Body)}
}

// next reads the next event (skipping retry lines and comments).
func (s *sseStream) next() sseEvent {
	s.t.Helper()
	var ev sseEvent
	done := make(chan error, 1)
	go func() {
		for {
			line, err := s.br.ReadString('\n')
			if err != nil {
				done <- err
				return
			}
			line = strings.TrimSuffix(line, "\n")
			switch {
			case line == "":
				if ev.event != "" {
					done <- nil
					return
				}
			case strings.HasPrefix(line, "id: "):
				ev.id = line[4:]
			case strings.HasPrefix(line, "event: "):
				ev.event = line[7:]
			case strings.HasPrefix(line, "data: "):
				if err := json.Unmarshal([]byte(line[6:]), &ev.data); err != nil {
					done <- err
					return
				}
			}
		}
	}()
	select {
	case err := <-done:
		if err != nil {
			s.t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		s.t.Fatal("no event in 10 s")
	}
	return ev
}

// TestSSEWatchLastEventID: GET /api/v2/watch streams changes under the
// prefix as SSE with id = position and JSON data; a reconnect with
// Last-Event-ID gets exactly the changes missed; an unknown id gets one
// resync event; another tenant's stream sees nothing of it.
func TestSSEWatchLastEventID(t *testing.T) {
	e := startHTTPOnly(t, envOptions{}, Options{})
	write := func(coord, text string) {
		t.Helper()
		a := e.as("alpha", http.MethodGet, "/api/v2/insert?p=n&c="+url.QueryEscape(coord)+"&s="+url.QueryEscape(text), "")
		if a.code != http.StatusOK {
			t.Fatalf("insert: %d %s", a.code, a.body)
		}
	}
	s := e.stream("alpha", "p=n&c=1.1.1/1.1.1/1.1&text=1")
	head, _ := strconv.ParseUint(s.resp.Header.Get("X-Sq-Position"), 10, 64)
	beta := e.stream("beta", "p=n")
	write("1.1.1/1.1.1/1.1.1", "a")
	write("1.1.1/1.1.1/2.1.1", "outside")
	write("1.1.1/1.1.1/1.1.2", "b")
	last := head
	for i, want := range []struct{ coord, text string }{{"1.1.1/1.1.1/1.1.1", "a"}, {"1.1.1/1.1.1/1.1.2", "b"}} {
		ev := s.next()
		pos, err := strconv.ParseUint(ev.id, 10, 64)
		if err != nil || ev.event != "change" || pos <= last || ev.data["coord"] != want.coord || ev.data["text"] != want.text ||
			ev.data["op"] != "insert" || ev.data["phext"] != "n" || ev.data["len"] != float64(1) ||
			ev.data["checksum"] != phext.Checksum([]byte(want.text)) || ev.data["pos"] != float64(pos) {
			t.Fatalf("event %d: %+v (last %d)", i, ev, last)
		}
		last = pos
	}
	s.resp.Body.Close()

	write("1.1.1/1.1.1/1.1.3", "c")
	write("1.1.1/1.1.1/1.1.4", "d")
	s2 := e.stream("alpha", "p=n&c=1.1.1/1.1.1/1.1&text=1", "Last-Event-ID", strconv.FormatUint(last, 10))
	for _, want := range []string{"c", "d"} {
		ev := s2.next()
		pos, _ := strconv.ParseUint(ev.id, 10, 64)
		if ev.event != "change" || ev.data["text"] != want || pos <= last {
			t.Fatalf("resumed: %+v (last %d)", ev, last)
		}
		last = pos
	}
	write("1.1.1/1.1.1/1.1.5", "live")
	if ev := s2.next(); ev.data["text"] != "live" {
		t.Fatalf("live after resume: %+v", ev)
	}

	s3 := e.stream("alpha", "p=n", "Last-Event-ID", "1")
	if ev := s3.next(); ev.event != "resync" || ev.data["reason"] != "gap" || ev.data["ended"] != false {
		t.Fatalf("want a resync: %+v", ev)
	}

	// beta saw nothing of alpha's: its first event is its own write.
	if a := e.as("beta", http.MethodGet, "/api/v2/insert?p=n&c=1.1.1/1.1.1/1.1.1&s=mine", ""); a.code != http.StatusOK {
		t.Fatal(a.body)
	}
	if ev := beta.next(); ev.data["len"] != float64(4) {
		t.Fatalf("beta: %+v", ev)
	}

	// Bad arguments are plain HTTP errors.
	for _, q := range []string{"p=n&c=1.1.1000", "p=n&from=x", "p=bad%20name"} {
		if a := e.as("alpha", http.MethodGet, "/api/v2/watch?"+q, ""); a.code == http.StatusOK {
			t.Fatalf("%s: %d", q, a.code)
		}
	}
	if a := e.call(http.MethodGet, "/api/v2/watch?p=n", ""); a.code != http.StatusUnauthorized {
		t.Fatalf("no token: %d", a.code)
	}
}
