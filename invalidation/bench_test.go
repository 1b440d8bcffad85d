package invalidation

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/internal/redistest"
)

// The benchmarks measure propagation: the time from just before a node
// encodes an invalidation to the moment another node's handler runs. Each
// scenario runs for a fixed time whatever b.N is (so the framework settles on
// b.N = 1 and ns/op is the scenario's length), paces its publishers with a
// ticker, and reports exact percentiles over every message received. All
// nodes share one process and one redis-server, so on a small machine they
// compete for the same cores; BenchmarkBaselineGoRedis gives the floor.

// lagHandler records, for each message, now minus the send time carried in
// its first key. Only its bus's receive loop calls Invalidate, and samples
// is read after the bus is closed, so it needs no lock.
type lagHandler struct {
	samples []int64
	keys    int
}

func (h *lagHandler) Invalidate(keys []string) {
	now := time.Now().UnixNano()
	sent, err := strconv.ParseInt(keys[0], 10, 64)
	if err != nil {
		panic(err)
	}
	h.samples = append(h.samples, now-sent)
	h.keys += len(keys)
}

func (h *lagHandler) InvalidateAll() {}

type scenario struct {
	nodes       int
	keysPerSec  int // across all nodes
	keysPerMsg  int
	duration    time.Duration
	channelName string
}

type result struct {
	p50, p99, max time.Duration
	messages      int // received, over all receivers
	lost          int // expected minus received
	fullClears    uint64
	sentKeysPerS  float64
}

