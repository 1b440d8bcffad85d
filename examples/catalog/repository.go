package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"unicode/utf8"

	"github.com/tiercache/tiercache/tiered"
)

// Product is one row of the products table. Price is in cents.
type Product struct {
	ID    int64  `json:"id"`
	Name  string `json:"name"`
	Price int64  `json:"price"`
	Stock int64  `json:"stock"`
}

// NewProduct is what Create needs: every column but the id.
type NewProduct struct {
	Name  string `json:"name"`
	Price int64  `json:"price"`
	Stock int64  `json:"stock"`
}

// ProductPatch is a partial update: nil fields keep their value.
type ProductPatch struct {
	Name  *string `json:"name"`
	Price *int64  `json:"price"`
	Stock *int64  `json:"stock"`
}

// Limits on input, checked before anything reaches the database.
const (
	maxNameLen = 200 // bytes
	// MaxBatch is the most ids one GetMany takes: it bounds the IN list
	// of the one query that loads them.
	MaxBatch = 100
)

// ErrProductNotFound is returned by the repository's methods for an id with
// no product.
var ErrProductNotFound = errors.New("product not found")

// ValidationError reports input the repository refuses before it touches
// the database or the cache.
type ValidationError struct {
	Field  string
	Reason string
}

func (e *ValidationError) Error() string { return e.Field + ": " + e.Reason }

// DatabaseError reports a failed database call: unreachable, closed, or a
// statement the database refused. Op says what the repository was doing.
type DatabaseError struct {
	Op  string
	Err error
}

func (e *DatabaseError) Error() string { return e.Op + ": " + e.Err.Error() }
func (e *DatabaseError) Unwrap() error { return e.Err }

// ProductRepository reads and writes products: the database is the truth,
// and cache holds copies of its rows, keyed by id.
//
// Reads go through the cache: Get with GetOrLoad, GetMany with
// GetOrLoadMany, so a product no tier has is queried once however many
// replicas and requests ask for it at the same moment.
//
// Writes commit a transaction first and then delete the product from the
// cache (see invalidate for why a delete and not a Set, and why a failed
// delete does not fail the write).
//
// A ProductRepository is safe for concurrent use by multiple goroutines. It
// closes neither the database nor the cache.
type ProductRepository struct {
	db     *sql.DB
	cache  *tiered.Cache[Product]
	logger *slog.Logger

	queries            atomic.Uint64 // SQL statements sent, reads and writes
	loadQueries        atomic.Uint64 // of those, the SELECTs of cache loaders
	idsLoaded          atomic.Uint64 // ids those SELECTs asked for
	cacheWriteFailures atomic.Uint64 // invalidations that failed after a commit
}

// NewProductRepository returns a repository over db that caches in cache.
func NewProductRepository(db *sql.DB, cache *tiered.Cache[Product], logger *slog.Logger) *ProductRepository {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &ProductRepository{db: db, cache: cache, logger: logger}
}

// RepositoryStats counts what a repository sent to the database.
type RepositoryStats struct {
	// Queries counts SQL statements, reads and writes.
	Queries uint64
	// LoadQueries counts the SELECTs run by cache loads (a subset of
	// Queries); LoadedIDs counts the ids they asked for.
	LoadQueries, LoadedIDs uint64
	// CacheWriteFailures counts committed writes whose cache invalidation
	// failed.
	CacheWriteFailures uint64
}

// Stats returns the repository's counters.
func (r *ProductRepository) Stats() RepositoryStats {
	return RepositoryStats{
		Queries:            r.queries.Load(),
		LoadQueries:        r.loadQueries.Load(),
		LoadedIDs:          r.idsLoaded.Load(),
		CacheWriteFailures: r.cacheWriteFailures.Load(),
	}
}

// Ping checks that the database answers.
func (r *ProductRepository) Ping(ctx context.Context) error {
	if err := r.db.PingContext(ctx); err != nil {
		return &DatabaseError{Op: "ping", Err: err}
	}
	return nil
}

const selectColumns = `SELECT id, name, price, stock FROM products`

func cacheKey(id int64) string { return strconv.FormatInt(id, 10) }

// Get returns product id, from the cache or else from the database. It
// returns ErrProductNotFound for an id with no product (an answer the cache
// keeps for Options.NegativeTTL) and a *DatabaseError when the database
// fails.
func (r *ProductRepository) Get(ctx context.Context, id int64) (Product, error) {
	p, err := r.cache.GetOrLoad(ctx, cacheKey(id), r.load)
	if errors.Is(err, tiered.ErrNotFound) {
		return Product{}, ErrProductNotFound
	}
	return p, err
}

