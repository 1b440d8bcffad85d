package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"

	"github.com/tiercache/tiercache/examples/devredis"
)

// The suite runs on every pair of a Redis and a database below.

// redisKind starts a Redis for one test and returns its address and a func
// that stops it early (the test's cleanup stops it anyway).
type redisKind struct {
	name  string
	start func(t *testing.T) (addr string, stop func())
}

var redisKinds = []redisKind{
	{"redis-server", startRedisServer},
	{"miniredis", startMiniredis},
}

func startRedisServer(t *testing.T) (string, func()) {
	t.Helper()
	srv, err := devredis.Start(context.Background(), devredis.Options{})
	if errors.Is(err, devredis.ErrNoRedisServer) && os.Getenv("TIERCACHE_REQUIRE_REDIS") != "1" {
		t.Skip("redis-server not installed (TIERCACHE_REQUIRE_REDIS=1 makes this a failure)")
	}
	if err != nil {
		t.Fatalf("start redis-server: %v", err)
	}
	t.Cleanup(srv.Close)
	return srv.Addr, srv.Close
}

func startMiniredis(t *testing.T) (string, func()) {
	t.Helper()
	m := miniredis.NewMiniRedis()
	if err := m.StartAddr("127.0.0.1:0"); err != nil {
		t.Fatalf("start miniredis: %v", err)
	}
	var once sync.Once
	stop := func() { once.Do(m.Close) }
	t.Cleanup(stop)
	return m.Addr(), stop
}

// dbKind makes an empty database for one test and returns its DSN, as
// -database takes it.
type dbKind struct {
	name string
	dsn  func(t *testing.T) string
}

var dbKinds = []dbKind{
	{"sqlite", func(t *testing.T) string { return filepath.Join(t.TempDir(), "catalog.db") }},
	{"postgres", postgresDSN},
}

// postgresURL is the server the PostgreSQL runs use: TIERCACHE_POSTGRES_URL,
// or the project machines' server (trust auth, database test).
func postgresURL() string {
	if u := os.Getenv("TIERCACHE_POSTGRES_URL"); u != "" {
		return u
	}
	return "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
}

// postgresAdmin connects once per test binary, so that a missing server
// costs one timeout, not one per test. TestMain closes it.
var pgAdmin struct {
	once sync.Once
	db   *sql.DB
	err  error
}

