package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tiercache/tiercache/tiered"
)

// errorBody checks that body is {"error": "<something>"} and returns it.
func errorBody(t *testing.T, body []byte) string {
	t.Helper()
	var e struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal(body, &e); err != nil || e.Error == "" {
		t.Errorf("body %q is not a JSON error (%v)", body, err)
	}
	return e.Error
}

func TestBadInput(t *testing.T) {
	tooBig := `{"name":"` + strings.Repeat("x", maxBody) + `"}`
	var manyIDs []string
	for i := 1; i <= MaxBatch+1; i++ {
		manyIDs = append(manyIDs, fmt.Sprint(i))
	}
	tests := []struct {
		name               string
		method, path, body string
		want               int
	}{
		{"non-numeric id", "GET", "/products/abc", "", 400},
		{"zero id", "GET", "/products/0", "", 400},
		{"negative id", "GET", "/products/-3", "", 400},
		{"id too large", "GET", "/products/99999999999999999999", "", 400},
		{"unknown id", "GET", "/products/999999", "", 404},
		{"no ids", "GET", "/products", "", 400},
		{"bad id in list", "GET", "/products?ids=1,x,3", "", 400},
		{"empty id in list", "GET", "/products?ids=1,,3", "", 400},
		{"too many ids", "GET", "/products?ids=" + strings.Join(manyIDs, ","), "", 400},
		{"update non-numeric id", "PUT", "/products/abc", `{"price":1}`, 400},
		{"update unknown id", "PUT", "/products/999999", `{"price":1}`, 404},
		{"negative price", "PUT", "/products/1", `{"price":-1}`, 422},
		{"negative stock", "PUT", "/products/1", `{"stock":-5}`, 422},
		{"empty name", "PUT", "/products/1", `{"name":" "}`, 422},
		{"long name", "PUT", "/products/1", `{"name":"` + strings.Repeat("n", maxNameLen+1) + `"}`, 422},
		{"NUL in name", "PUT", "/products/1", `{"name":"Tin\u0000Cup"}`, 422},
		{"create with NUL in name", "POST", "/products", `{"name":"Tin\u0000Cup","price":1}`, 422},
		{"nothing to update", "PUT", "/products/1", `{}`, 422},
		{"unknown field", "PUT", "/products/1", `{"prize":5}`, 400},
		{"not JSON", "PUT", "/products/1", `price=5`, 400},
		{"empty body", "PUT", "/products/1", ``, 400},
		{"two objects", "PUT", "/products/1", `{"price":1}{"price":2}`, 400},
		{"price not a number", "PUT", "/products/1", `{"price":"5"}`, 400},
		{"price not an integer", "PUT", "/products/1", `{"price":1.5}`, 400},
		{"body over 64 KiB", "PUT", "/products/1", tooBig, 413},
		{"object then a big tail", "PUT", "/products/1", `{"price":1}` + strings.Repeat(" ", maxBody), 413},
		{"create without price", "POST", "/products", `{"name":"Cup"}`, 422},
		{"create with negative price", "POST", "/products", `{"name":"Cup","price":-1}`, 422},
		{"create with unknown field", "POST", "/products", `{"name":"Cup","price":1,"color":"red"}`, 400},
		{"create over 64 KiB", "POST", "/products", tooBig, 413},
		{"delete non-numeric id", "DELETE", "/products/abc", "", 400},
		{"delete unknown id", "DELETE", "/products/999999", "", 404},
		{"method not allowed", "PATCH", "/products/1", `{"price":1}`, 405},
		{"method not allowed on the list", "DELETE", "/products", "", 405},
		{"no such endpoint", "GET", "/nope", "", 404},
	}
	forEachSetup(t, func(t *testing.T, s setup) {
		e := newEnv(t, s, 2)
		before := e.warmL1(1, "1")
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				code, body := e.do(0, tt.method, tt.path, tt.body)
				if code != tt.want {
					t.Errorf("%s %.40s = %d %s, want %d", tt.method, tt.path, code, body, tt.want)
				}
				errorBody(t, body)
			})
		}
		// None of the failed writes changed product 1, in the database
		// or in any cache tier, nor made a product.
		if p, _ := e.dbProduct(1); p != before {
			t.Errorf("database holds %+v after failed writes, want %+v", p, before)
		}
		for i := range e.replicas {
			if p := e.product(i, "1"); p != before {
				t.Errorf("replica %d serves %+v after failed writes, want %+v", i, p, before)
			}
		}
		if _, ok := e.dbProduct(seedCount + 1); ok {
			t.Error("a failed create made a product")
		}
	})
}