// load is Get's loader: one SELECT by primary key.
func (r *ProductRepository) load(ctx context.Context, key string) (Product, error) {
	id, err := strconv.ParseInt(key, 10, 64)
	if err != nil {
		return Product{}, tiered.ErrNotFound // not a key this repository makes
	}
	r.countLoad(1)
	var p Product
	err = r.db.QueryRowContext(ctx, selectColumns+` WHERE id = $1`, id).Scan(&p.ID, &p.Name, &p.Price, &p.Stock)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return Product{}, tiered.ErrNotFound
	case err != nil:
		return Product{}, &DatabaseError{Op: "load product " + key, Err: err}
	}
	return p, nil
}

// GetMany returns the products of ids that exist, keyed by id. The ids no
// cache tier has are loaded with one query. More than MaxBatch ids is a
// *ValidationError; a database failure is a *DatabaseError, returned with
// nothing else.
func (r *ProductRepository) GetMany(ctx context.Context, ids []int64) (map[int64]Product, error) {
	if len(ids) > MaxBatch {
		return nil, &ValidationError{Field: "ids", Reason: fmt.Sprintf("at most %d ids at once", MaxBatch)}
	}
	keys := make([]string, len(ids))
	for i, id := range ids {
		keys[i] = cacheKey(id)
	}
	got, err := r.cache.GetOrLoadMany(ctx, keys, r.loadMany)
	if err != nil {
		return nil, err
	}
	out := make(map[int64]Product, len(got))
	for _, p := range got {
		out[p.ID] = p
	}
	return out, nil
}

// loadMany is GetMany's loader: it gets only the keys neither tier has and
// nobody is loading, and queries them in one statement. Ids it does not
// return are cached as not found.
func (r *ProductRepository) loadMany(ctx context.Context, missing []string) (map[string]Product, error) {
	args := make([]any, 0, len(missing))
	for _, k := range missing {
		if id, err := strconv.ParseInt(k, 10, 64); err == nil {
			args = append(args, id)
		}
	}
	out := make(map[string]Product, len(args))
	if len(args) == 0 {
		return out, nil
	}
	var q strings.Builder
	q.WriteString(selectColumns + ` WHERE id IN (`)
	for i := range args {
		if i > 0 {
			q.WriteString(", ")
		}
		fmt.Fprintf(&q, "$%d", i+1)
	}
	q.WriteString(")")

	r.countLoad(len(args))
	rows, err := r.db.QueryContext(ctx, q.String(), args...)
	if err != nil {
		return nil, &DatabaseError{Op: "load products", Err: err}
	}
	defer rows.Close()
	for rows.Next() {
		var p Product
		if err := rows.Scan(&p.ID, &p.Name, &p.Price, &p.Stock); err != nil {
			return nil, &DatabaseError{Op: "load products", Err: err}
		}
		out[cacheKey(p.ID)] = p
	}
	if err := rows.Err(); err != nil {
		return nil, &DatabaseError{Op: "load products", Err: err}
	}
	return out, nil
}

func (r *ProductRepository) countLoad(ids int) {
	r.queries.Add(1)
	r.loadQueries.Add(1)
	r.idsLoaded.Add(uint64(ids))
}

// Create inserts a product and returns it with its new id. It then deletes
// the new id from the cache too: a read of that id before the product
// existed may have cached "not found".
func (r *ProductRepository) Create(ctx context.Context, np NewProduct) (Product, error) {
	if err := validate(&np.Name, &np.Price, &np.Stock); err != nil {
		return Product{}, err
	}
	p := Product{Name: np.Name, Price: np.Price, Stock: np.Stock}
	err := r.write(ctx, "create product", func(tx *sql.Tx) error {
		return tx.QueryRowContext(ctx, `INSERT INTO products (name, price, stock) VALUES ($1, $2, $3) RETURNING id`,
			np.Name, np.Price, np.Stock).Scan(&p.ID)
	}, func() int64 { return p.ID })
	if err != nil {
		return Product{}, err
	}
	return p, nil
}

// Update changes the fields patch sets and returns the product as
// committed. An empty patch is a *ValidationError.
func (r *ProductRepository) Update(ctx context.Context, id int64, patch ProductPatch) (Product, error) {
	if patch.Name == nil && patch.Price == nil && patch.Stock == nil {
		return Product{}, &ValidationError{Field: "body", Reason: "nothing to update: give name, price or stock"}
	}
	if err := validate(patch.Name, patch.Price, patch.Stock); err != nil {
		return Product{}, err
	}
	var p Product
	err := r.write(ctx, "update product "+cacheKey(id), func(tx *sql.Tx) error {
		// One statement here; the transaction is where more of the same
		// change would go (a price history row, an outbox message).
		return tx.QueryRowContext(ctx, `UPDATE products
			SET name = COALESCE($2, name), price = COALESCE($3, price), stock = COALESCE($4, stock)
			WHERE id = $1
			RETURNING id, name, price, stock`,
			id, patch.Name, patch.Price, patch.Stock).Scan(&p.ID, &p.Name, &p.Price, &p.Stock)
	}, func() int64 { return id })
	if err != nil {
		return Product{}, err
	}
	return p, nil
}

