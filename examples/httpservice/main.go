// Command httpservice is a small HTTP service with a product endpoint backed
// by a tiered.Cache, and its cache metrics on /metrics for Prometheus.
//
//	GET /products/{id}   the product as JSON, loaded through the cache
//	PUT /products/{id}   store a product (JSON body) in the "database", then Set it in the cache
//	GET /metrics         Prometheus metrics of the cache and its invalidation bus
//
// Without -redis it starts an embedded Redis: a redis-server child on a free
// loopback port, or, when redis-server is not installed, an in-process
// miniredis (with a warning). It runs until interrupted, or for -duration.
//
//	go -C examples run ./httpservice
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/examples/devredis"
	"github.com/tiercache/tiercache/metrics"
	"github.com/tiercache/tiercache/tiered"
)

type Product struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	Price int    `json:"price"`
}

func main() {
	redisAddr := flag.String("redis", "", "Redis address (host:port); empty runs an embedded Redis")
	addr := flag.String("addr", "127.0.0.1:8080", "HTTP listen address")
	duration := flag.Duration("duration", 0, "stop after this long; 0 runs until SIGINT or SIGTERM")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *duration)
		defer cancel()
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	if err := run(ctx, *redisAddr, ln); err != nil {
		log.Fatal(err)
	}
}

// run serves on ln until ctx ends, then shuts down; it closes ln.
func run(ctx context.Context, redisAddr string, ln net.Listener) error {
	defer ln.Close() // Serve closes it too; this covers the early returns
	if redisAddr == "" {
		srv, err := devredis.Start(ctx, devredis.Options{AllowMiniredis: true})
		if err != nil {
			return err
		}
		defer srv.Close()
		redisAddr = srv.Addr
		if srv.Kind == devredis.Miniredis {
			log.Print("warning: redis-server not found; using in-process miniredis, which is not Redis (install redis-server for the real thing)")
		}
	}
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
	defer rdb.Close()

	cache, err := tiered.New[Product](tiered.Options{Redis: rdb, Namespace: "products", TTL: 10 * time.Minute})
	if err != nil {
		return err
	}
	defer cache.Close()

	// Our own registry: the library never touches the default one. The bus
	// is registered once; every cache sharing it would add only its own
	// collector.
	reg := prometheus.NewRegistry()
	reg.MustRegister(metrics.NewCacheCollector(cache, metrics.Options{}), metrics.NewBusCollector(cache.Bus(), metrics.Options{}))

	db := &database{rows: map[string]Product{"42": {ID: "42", Name: "Widget", Price: 995}}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /products/{id}", func(w http.ResponseWriter, r *http.Request) {
		p, err := cache.GetOrLoad(r.Context(), r.PathValue("id"), db.load)
		switch {
		case errors.Is(err, tiered.ErrNotFound):
			http.NotFound(w, r)
		case err != nil:
			http.Error(w, err.Error(), http.StatusInternalServerError)
		default:
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(p)
		}
	})
	mux.HandleFunc("PUT /products/{id}", func(w http.ResponseWriter, r *http.Request) {
		var p Product
		if err := json.NewDecoder(r.Body).Decode(&p); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		p.ID = r.PathValue("id")
		db.store(p) // commit to the source of truth first, then tell the cache
		if err := cache.Set(r.Context(), p.ID, p); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))

	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	log.Printf("listening on http://%s (try /products/42 and /metrics)", ln.Addr())
	serveErr := make(chan error, 1) // buffered: Serve may return after we stopped listening for it
	go func() { serveErr <- srv.Serve(ln) }()

	select {
	case err := <-serveErr:
		return err
	case <-ctx.Done():
	}
	log.Print("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return err
	}
	if err := <-serveErr; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// database stands in for the source of truth.
type database struct {
	mu   sync.Mutex // guards rows
	rows map[string]Product
}

func (d *database) load(ctx context.Context, id string) (Product, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	p, ok := d.rows[id]
	if !ok {
		return Product{}, tiered.ErrNotFound
	}
	return p, nil
}

func (d *database) store(p Product) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.rows[p.ID] = p
}
