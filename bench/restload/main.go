// Command restload measures REST SELECT throughput: -c keep-alive clients
// send GET /api/v2/select?c=1.1.1/1.1.1/1.1.1 for -d, each request with the
// next tenant's token of -config in "Authorization: Bearer", and it prints
// "<requests/s> <failed requests>". It compares a host's REST port with
// HAProxy in front of it (deploy/haproxy/haproxy-rest.cfg); seed the scroll
// first, as a 404 or 401 counts as failed.
//
//	restload -url http://127.0.0.1:1338 -config tenants.json -c 16 -d 5s
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	base := flag.String("url", "", "base URL of the REST API (a host's --http, or HAProxy's REST frontend)")
	cfg := flag.String("config", "", "tenants.json whose tokens the requests use")
	workers := flag.Int("c", 16, "concurrent keep-alive clients")
	d := flag.Duration("d", 5*time.Second, "duration")
	flag.Parse()
	b, err := os.ReadFile(*cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "restload:", err)
		os.Exit(1)
	}
	var c struct {
		Tenants map[string]json.RawMessage `json:"tenants"`
	}
	if err := json.Unmarshal(b, &c); err != nil || len(c.Tenants) == 0 || *workers < 1 {
		fmt.Fprintln(os.Stderr, "restload: need a config with tenants and -c ≥ 1", err)
		os.Exit(1)
	}
	toks := make([]string, 0, len(c.Tenants))
	for t := range c.Tenants {
		toks = append(toks, t)
	}
	sort.Strings(toks)
	cl := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: *workers}, Timeout: 10 * time.Second}
	var ok, failed atomic.Int64
	var wg sync.WaitGroup
	stop := time.Now().Add(*d)
	for w := 0; w < *workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; time.Now().Before(stop); i += *workers {
				req, err := http.NewRequest("GET", *base+"/api/v2/select?c=1.1.1/1.1.1/1.1.1", nil)
				if err != nil {
					failed.Add(1)
					return
				}
				req.Header.Set("Authorization", "Bearer "+toks[i%len(toks)])
				resp, err := cl.Do(req)
				if err != nil {
					failed.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					failed.Add(1)
					continue
				}
				ok.Add(1)
			}
		}(w)
	}
	wg.Wait()
	fmt.Printf("%.0f %d\n", float64(ok.Load())/d.Seconds(), failed.Load())
}