func runScenario(b *testing.B, s *redistest.Server, sc scenario) result {
	b.Helper()
	buses := make([]*Bus, sc.nodes)
	handlers := make([]*lagHandler, sc.nodes)
	clients := make([]*redis.Client, sc.nodes)
	for i := range buses {
		clients[i] = s.Client(b)
		bus, err := New(context.Background(), Options{Redis: clients[i], Channel: sc.channelName})
		if err != nil {
			b.Fatalf("New: %v", err)
		}
		buses[i] = bus
		handlers[i] = &lagHandler{samples: make([]int64, 0, sc.keysPerSec*int(sc.duration/time.Second+1)/sc.keysPerMsg)}
		if _, err := bus.Register("ns", handlers[i]); err != nil {
			b.Fatal(err)
		}
	}
	defer func() {
		for _, bus := range buses {
			_ = bus.Close()
		}
	}()
	waitFor(b, "every bus usable", func() bool {
		for _, bus := range buses {
			if !bus.Usable() {
				return false
			}
		}
		return true
	})

	// Each node publishes its share of the messages.
	msgsPerSecPerNode := float64(sc.keysPerSec) / float64(sc.keysPerMsg) / float64(sc.nodes)
	sent := make([]int, sc.nodes)
	var wg sync.WaitGroup
	start := time.Now()
	for i, bus := range buses {
		keys := make([]string, sc.keysPerMsg)
		encode := func() []byte {
			at := strconv.FormatInt(time.Now().UnixNano(), 10)
			for k := range keys {
				keys[k] = at
			}
			return bus.Message("ns", OpDelete, keys)
		}
		wg.Go(func() {
			sent[i] = publishPaced(clients[i], bus.Channel(), msgsPerSecPerNode, start, sc.duration, encode)
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	total := 0
	for _, n := range sent {
		total += n
	}
	var st []Stats
	received := func() int {
		st = st[:0]
		n := 0
		for _, bus := range buses {
			s := bus.Stats()
			st = append(st, s)
			n += int(s.Received)
		}
		return n
	}
	want := total * (sc.nodes - 1)
	// Wait (bounded) for the backlog to drain; a lost message shows as lost.
	deadline := time.Now().Add(5 * time.Second)
	for received() < want && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond) // poll interval, not synchronization
	}
	for _, bus := range buses {
		_ = bus.Close() // after this, handlers are not written
	}
	r := result{sentKeysPerS: float64(total*sc.keysPerMsg) / elapsed.Seconds()}
	var all []int64
	for i, h := range handlers {
		all = append(all, h.samples...)
		r.fullClears += st[i].FullClears
	}
	r.messages = len(all)
	r.lost = want - len(all)
	if len(all) == 0 {
		b.Fatalf("no message received")
	}
	slices.Sort(all)
	r.p50 = time.Duration(all[len(all)*50/100])
	r.p99 = time.Duration(all[len(all)*99/100])
	r.max = time.Duration(all[len(all)-1])
	return r
}

// publishPaced publishes msgsPerSec messages made by encode until start+d,
// and returns how many it published. A ticker paces it, at most every
// millisecond; a tick that finds several messages due sends them in one
// pipeline.
func publishPaced(c *redis.Client, channel string, msgsPerSec float64, start time.Time, d time.Duration, encode func() []byte) int {
	ctx := context.Background()
	t := time.NewTicker(max(time.Millisecond, time.Duration(float64(time.Second)/msgsPerSec)))
	defer t.Stop()
	sent := 0
	for now := range t.C {
		el := now.Sub(start)
		if el >= d {
			return sent
		}
		due := int(el.Seconds()*msgsPerSec) - sent
		if due <= 0 {
			continue
		}
		_, _ = c.Pipelined(ctx, func(p redis.Pipeliner) error {
			for range due {
				p.Publish(ctx, channel, encode())
			}
			return nil
		})
		sent += due
	}
	return sent
}

func (r result) report(b *testing.B) {
	b.ReportMetric(float64(r.p50)/1e3, "p50-µs")
	b.ReportMetric(float64(r.p99)/1e3, "p99-µs")
	b.ReportMetric(float64(r.max)/1e3, "max-µs")
	b.ReportMetric(r.sentKeysPerS, "keys/s")
	b.ReportMetric(float64(r.lost), "lost")
	b.ReportMetric(float64(r.fullClears), "clears")
}

// BenchmarkPropagation runs each scenario on buses (impl=bus), then on plain
// go-redis subscribers (impl=go-redis), back to back, so that both see
// the same machine.
func BenchmarkPropagation(b *testing.B) {
	s := redistest.Real(b)
	for _, nodes := range []int{8, 16} {
		for _, rate := range []int{1000, 5000, 20000} {
			name := fmt.Sprintf("nodes=%d/keys_per_s=%d", nodes, rate)
			b.Run(name+"/impl=bus", func(b *testing.B) {
				runScenario(b, s, scenario{nodes: nodes, keysPerSec: rate, keysPerMsg: 1, duration: 2 * time.Second,
					channelName: "bench:" + name}).report(b)
			})
			b.Run(name+"/impl=go-redis", func(b *testing.B) {
				baseline(b, s, nodes, rate, 2*time.Second)
			})
		}
	}
}

// BenchmarkBatching compares 1, 10 and 100 keys per message at one key rate.
func BenchmarkBatching(b *testing.B) {
	s := redistest.Real(b)
	for _, per := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("nodes=8/keys_per_s=20000/keys_per_msg=%d", per), func(b *testing.B) {
			runScenario(b, s, scenario{nodes: 8, keysPerSec: 20000, keysPerMsg: per, duration: 2 * time.Second,
				channelName: fmt.Sprintf("batch:%d", per)}).report(b)
		})
	}
}

// BenchmarkMaxRate doubles the per-node rate of single-key messages with 8
// nodes until p99 passes 5 ms or messages go missing, and reports the last
// rate that held.
func BenchmarkMaxRate(b *testing.B) {
	s := redistest.Real(b)
	const nodes = 8
	best := 0
	var at result
	for perNode := 250; perNode <= 64000; perNode *= 2 {
		r := runScenario(b, s, scenario{nodes: nodes, keysPerSec: perNode * nodes, keysPerMsg: 1, duration: 1500 * time.Millisecond,
			channelName: fmt.Sprintf("max:%d", perNode)})
		b.Logf("%d keys/s per node (%d total): p50 %v p99 %v max %v lost %d", perNode, perNode*nodes, r.p50, r.p99, r.max, r.lost)
		if r.p99 > 5*time.Millisecond || r.lost > 0 || r.sentKeysPerS < 0.9*float64(perNode*nodes) {
			break
		}
		best, at = perNode, r
	}
	b.ReportMetric(float64(best), "max-keys/s/node")
	b.ReportMetric(float64(best*nodes), "max-keys/s-total")
	b.ReportMetric(float64(at.p99)/1e3, "p99-µs-at-max")
}

