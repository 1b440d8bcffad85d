package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// agreeWithin bounds how long after a write returned a replica may still
// serve the old row: the library's MaxStaleness (2 s by default), plus
// room for the HTTP round trips of a slow CI machine.
const agreeWithin = 3 * time.Second

// waitUntil reads through replica i until ok accepts the answer, and fails
// the test if that takes longer than within. An invalidation is a pub/sub
// message on its way, with nothing in this process to wait on, so it polls.
func (e *env) waitUntil(i int, path string, what string, within time.Duration, ok func(code int, body []byte) bool) time.Duration {
	e.t.Helper()
	start := time.Now()
	for {
		code, body := e.do(i, http.MethodGet, path, "")
		if ok(code, body) {
			return time.Since(start)
		}
		if time.Since(start) > within {
			e.t.Fatalf("replica %d: GET %s = %d %s, still not %s after %v", i, path, code, body, what, within)
		}
		<-time.After(time.Millisecond)
	}
}

func TestWritesPropagate(t *testing.T) {
	forEachSetup(t, func(t *testing.T, s setup) {
		e := newEnv(t, s, 3)

		// An update through replica 0, read through 1 and 2.
		{
			var old Product
			for i := range e.replicas {
				old = e.warmL1(i, "1") // every replica holds the old row in memory
			}
			want := old.Price + 100
			code, body := e.do(0, http.MethodPut, "/products/1", fmt.Sprintf(`{"price":%d}`, want))
			if code != http.StatusOK {
				t.Fatalf("PUT /products/1 = %d %s, want 200", code, body)
			}
			for i := 1; i < 3; i++ {
				took := e.waitUntil(i, "/products/1", "the new price", agreeWithin, func(code int, body []byte) bool {
					var p Product
					return code == http.StatusOK && json.Unmarshal(body, &p) == nil && p.Price == want && p.Name == old.Name
				})
				t.Logf("replica %d served the new price %v after the update returned", i, took)
			}
			if p, _ := e.dbProduct(1); p.Price != want {
				t.Errorf("database price = %d, want %d", p.Price, want)
			}
		}

		// A delete through replica 1, read through 0 and 2.
		{
			for i := range e.replicas {
				e.warmL1(i, "2")
			}
			if code, body := e.do(1, http.MethodDelete, "/products/2", ""); code != http.StatusNoContent {
				t.Fatalf("DELETE /products/2 = %d %s, want 204", code, body)
			}
			for _, i := range []int{0, 2} {
				e.waitUntil(i, "/products/2", "404", agreeWithin, func(code int, _ []byte) bool { return code == http.StatusNotFound })
			}
			if _, ok := e.dbProduct(2); ok {
				t.Error("product 2 still in the database")
			}
		}

		// A create through replica 2, read through 0 and 1.
		{
			// Product 301 does not exist yet: every replica caches "not found".
			for i := range e.replicas {
				if code, body := e.do(i, http.MethodGet, "/products/301", ""); code != http.StatusNotFound {
					t.Fatalf("replica %d: GET /products/301 = %d %s, want 404", i, code, body)
				}
			}
			code, body := e.do(2, http.MethodPost, "/products", `{"name":"Tin Cup","price":450,"stock":12}`)
			if code != http.StatusCreated {
				t.Fatalf("POST /products = %d %s, want 201", code, body)
			}
			var created Product
			if err := json.Unmarshal(body, &created); err != nil || created.ID != 301 {
				t.Fatalf("POST /products = %s (%v), want product 301", body, err)
			}
			for _, i := range []int{0, 1} {
				e.waitUntil(i, "/products/301", "the new product", agreeWithin, func(code int, body []byte) bool {
					var p Product
					return code == http.StatusOK && json.Unmarshal(body, &p) == nil && p == created
				})
			}
		}
	})
}

// TestReadYourWrites: the cache confirms its writes, so once a PUT through
// one replica returns, a GET through any other gets the new row at once,
// every time, although both held the old one in memory.
func TestReadYourWrites(t *testing.T) {
	forEachSetup(t, func(t *testing.T, s setup) {
		e := newEnv(t, s, 3)
		for round := range 20 {
			var old Product
			for i := range e.replicas {
				old = e.warmL1(i, "1")
			}
			want := old.Price + 1
			w := round % 3
			code, body := e.do(w, http.MethodPut, "/products/1", fmt.Sprintf(`{"price":%d}`, want))
			if code != http.StatusOK {
				t.Fatalf("PUT /products/1 = %d %s, want 200", code, body)
			}
			for i := range e.replicas {
				if p := e.product(i, "1"); p.Price != want {
					t.Fatalf("round %d: replica %d served price %d right after the PUT through replica %d returned, want %d", round, i, p.Price, w, want)
				}
			}
		}
	})
}

