package tiered

import "sync"

// waiters are the loads of this node that wait on another node's lease,
// by key, each with the channel that wakes it when the bus says the key
// was filled. It is safe for concurrent use.
type waiters struct {
	mu sync.Mutex
	m  map[string][]chan struct{} // guarded by mu
}

func (w *waiters) add(keys []string, wake chan struct{}) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.m == nil {
		w.m = make(map[string][]chan struct{})
	}
	for _, k := range keys {
		w.m[k] = append(w.m[k], wake)
	}
}

func (w *waiters) remove(keys []string, wake chan struct{}) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, k := range keys {
		chs := w.m[k]
		for i, ch := range chs {
			if ch == wake {
				chs = append(chs[:i:i], chs[i+1:]...)
				break
			}
		}
		if len(chs) == 0 {
			delete(w.m, k)
		} else {
			w.m[k] = chs
		}
	}
}

// wake rings the channel of every load waiting on one of keys. It never
// blocks: the bus calls it from its receive loop.
func (w *waiters) wake(keys []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, k := range keys {
		for _, ch := range w.m[k] {
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}
}
