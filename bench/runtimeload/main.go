// Command runtimeload POSTs N new client certificates to one API's runtime
// store on a running Caddy's admin endpoint, from C parallel clients, and
// reports the time (bench/runtime_load.sh runs it). With -bulk B it sends
// arrays of B certificates instead of one per request.
//
//	go run ./bench/runtimeload -admin http://127.0.0.1:2019 -api load -n 10000 -clients 4
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/mtlsauth/caddy-mtls-auth/internal/testpki"
)

type record struct {
	Alias string `json:"alias"`
	PEM   string `json:"pem"`
}

func main() {
	admin := flag.String("admin", "http://127.0.0.1:2019", "Caddy's admin endpoint")
	api := flag.String("api", "load", "the API whose runtime store takes the certificates")
	n := flag.Int("n", 10000, "certificates to add")
	clients := flag.Int("clients", 4, "parallel clients")
	bulk := flag.Int("bulk", 0, "certificates per request (a JSON array); 0 sends one object per request")
	prefix := flag.String("prefix", "client", "alias prefix (aliases are <prefix>-<i>)")
	flag.Parse()
	if *n < 1 || *clients < 1 || *bulk < 0 {
		log.Fatal("-n and -clients must be positive, -bulk not negative")
	}

	start := time.Now()
	root := testpki.NewRoot("runtime load root")
	recs := make([]record, *n)
	for i := range recs {
		alias := fmt.Sprintf("%s-%05d", *prefix, i)
		recs[i] = record{Alias: alias, PEM: string(root.NewLeaf(alias).PEM())}
	}
	log.Printf("generated %d certificates in %s", *n, time.Since(start).Round(time.Millisecond))

	// Requests: one record each, or -bulk records each.
	var bodies [][]byte
	for i := 0; i < len(recs); {
		var v any = recs[i]
		next := i + 1
		if *bulk > 0 {
			next = min(i+*bulk, len(recs))
			v = recs[i:next]
		}
		b, err := json.Marshal(v)
		if err != nil {
			log.Fatal(err)
		}
		bodies = append(bodies, b)
		i = next
	}

	url := fmt.Sprintf("%s/mtls_auth/apis/%s/certs", *admin, *api)
	client := &http.Client{
		Timeout:   5 * time.Minute,
		Transport: &http.Transport{MaxIdleConnsPerHost: *clients},
	}
	work := make(chan []byte)
	var (
		mu     sync.Mutex
		failed int
		first  string
		slow   time.Duration
	)
	var wg sync.WaitGroup
	start = time.Now()
	for c := 0; c < *clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for body := range work {
				t0 := time.Now()
				status, msg := post(client, url, body)
				took := time.Since(t0)
				mu.Lock()
				slow = max(slow, took)
				if status != http.StatusCreated {
					failed++
					if first == "" {
						first = fmt.Sprintf("%d %s", status, msg)
					}
				}
				mu.Unlock()
			}
		}()
	}
	for _, b := range bodies {
		work <- b
	}
	close(work)
	wg.Wait()
	elapsed := time.Since(start)
	fmt.Printf("posted %d certificates in %d requests from %d clients: %.1f s, %.0f certificates/s, slowest request %s\n",
		*n, len(bodies), *clients, elapsed.Seconds(), float64(*n)/elapsed.Seconds(), slow.Round(time.Millisecond))
	if failed > 0 {
		fmt.Printf("%d requests failed; first: %s\n", failed, first)
		os.Exit(1)
	}
}

// post sends one request and returns the status and, on failure, the body.
func post(client *http.Client, url string, body []byte) (int, string) {
	resp, err := client.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode == http.StatusCreated {
		return resp.StatusCode, ""
	}
	return resp.StatusCode, string(msg)
}