// TestDatabaseDown closes the database under running replicas: what is
// cached is still served, everything else is a 503 with a JSON body, and
// the failed writes leave the database and the cache agreeing.
func TestDatabaseDown(t *testing.T) {
	forEachSetup(t, func(t *testing.T, s setup) {
		e := newEnv(t, s, 2)
		cached := e.warmL1(0, "1")
		e.product(1, "1")
		e.db.Close()

		for i := range e.replicas {
			if p := e.product(i, "1"); p != cached {
				t.Errorf("replica %d serves %+v with the database down, want the cached %+v", i, p, cached)
			}
		}
		tests := []struct {
			name               string
			method, path, body string
		}{
			{"read uncached", "GET", "/products/5", ""},
			{"read many", "GET", "/products?ids=1,5,6", ""},
			{"update", "PUT", "/products/1", `{"price":1}`},
			{"create", "POST", "/products", `{"name":"Cup","price":1}`},
			{"delete", "DELETE", "/products/1", ""},
			{"health", "GET", "/healthz", ""},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				code, body := e.do(0, tt.method, tt.path, tt.body)
				if code != http.StatusServiceUnavailable {
					t.Errorf("%s %s = %d %s, want 503", tt.method, tt.path, code, body)
				}
				if tt.name != "health" {
					errorBody(t, body)
				}
			})
		}
		// The row and every cached copy still agree.
		for i := range e.replicas {
			if p := e.product(i, "1"); p != cached {
				t.Errorf("replica %d serves %+v after failed writes, want %+v", i, p, cached)
			}
		}
		if p, _ := e.dbProduct(1); p != cached {
			t.Errorf("database holds %+v after failed writes, want %+v", p, cached)
		}
	})
}

// TestRedisDown stops Redis under running replicas: an update still commits
// and succeeds, its failed invalidation is logged and counted, every replica
// serves the new row (the writer drops its L1 copy; the others stop
// serving L1 when their bus can no longer prove its subscription), and
// /healthz says the cache is not connected while still answering 200.
func TestRedisDown(t *testing.T) {
	forEachSetup(t, func(t *testing.T, s setup) {
		e := newEnv(t, s, 2)
		old := e.warmL1(0, "1")
		e.warmL1(1, "1")
		code, body := e.do(0, http.MethodGet, "/healthz", "")
		if code != http.StatusOK || !contains(body, `"cache":"connected"`) {
			t.Errorf("GET /healthz = %d %s, want 200 and the cache connected", code, body)
		}

		e.stopRedis()
		want := old.Price + 7
		code, body = e.do(0, http.MethodPut, "/products/1", fmt.Sprintf(`{"price":%d}`, want))
		if code != http.StatusOK {
			t.Fatalf("PUT /products/1 with Redis down = %d %s, want 200 (the database committed)", code, body)
		}
		if p, _ := e.dbProduct(1); p.Price != want {
			t.Errorf("database price = %d, want %d", p.Price, want)
		}
		if n := e.replicas[0].repo.Stats().CacheWriteFailures; n != 1 {
			t.Errorf("CacheWriteFailures = %d, want 1", n)
		}
		if !strings.Contains(e.logs.String(), "cache invalidation failed after commit") {
			t.Errorf("no log line for the failed invalidation; logs:\n%s", e.logs)
		}
		if p := e.product(0, "1"); p.Price != want {
			t.Errorf("the writer serves price %d, want %d", p.Price, want)
		}
		// Replica 1 heard nothing; it stops serving L1 once its last
		// heartbeat is older than MaxStaleness (2 s).
		e.waitUntil(1, "/products/1", "the new price", 5*time.Second, func(code int, body []byte) bool {
			var p Product
			return code == http.StatusOK && json.Unmarshal(body, &p) == nil && p.Price == want
		})

		// The state leaves "connected" once the bus misses its heartbeat
		// (MaxStaleness) or the breaker opens: poll, with a deadline.
		deadline := time.Now().Add(5 * time.Second)
		for e.replicas[0].cache.Stats().State == tiered.StateConnected {
			if time.Now().After(deadline) {
				t.Fatal("cache still connected 5s after Redis stopped")
			}
			e.product(0, "3")
			<-time.After(10 * time.Millisecond)
		}
		code, body = e.do(0, http.MethodGet, "/healthz", "")
		if code != http.StatusOK || !contains(body, `"status":"degraded"`) || contains(body, `"cache":"connected"`) {
			t.Errorf("GET /healthz with Redis down = %d %s, want 200, degraded", code, body)
		}
	})
}

// TestDatabaseUnreachableAtStart: a replica whose database does not answer
// does not start, and says why.
func TestDatabaseUnreachableAtStart(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String() // nothing listens there once ln is closed
	ln.Close()
	tests := []struct {
		name string
		give string
	}{
		{"postgres on a closed port", "postgres://postgres@" + closed + "/test?sslmode=disable"},
		{"sqlite in a missing directory", filepath.Join(t.TempDir(), "missing", "catalog.db")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db, _, err := openDatabase(context.Background(), tt.give)
			if err == nil {
				db.Close()
				t.Fatalf("openDatabase(%q) = nil error, want one", tt.give)
			}
			if !strings.Contains(err.Error(), "connect to") {
				t.Errorf("openDatabase(%q) = %v, want a connect error", tt.give, err)
			}
		})
	}
}
