package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tiercache/tiercache/tiered"
)

// maxBody is the largest request body accepted.
const maxBody = 64 << 10

// server is the HTTP face of one replica.
type server struct {
	repo   *ProductRepository
	state  func() tiered.State // the cache's connection state, for /healthz
	logger *slog.Logger
}

// newHandler routes the catalog's endpoints. Every error, routing errors
// included, is a JSON body {"error": "..."}.
func newHandler(repo *ProductRepository, state func() tiered.State, reg *prometheus.Registry, logger *slog.Logger) http.Handler {
	s := &server{repo: repo, state: state, logger: logger}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /products/{id}", s.getProduct)
	mux.HandleFunc("PUT /products/{id}", s.updateProduct)
	mux.HandleFunc("DELETE /products/{id}", s.deleteProduct)
	mux.HandleFunc("GET /products", s.getProducts)
	mux.HandleFunc("POST /products", s.createProduct)
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", s.healthz)
	// A pattern with a method is more specific than the same pattern
	// without, so these catch only the methods not routed above.
	mux.HandleFunc("/products/{id}", methodNotAllowed("GET, PUT, DELETE"))
	mux.HandleFunc("/products", methodNotAllowed("GET, POST"))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSONError(w, http.StatusNotFound, "no such endpoint: "+r.URL.Path)
	})
	return mux
}

func methodNotAllowed(allow string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", allow)
		writeJSONError(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed; use "+allow)
	}
}

func (s *server) getProduct(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	p, err := s.repo.Get(r.Context(), id)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, p)
}

// productsResponse is the answer to GET /products?ids=...: the products
// found, in the order asked, and the ids that have none.
type productsResponse struct {
	Products []Product `json:"products"`
	Missing  []int64   `json:"missing"`
}

func (s *server) getProducts(w http.ResponseWriter, r *http.Request) {
	raw := r.URL.Query().Get("ids")
	if raw == "" {
		writeJSONError(w, http.StatusBadRequest, "give ids: /products?ids=1,2,3")
		return
	}
	var ids []int64
	seen := map[int64]bool{}
	for _, f := range strings.Split(raw, ",") {
		id, err := parseID(strings.TrimSpace(f))
		if err != nil {
			writeJSONError(w, http.StatusBadRequest, err.Error())
			return
		}
		if !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	if len(ids) > MaxBatch {
		writeJSONError(w, http.StatusBadRequest, fmt.Sprintf("at most %d ids at once", MaxBatch))
		return
	}
	got, err := s.repo.GetMany(r.Context(), ids)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	resp := productsResponse{Products: []Product{}, Missing: []int64{}}
	for _, id := range ids {
		if p, ok := got[id]; ok {
			resp.Products = append(resp.Products, p)
		} else {
			resp.Missing = append(resp.Missing, id)
		}
	}
	writeJSON(w, http.StatusOK, resp)
}

// createRequest is POST /products's body. Pointers tell a missing field
// from a zero one: name and price are required, stock defaults to 0.
type createRequest struct {
	Name  *string `json:"name"`
	Price *int64  `json:"price"`
	Stock *int64  `json:"stock"`
}

func (s *server) createProduct(w http.ResponseWriter, r *http.Request) {
	var req createRequest
	if !decodeBody(w, r, &req) {
		return
	}
	if req.Name == nil || req.Price == nil {
		writeJSONError(w, http.StatusUnprocessableEntity, "name and price are required")
		return
	}
	np := NewProduct{Name: *req.Name, Price: *req.Price}
	if req.Stock != nil {
		np.Stock = *req.Stock
	}
	p, err := s.repo.Create(r.Context(), np)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header().Set("Location", "/products/"+cacheKey(p.ID))
	writeJSON(w, http.StatusCreated, p)
}

func (s *server) updateProduct(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	var patch ProductPatch
	if !decodeBody(w, r, &patch) {
		return
	}
	p, err := s.repo.Update(r.Context(), id, patch)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, p)
}

func (s *server) deleteProduct(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	if err := s.repo.Delete(r.Context(), id); err != nil {
		s.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// health is /healthz's answer.
type health struct {
	// Status is "ok" when the cache is connected and the database answers,
	// "degraded" when only the database does (the replica serves every
	// request, at the database's cost), "down" when the database does not.
	Status string `json:"status"`
	// Cache is the cache's connection state: connected, degraded (Redis
	// unreachable, reads go to the database, writes cannot invalidate) or
	// healing (Redis is back, the invalidation bus not yet proven).
	Cache string `json:"cache"`
	// Database is "up" or "down".
	Database string `json:"database"`
}

// healthz answers 200 while the replica can serve, also while Redis is down
// (the cache then reads the database), and 503 when the database does not
// answer: a load balancer should not take every replica out because Redis
// is slow, but one without a database serves only what its cache holds.
func (s *server) healthz(w http.ResponseWriter, r *http.Request) {
	h := health{Status: "ok", Cache: string(s.state()), Database: "up"}
	code := http.StatusOK
	ctx, cancel := context.WithTimeout(r.Context(), time.Second)
	defer cancel()
	switch {
	case s.repo.Ping(ctx) != nil:
		h.Status, h.Database, code = "down", "down", http.StatusServiceUnavailable
	case h.Cache != string(tiered.StateConnected):
		h.Status = "degraded"
	}
	writeJSON(w, code, h)
}

// pathID parses {id}, or answers 400 and reports false.
func pathID(w http.ResponseWriter, r *http.Request) (int64, bool) {
	id, err := parseID(r.PathValue("id"))
	if err != nil {
		writeJSONError(w, http.StatusBadRequest, err.Error())
		return 0, false
	}
	return id, true
}

func parseID(s string) (int64, error) {
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id <= 0 {
		return 0, fmt.Errorf("invalid product id %q: want a positive integer", s)
	}
	return id, nil
}

// decodeBody reads one JSON object of at most maxBody bytes into v, with no
// unknown fields and nothing after it, or answers 400 or 413 and reports
// false.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	body := http.MaxBytesReader(w, r.Body, maxBody)
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		// One object only: anything after it but white space is an error.
		if err = dec.Decode(&struct{}{}); err == io.EOF {
			return true
		}
		if err == nil {
			err = errors.New("more than one JSON value")
		}
	}
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		writeJSONError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than %d bytes", maxBody))
	case errors.Is(err, io.EOF):
		writeJSONError(w, http.StatusBadRequest, "empty body: want a JSON object")
	default:
		writeJSONError(w, http.StatusBadRequest, "invalid JSON body: "+err.Error())
	}
	return false
}

// writeError answers err with its status. Server-side failures are logged
// here, once, with the request; the client gets a short message.
func (s *server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var (
		invalid *ValidationError
		dbErr   *DatabaseError
	)
	switch {
	case errors.Is(err, ErrProductNotFound):
		writeJSONError(w, http.StatusNotFound, "product "+r.PathValue("id")+" not found")
		return
	case errors.As(err, &invalid):
		writeJSONError(w, http.StatusUnprocessableEntity, invalid.Error())
		return
	case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
		return // the client left; nobody reads an answer
	case errors.As(err, &dbErr):
		writeJSONError(w, http.StatusServiceUnavailable, "database unavailable")
	case errors.Is(err, context.DeadlineExceeded):
		writeJSONError(w, http.StatusGatewayTimeout, "database too slow")
	default: // a loader's *tiered.PanicError among them
		writeJSONError(w, http.StatusInternalServerError, "internal error")
	}
	s.logger.WarnContext(r.Context(), "request failed", "method", r.Method, "path", r.URL.Path, "err", err)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v) // a failed write means the client left
}

func writeJSONError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}
