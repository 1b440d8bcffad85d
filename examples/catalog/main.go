// Command catalog is a product catalog service that uses tiercache the way a
// service would: a ProductRepository over database/sql whose reads go through
// a tiered.Cache and whose writes commit to the database first and then
// invalidate the product in Redis and on every replica.
//
//	GET    /products/{id}       one product
//	GET    /products?ids=1,2,3  several; one SQL query for those no cache tier has
//	POST   /products            create: {"name": "Tin Cup", "price": 450, "stock": 12}
//	PUT    /products/{id}       partial update of name, price, stock
//	DELETE /products/{id}
//	GET    /metrics             Prometheus: the cache, its bus, the repository
//	GET    /healthz             the cache's connection state, and the database's
//
// Prices are in cents. Errors are JSON bodies {"error": "..."}.
//
// The database is an SQLite file (-database, default catalog.db; pure Go,
// nothing to install), or PostgreSQL when -database is a postgres:// URL.
// The schema is created, and 300 products seeded, on first start. Redis is
// -redis host:port; without it the command starts an embedded one: a
// redis-server child on a free loopback port, or, when redis-server is not
// installed, an in-process miniredis (with a warning).
//
// The examples are their own Go module, so run them with -C:
//
//	go -C examples run ./catalog          # one replica on -addr (127.0.0.1:8080), until SIGINT or SIGTERM
//	go -C examples run ./catalog -demo    # three replicas, one update, the others see it
//
// -demo starts three replicas on loopback ports sharing one Redis and one
// database (a temporary SQLite file unless -database is given), reads product
// 1 through each, updates its price through the first and times how soon the
// others serve the new price, reads some more, prints each replica's L1 hit
// ratio and database queries, and stops everything it started.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/tiercache/tiercache/examples/devredis"
)

func main() {
	var (
		addr     = flag.String("addr", "127.0.0.1:8080", "HTTP listen address (not used by -demo)")
		database = flag.String("database", "", "a postgres:// URL, or an SQLite file path (default catalog.db; -demo: a temporary file)")
		redisURL = flag.String("redis", "", "Redis address host:port; empty starts an embedded Redis on a loopback port")
		demo     = flag.Bool("demo", false, "run the three-replica demo and exit")
		reads    = flag.Int("demo-reads", 300, "-demo: reads per replica after the update, spread over products 1-20")
	)
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	var err error
	if *demo {
		// The replicas' own news (a bus proving its subscription) would
		// drown the demo's lines; warnings still show.
		quiet := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
		err = runDemo(ctx, demoConfig{
			Database: *database, Redis: *redisURL, Replicas: 3, Reads: *reads,
			Out: os.Stdout, Logger: quiet,
		})
	} else {
		if *database == "" {
			*database = "catalog.db"
		}
		err = serve(ctx, *addr, *database, *redisURL, logger)
	}
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "catalog:", err)
		os.Exit(1)
	}
}

// serve runs one replica on addr until ctx ends, then shuts it down.
func serve(ctx context.Context, addr, database, redisAddr string, logger *slog.Logger) error {
	redisAddr, _, stopRedis, err := redisFor(ctx, redisAddr, os.Stderr)
	if err != nil {
		return err
	}
	defer stopRedis()
	db, dialect, err := openDatabase(ctx, database)
	if err != nil {
		return err
	}
	defer db.Close()
	r, err := newReplica(replicaConfig{DB: db, RedisAddr: redisAddr, Logger: logger})
	if err != nil {
		return err
	}
	defer r.Close()
	// Serve even when Redis does not answer (the cache reads the
	// database), but say so.
	readyCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	if err := r.cache.WaitReady(readyCtx); err != nil {
		logger.Warn("cache not connected yet; reading the database until Redis answers", "redis", redisAddr, "err", err)
	}
	cancel()

	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: r.handler, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second}
	logger.Info("catalog listening", "url", "http://"+ln.Addr().String(), "database", dialect.Name, "redis", redisAddr)
	serveErr := make(chan error, 1) // buffered: Serve returns after we stop listening for it
	go func() { serveErr <- srv.Serve(ln) }()
	select {
	case err := <-serveErr:
		return err
	case <-ctx.Done():
	}
	logger.Info("shutting down")
	shutdownCtx, cancelShutdown := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancelShutdown()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return err
	}
	if err := <-serveErr; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// redisFor returns addr if it is set. Otherwise it starts an embedded Redis
// on a free loopback port, warns on warn when that is miniredis rather than
// a redis-server, and returns its address, its kind and the func that stops
// it. kind is empty for a given addr.
func redisFor(ctx context.Context, addr string, warn io.Writer) (_, kind string, stop func(), _ error) {
	if addr != "" {
		return addr, "", func() {}, nil
	}
	srv, err := devredis.Start(ctx, devredis.Options{AllowMiniredis: true})
	if err != nil {
		return "", "", nil, fmt.Errorf("embedded redis: %w", err)
	}
	if srv.Kind == devredis.Miniredis {
		fmt.Fprintln(warn, "warning: redis-server is not installed; using an in-process miniredis, which is not Redis "+
			"(apt-get install redis-server, or pass -redis host:port)")
	}
	return srv.Addr, string(srv.Kind), srv.Close, nil
}