// baseline runs the propagation scenario with plain go-redis subscribers (a
// ReceiveTimeout loop each, no bus) and a send time as the payload: the floor
// that Redis, go-redis and the machine set under the bus.
func baseline(b *testing.B, s *redistest.Server, nodes, rate int, d time.Duration) {
	ctx := context.Background()
	channel := fmt.Sprintf("baseline:%d:%d", nodes, rate)
	samples := make([][]int64, nodes)
	var received atomic.Int64
	subs := make([]*redis.PubSub, nodes)
	var recv sync.WaitGroup
	for i := range nodes {
		ps := s.Client(b).Subscribe(ctx, channel)
		if _, err := ps.Receive(ctx); err != nil {
			b.Fatal(err)
		}
		subs[i] = ps
		me := "/" + strconv.Itoa(i)
		recv.Go(func() {
			for {
				m, err := ps.ReceiveTimeout(ctx, time.Minute)
				if err != nil {
					return // closed
				}
				msg, ok := m.(*redis.Message)
				if !ok || strings.HasSuffix(msg.Payload, me) {
					continue // own messages are skipped, as the bus does
				}
				at, _, _ := strings.Cut(msg.Payload, "/")
				sent, _ := strconv.ParseInt(at, 10, 64)
				samples[i] = append(samples[i], time.Now().UnixNano()-sent)
				received.Add(1)
			}
		})
	}
	var pub sync.WaitGroup
	var want atomic.Int64
	start := time.Now()
	for i := range nodes {
		c := s.Client(b)
		me := "/" + strconv.Itoa(i)
		pub.Go(func() {
			n := publishPaced(c, channel, float64(rate)/float64(nodes), start, d, func() []byte {
				return []byte(strconv.FormatInt(time.Now().UnixNano(), 10) + me)
			})
			want.Add(int64(n * (nodes - 1)))
		})
	}
	pub.Wait()
	deadline := time.Now().Add(5 * time.Second)
	for received.Load() < want.Load() && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond) // poll interval, not synchronization
	}
	for _, ps := range subs {
		_ = ps.Close()
	}
	recv.Wait()
	var all []int64
	for _, x := range samples {
		all = append(all, x...)
	}
	if len(all) == 0 {
		b.Fatal("no message received")
	}
	slices.Sort(all)
	b.ReportMetric(float64(all[len(all)/2])/1e3, "p50-µs")
	b.ReportMetric(float64(all[len(all)*99/100])/1e3, "p99-µs")
	b.ReportMetric(float64(all[len(all)-1])/1e3, "max-µs")
}

// BenchmarkReceive measures the bus's own work per message, without Redis:
// decode, peer sequence tracking, lag histogram, fan-out to two handlers.
func BenchmarkReceive(b *testing.B) {
	bus := &Bus{start: time.Now(), nodeID: string(make([]byte, nodeIDLen)), kick: make(chan struct{}, 1), handlers: map[string][]*Registration{}}
	for range 2 {
		if _, err := bus.Register("ns", nopHandler{}); err != nil {
			b.Fatal(err)
		}
	}
	payloads := make([]string, 1024)
	for i := range payloads {
		payloads[i] = string(appendMessage(nil, &message{op: OpDelete, origin: testOrigin, seq: uint64(i + 1),
			sent: time.Now().UnixNano(), namespace: "ns", keys: []string{"product:12345"}}))
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		bus.receive(payloads[i%len(payloads)])
		i++
	}
}

type nopHandler struct{}

func (nopHandler) Invalidate([]string) {}
func (nopHandler) InvalidateAll()      {}