func TestGetManyOneQueryForMissingIDs(t *testing.T) {
	forEachSetup(t, func(t *testing.T, s setup) {
		e := newEnv(t, s, 3)
		e.product(0, "1")
		e.product(0, "2")
		q0, ids0 := e.loadQueries()

		// 1 and 2 are in Redis; 3, 4, 5 and 999 are in no tier.
		code, body := e.do(1, http.MethodGet, "/products?ids=1,2,3,4,5,999", "")
		if code != http.StatusOK {
			t.Fatalf("GET /products?ids=... = %d %s, want 200", code, body)
		}
		var resp productsResponse
		if err := json.Unmarshal(body, &resp); err != nil {
			t.Fatal(err)
		}
		var got []int64
		for _, p := range resp.Products {
			got = append(got, p.ID)
			if want := seedProduct(int(p.ID)); p != want {
				t.Errorf("product %d = %+v, want %+v", p.ID, p, want)
			}
		}
		if fmt.Sprint(got) != "[1 2 3 4 5]" || fmt.Sprint(resp.Missing) != "[999]" {
			t.Errorf("products %v, missing %v; want [1 2 3 4 5], [999]", got, resp.Missing)
		}
		q1, ids1 := e.loadQueries()
		if q1-q0 != 1 || ids1-ids0 != 4 {
			t.Errorf("GetMany sent %d queries for %d ids, want 1 query for the 4 missing ids", q1-q0, ids1-ids0)
		}

		// Now every id is cached, 999 as "not found": no query at all.
		if code, body := e.do(2, http.MethodGet, "/products?ids=5,999,3", ""); code != http.StatusOK {
			t.Fatalf("GET /products?ids=5,999,3 = %d %s", code, body)
		}
		if q2, _ := e.loadQueries(); q2 != q1 {
			t.Errorf("GetMany of cached ids sent %d queries, want 0", q2-q1)
		}
	})
}

func TestColdProductLoadedOnceClusterWide(t *testing.T) {
	forEachSetup(t, func(t *testing.T, s setup) {
		e := newEnv(t, s, 3)
		const perReplica = 20
		want := seedProduct(42)
		start := make(chan struct{})
		var wg sync.WaitGroup
		errs := make(chan error, 3*perReplica)
		for i := range e.replicas {
			for range perReplica {
				wg.Go(func() {
					<-start
					resp, err := e.servers[i].Client().Get(e.servers[i].URL + "/products/42")
					if err != nil {
						errs <- err
						return
					}
					defer resp.Body.Close()
					var p Product
					if err := json.NewDecoder(resp.Body).Decode(&p); err != nil || resp.StatusCode != http.StatusOK || p != want {
						errs <- fmt.Errorf("replica %d: %d %+v (%v), want 200 %+v", i, resp.StatusCode, p, err, want)
					}
				})
			}
		}
		close(start)
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		if q, _ := e.loadQueries(); q != 1 {
			t.Errorf("%d concurrent reads of a cold product on 3 replicas sent %d queries, want 1", 3*perReplica, q)
		}
	})
}

func TestSeedOnce(t *testing.T) {
	for _, d := range dbKinds {
		t.Run(d.name, func(t *testing.T) {
			dsn := d.dsn(t)
			// Two replicas start together, then one restarts: the schema
			// is made and the products seeded once.
			var wg sync.WaitGroup
			errs := make([]error, 2)
			for i := range errs {
				wg.Go(func() {
					db, _, err := openDatabase(context.Background(), dsn)
					if err == nil {
						db.Close()
					}
					errs[i] = err
				})
			}
			wg.Wait()
			for _, err := range errs {
				if err != nil {
					t.Fatalf("openDatabase: %v", err)
				}
			}
			db, _, err := openDatabase(context.Background(), dsn)
			if err != nil {
				t.Fatalf("openDatabase again: %v", err)
			}
			defer db.Close()
			var n int
			if err := db.QueryRow(`SELECT count(*) FROM products`).Scan(&n); err != nil || n != seedCount {
				t.Errorf("products = %d (%v), want %d", n, err, seedCount)
			}
			// Deleting every product does not bring the seed back.
			if _, err := db.Exec(`DELETE FROM products`); err != nil {
				t.Fatal(err)
			}
			db2, _, err := openDatabase(context.Background(), dsn)
			if err != nil {
				t.Fatalf("openDatabase after delete: %v", err)
			}
			defer db2.Close()
			if err := db2.QueryRow(`SELECT count(*) FROM products`).Scan(&n); err != nil || n != 0 {
				t.Errorf("products after delete and restart = %d (%v), want 0", n, err)
			}
		})
	}
}

func TestMetrics(t *testing.T) {
	forEachSetup(t, func(t *testing.T, s setup) {
		e := newEnv(t, s, 1)
		e.product(0, "7")
		code, body := e.do(0, http.MethodGet, "/metrics", "")
		if code != http.StatusOK {
			t.Fatalf("GET /metrics = %d", code)
		}
		for _, want := range []string{
			"tiercache_requests_total{",  // the cache's collector
			"tiercache_invalidation_",    // the bus's collector
			"catalog_db_queries_total 1", // the repository's
			"catalog_cache_invalidation_failures_total 0",
		} {
			if !contains(body, want) {
				t.Errorf("/metrics lacks %q", want)
			}
		}
	})
}

func contains(b []byte, s string) bool { return strings.Contains(string(b), s) }
