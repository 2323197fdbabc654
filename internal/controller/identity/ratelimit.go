package identity

import (
	"context"
	"sync"
	"time"

	"golang.org/x/time/rate"
	"k8s.io/apimachinery/pkg/util/cache"

	"github.com/skeinmesh/skein/internal/controller/clientip"
)

// Defaults of the per-client rate limit on Certify. A proxy calls Certify
// once at start and then once per renewal; a client past this is sending
// tokens it hopes will pass, and each could cost a TokenReview.
const (
	DefaultCertifyRate  = 5  // requests per second, per client IP
	DefaultCertifyBurst = 20 // requests at once, per client IP
)

// limiterCacheSize bounds the clients whose buckets are remembered; a
// client forgotten (the least recently seen, or idle for limiterIdle)
// starts again with a full bucket.
const (
	limiterCacheSize = 10000
	limiterIdle      = 10 * time.Minute
)

// peerLimiter is a token bucket per client IP address.
type peerLimiter struct {
	rate  rate.Limit
	burst int

	mu      sync.Mutex // makes get-or-create atomic
	buckets *cache.LRUExpireCache
}

func newPeerLimiter(r float64, burst int) *peerLimiter {
	return &peerLimiter{rate: rate.Limit(r), burst: burst, buckets: cache.NewLRUExpireCache(limiterCacheSize)}
}

// allow takes a token from the bucket of ctx's client.
func (p *peerLimiter) allow(ctx context.Context) bool {
	key := clientip.FromContext(ctx)
	p.mu.Lock()
	var l *rate.Limiter
	if v, ok := p.buckets.Get(key); ok {
		l = v.(*rate.Limiter)
	} else {
		l = rate.NewLimiter(p.rate, p.burst)
	}
	p.buckets.Add(key, l, limiterIdle)
	p.mu.Unlock()
	return l.Allow()
}