// Delete removes product id.
func (r *ProductRepository) Delete(ctx context.Context, id int64) error {
	return r.write(ctx, "delete product "+cacheKey(id), func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM products WHERE id = $1`, id)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err == nil && n == 0 {
			return sql.ErrNoRows
		}
		return err
	}, func() int64 { return id })
}

// write runs change in a transaction, commits it, and then invalidates the
// product whose id changed reports. sql.ErrNoRows from change means no such
// product: nothing was written, so nothing is invalidated.
//
// If Commit fails, the outcome is unknown (the commit may have landed
// before the connection broke), so the product is invalidated anyway: a
// delete from the cache is always safe, the next read loads whatever the
// database holds.
func (r *ProductRepository) write(ctx context.Context, op string, change func(*sql.Tx) error, changed func() int64) error {
	tx, err := r.db.BeginTx(ctx, nil)
	if err != nil {
		return &DatabaseError{Op: op, Err: err}
	}
	defer tx.Rollback() // a no-op after Commit
	r.queries.Add(1)
	if err := change(tx); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return ErrProductNotFound
		}
		return &DatabaseError{Op: op, Err: err}
	}
	err = tx.Commit()
	r.invalidate(ctx, changed())
	if err != nil {
		return &DatabaseError{Op: op + ": commit", Err: err}
	}
	return nil
}

// invalidate deletes product id from the cache, in Redis and in every
// replica's L1, after a change to it was committed.
//
// Why Delete and not Set: two updates of one product can commit in one
// order and reach Redis in the other; a Set of the older row would then
// stay cached until it expires. Deletes have no order to lose, and the next
// read loads the row once, cluster-wide.
//
// It runs detached from the request's context: the change is in the
// database whether or not the client is still waiting, so the cache must
// hear of it either way.
//
// A failure is logged and counted, never returned. The database holds the
// change, so the write has succeeded; reporting it as failed would make the
// client retry a change that already happened (a create would be made
// twice). What the failure leaves behind is bounded, by what the library
// promises of a failed Delete: this replica's L1 drops the key whatever the
// outcome; a delete that reached Redis after all (a timeout, a lost reply)
// carries its invalidation with it, and every replica drops the key when it
// lands; while Redis is unreachable for everyone, every replica stops
// serving L1 within MaxStaleness (its bus cannot prove it would hear
// invalidations) and clears it when Redis is back. What remains is the old
// row in Redis, and in the L1 of replicas that Redis still reaches when only
// this one was cut off: it may be served until it expires, at most
// Options.TTL (5 minutes here) after it was cached. A service that cannot
// accept that retries the invalidation, for example from an outbox table
// written in the same transaction.
func (r *ProductRepository) invalidate(ctx context.Context, id int64) {
	ctx = context.WithoutCancel(ctx)
	key := cacheKey(id)
	err := r.cache.Delete(ctx, key)
	if errors.Is(err, tiered.ErrFenced) {
		// Refused before anything was written, because an earlier write
		// of this cache failed on its way: retrying is safe.
		err = r.cache.Delete(ctx, key)
	}
	if err != nil {
		r.cacheWriteFailures.Add(1)
		r.logger.WarnContext(ctx, "cache invalidation failed after commit; the old row may be served until it expires",
			"product", id, "err", err)
	}
}

// validate checks the fields given (nil ones are not set).
func validate(name *string, price, stock *int64) error {
	if name != nil {
		switch {
		case strings.TrimSpace(*name) == "":
			return &ValidationError{Field: "name", Reason: "must not be empty"}
		case len(*name) > maxNameLen:
			return &ValidationError{Field: "name", Reason: fmt.Sprintf("longer than %d bytes", maxNameLen)}
		case !utf8.ValidString(*name):
			return &ValidationError{Field: "name", Reason: "not valid UTF-8"}
		case strings.ContainsRune(*name, 0):
			// PostgreSQL's text cannot hold NUL; refused here, the same on
			// every database, rather than as a failed write.
			return &ValidationError{Field: "name", Reason: "must not contain NUL"}
		}
	}
	if price != nil && *price < 0 {
		return &ValidationError{Field: "price", Reason: "must not be negative"}
	}
	if stock != nil && *stock < 0 {
		return &ValidationError{Field: "stock", Reason: "must not be negative"}
	}
	return nil
}
