package authorize

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// logInterval is how often at most one kind of line (per Server) is
// logged.
const logInterval = 10 * time.Second

// maxLogKeys bounds the keys rateLog remembers; keys are Server names
// from the controller's configuration, never from a request, so this is
// only a backstop.
const maxLogKeys = 4096

// rateLog logs a line per key at most once per interval, and says how
// many it held back since the last one.
type rateLog struct {
	log      *slog.Logger
	interval time.Duration

	mu   sync.Mutex
	keys map[string]*logKey
}

type logKey struct {
	last       time.Time
	suppressed int
}

func newRateLog(log *slog.Logger, interval time.Duration) *rateLog {
	return &rateLog{log: log, interval: interval, keys: make(map[string]*logKey)}
}

func (l *rateLog) info(key, msg string, attrs ...any) { l.emit(slog.LevelInfo, key, msg, attrs) }
func (l *rateLog) warn(key, msg string, attrs ...any) { l.emit(slog.LevelWarn, key, msg, attrs) }

func (l *rateLog) emit(level slog.Level, key, msg string, attrs []any) {
	now := time.Now()
	l.mu.Lock()
	k := l.keys[key]
	if k == nil {
		if len(l.keys) >= maxLogKeys {
			clear(l.keys)
		}
		k = &logKey{}
		l.keys[key] = k
	} else if now.Sub(k.last) < l.interval {
		k.suppressed++
		l.mu.Unlock()
		return
	}
	suppressed := k.suppressed
	k.last, k.suppressed = now, 0
	l.mu.Unlock()
	if suppressed > 0 {
		attrs = append(attrs, "not_logged_since_last", suppressed)
	}
	l.log.Log(context.Background(), level, msg, attrs...)
}