func postgresAdmin() (*sql.DB, error) {
	pgAdmin.once.Do(func() {
		db, err := sql.Open("pgx", postgresURL())
		if err != nil {
			pgAdmin.err = err
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		if err := db.PingContext(ctx); err != nil {
			db.Close()
			pgAdmin.err = err
			return
		}
		pgAdmin.db = db
	})
	return pgAdmin.db, pgAdmin.err
}

func closePostgresAdmin() {
	if pgAdmin.db != nil {
		pgAdmin.db.Close()
	}
}

// postgresDSN makes a schema of its own for the test, dropped when it ends,
// and returns a DSN whose search_path selects it. Without a server the test
// is skipped, or fails when TIERCACHE_REQUIRE_POSTGRES=1.
func postgresDSN(t *testing.T) string {
	t.Helper()
	admin, err := postgresAdmin()
	if err != nil {
		if os.Getenv("TIERCACHE_REQUIRE_POSTGRES") == "1" {
			t.Fatalf("PostgreSQL at %s: %v", postgresURL(), err)
		}
		t.Skipf("PostgreSQL at %s does not answer (TIERCACHE_REQUIRE_POSTGRES=1 makes this a failure): %v", postgresURL(), err)
	}
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	schema := "catalog_test_" + hex.EncodeToString(b)
	if _, err := admin.Exec(`CREATE SCHEMA ` + schema); err != nil {
		t.Fatalf("create schema: %v", err)
	}
	t.Cleanup(func() {
		if _, err := admin.Exec(`DROP SCHEMA ` + schema + ` CASCADE`); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	u, err := url.Parse(postgresURL())
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// setup is one pair of a Redis and a database.
type setup struct {
	redis redisKind
	db    dbKind
}

// forEachSetup runs f as a subtest on every pair.
func forEachSetup(t *testing.T, f func(t *testing.T, s setup)) {
	for _, d := range dbKinds {
		for _, r := range redisKinds {
			t.Run(d.name+"/"+r.name, func(t *testing.T) { f(t, setup{redis: r, db: d}) })
		}
	}
}

// env is one test's deployment: a Redis, a database and replicas behind
// httptest servers.
type env struct {
	t         *testing.T
	dsn       string
	db        *sql.DB
	stopRedis func()
	replicas  []*replica
	servers   []*httptest.Server
	logs      *syncBuffer // every replica's log
}

func newEnv(t *testing.T, s setup, replicas int) *env {
	t.Helper()
	addr, stopRedis := s.redis.start(t)
	e := &env{t: t, dsn: s.db.dsn(t), stopRedis: stopRedis, logs: &syncBuffer{}}
	db, _, err := openDatabase(context.Background(), e.dsn)
	if err != nil {
		t.Fatalf("openDatabase: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	e.db = db
	logger := slog.New(slog.NewTextHandler(e.logs, nil))
	for range replicas {
		r, err := newReplica(replicaConfig{DB: db, RedisAddr: addr, Logger: logger})
		if err != nil {
			t.Fatalf("newReplica: %v", err)
		}
		t.Cleanup(r.Close)
		srv := httptest.NewServer(r.handler)
		t.Cleanup(srv.Close) // cleanups run last first: the server stops before its replica
		e.replicas = append(e.replicas, r)
		e.servers = append(e.servers, srv)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for i, r := range e.replicas {
		if err := r.cache.WaitReady(ctx); err != nil {
			t.Fatalf("replica %d: WaitReady: %v", i, err)
		}
	}
	return e
}

// do sends a request to replica i and returns the status and body.
func (e *env) do(i int, method, path, body string) (int, []byte) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.servers[i].URL+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	resp, err := e.servers[i].Client().Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return resp.StatusCode, b
}

// product reads product id through replica i, which must answer 200.
func (e *env) product(i int, id string) Product {
	e.t.Helper()
	code, body := e.do(i, http.MethodGet, "/products/"+id, "")
	if code != http.StatusOK {
		e.t.Fatalf("replica %d: GET /products/%s = %d %s, want 200", i, id, code, body)
	}
	var p Product
	if err := json.Unmarshal(body, &p); err != nil {
		e.t.Fatalf("replica %d: GET /products/%s: %v in %s", i, id, err, body)
	}
	return p
}

// warmL1 reads product id through replica i until the replica serves it
// from L1. Ristretto admits new entries asynchronously, so there is no
// signal to wait on: it polls, with a deadline.
func (e *env) warmL1(i int, id string) Product {
	e.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		before := e.replicas[i].cache.Stats().L1.Hits
		p := e.product(i, id)
		if e.replicas[i].cache.Stats().L1.Hits > before {
			return p
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("replica %d: product %s not served from L1 after 5s", i, id)
		}
	}
}

// loadQueries sums the loaders' SELECTs over every replica.
func (e *env) loadQueries() (queries, ids uint64) {
	for _, r := range e.replicas {
		st := r.repo.Stats()
		queries += st.LoadQueries
		ids += st.LoadedIDs
	}
	return queries, ids
}

// dbProduct reads product id straight from the database, through a
// connection of its own (the env's may have been closed).
func (e *env) dbProduct(id int64) (Product, bool) {
	e.t.Helper()
	db, _, err := openDatabase(context.Background(), e.dsn)
	if err != nil {
		e.t.Fatalf("openDatabase: %v", err)
	}
	defer db.Close()
	var p Product
	err = db.QueryRow(`SELECT id, name, price, stock FROM products WHERE id = $1`, id).Scan(&p.ID, &p.Name, &p.Price, &p.Stock)
	if errors.Is(err, sql.ErrNoRows) {
		return Product{}, false
	}
	if err != nil {
		e.t.Fatalf("read product %d: %v", id, err)
	}
	return p, true
}

// syncBuffer is a bytes.Buffer for several goroutines' logs.
type syncBuffer struct {
	mu  sync.Mutex // guards buf
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
