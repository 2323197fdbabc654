package h2

import (
	"sync"
	"time"
)

// workers runs the Server's stream handlers on goroutines kept from one
// stream to the next. A new goroutine starts on a small stack and grows it
// by copying as the handler's layers go deeper: 8% of a busy server
// proxy's CPU samples were runtime.newstack. A kept goroutine has its
// stack grown already. A handler that finds no idle worker starts a new
// one, which is kept in its turn; a worker idle for workerIdle ends, so
// the workers left after a burst go with it, and all end once the Server
// is shut down.
type workers struct {
	jobs     chan streamJob // unbuffered: a send succeeds only to an idle worker
	done     chan struct{}  // closed by stop
	stopOnce sync.Once
}

type streamJob struct {
	sc *serverConn
	st *stream
}

const workerIdle = 10 * time.Second

func newWorkers() *workers {
	return &workers{jobs: make(chan streamJob), done: make(chan struct{})}
}

// stop ends the idle workers, and each busy one when its handler returns.
func (w *workers) stop() { w.stopOnce.Do(func() { close(w.done) }) }

// start runs sc.serve(st) on an idle worker, or on a new one.
func (w *workers) start(j streamJob) {
	select {
	case w.jobs <- j:
	default:
		go w.work(j)
	}
}

func (w *workers) work(j streamJob) {
	j.sc.serve(j.st)
	idle := time.NewTimer(workerIdle)
	defer idle.Stop()
	for {
		select {
		case j := <-w.jobs:
			j.sc.serve(j.st)
			idle.Reset(workerIdle)
		case <-idle.C:
			return
		case <-w.done:
			return
		}
	}
}
