// Package bench runs tiercache side by side with raw go-redis, raw
// ristretto and peer libraries (go-redis/cache, rueidis client-side
// caching), and prints what it measured as plain-text tables. The
// tierbench command is its front end; see README.md for how to read the
// output.
//
// It is its own module, so users of tiercache never download the libraries
// it compares against.
package bench
