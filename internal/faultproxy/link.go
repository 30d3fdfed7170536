package faultproxy

import (
	"bytes"
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// dialTimeout bounds the connection to the target.
const dialTimeout = 5 * time.Second

// link is one proxied connection: the client's and the target's.
type link struct {
	p      *Proxy
	client net.Conn
	done   chan struct{} // closed by close

	mu         sync.Mutex
	server     net.Conn // nil until dialled
	closed     bool
	budget     int64  // down bytes still allowed; <0 unlimited
	upBudget   int64  // up bytes still allowed; <0 unlimited
	loseAnswer bool   // cut before the next down byte
	tail       []byte // last up bytes, to match a pattern across reads
}

// chunk is one read of one direction.
type chunk struct {
	data []byte
	at   time.Time
}

// serve runs one accepted connection until either side or a fault ends it.
func (p *Proxy) serve(c net.Conn) {
	defer p.wg.Done()
	l := &link{p: p, client: c, done: make(chan struct{}), upBudget: -1}
	p.mu.Lock()
	if p.closed || p.mode == Cutting {
		if !p.closed {
			p.stats.Cuts++
		}
		p.mu.Unlock()
		c.Close()
		return
	}
	l.budget = p.cutAfter
	p.links[l] = struct{}{}
	p.mu.Unlock()
	defer l.close()

	if !p.gate(true, l.done) { // a blackhole holds the connection here, unconnected
		l.cut()
		return
	}
	s, err := net.DialTimeout("tcp", p.target, dialTimeout)
	if err != nil {
		return
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		s.Close()
		return
	}
	l.server = s
	l.mu.Unlock()

	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); l.pump(true, c, s) }()
	go func() { defer wg.Done(); l.pump(false, s, c) }()
	wg.Wait()
}

// close closes both connections once.
func (l *link) close() { l.closeAs(false) }

// cut closes the link as a fault, counted before the peers can see it.
func (l *link) cut() { l.closeAs(true) }

func (l *link) closeAs(fault bool) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	s := l.server
	l.mu.Unlock()
	if fault {
		l.p.mu.Lock()
		l.p.stats.Cuts++
		l.p.mu.Unlock()
	}
	close(l.done)
	l.client.Close()
	if s != nil {
		s.Close()
	}
	l.p.mu.Lock()
	delete(l.p.links, l)
	l.p.mu.Unlock()
}

func (l *link) setBudget(n int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.budget = n
}

// pump forwards one direction: a reader goroutine queues chunks, this one
// delays them by the latency, waits out a blackhole and applies the cuts.
// The end of file is passed on as a half-close.
func (l *link) pump(up bool, from, to net.Conn) {
	ch := make(chan chunk, queueLen)
	l.p.wg.Add(1)
	go l.read(from, ch)
	for {
		var c chunk
		var ok bool
		select {
		case c, ok = <-ch:
		case <-l.done:
			return
		}
		if !ok {
			if tc, isTCP := to.(*net.TCPConn); isTCP {
				_ = tc.CloseWrite()
			}
			return
		}
		if !l.delay(c.at) {
			return
		}
		if !l.p.gate(up, l.done) {
			l.cut()
			return
		}
		data, cut := l.filter(up, c.data)
		if len(data) > 0 {
			if _, err := to.Write(data); err != nil {
				l.close()
				return
			}
		}
		if cut {
			l.cut()
			return
		}
	}
}

// read queues what from sends; it closes ch at the end of file and closes
// the link on any other error.
func (l *link) read(from net.Conn, ch chan<- chunk) {
	defer l.p.wg.Done()
	for {
		buf := make([]byte, chunkSize)
		n, err := from.Read(buf)
		if n > 0 {
			select {
			case ch <- chunk{data: buf[:n], at: time.Now()}:
			case <-l.done:
				return
			}
		}
		if errors.Is(err, io.EOF) {
			close(ch)
			return
		}
		if err != nil {
			l.close()
			return
		}
	}
}

// delay waits until the latency has passed since at; false if the link
// closed meanwhile.
func (l *link) delay(at time.Time) bool {
	l.p.mu.Lock()
	d := l.p.latency
	l.p.mu.Unlock()
	wait := time.Until(at.Add(d))
	if wait <= 0 {
		return true
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-l.done:
		return false
	}
}

// filter returns the part of data to forward and whether to cut the link
// after it: an up chunk may fire a trigger and spends the request budget;
// a down chunk spends the byte budget and is dropped if its answer is to
// be lost.
func (l *link) filter(up bool, data []byte) ([]byte, bool) {
	if up {
		l.matchTriggers(data)
		l.mu.Lock()
		defer l.mu.Unlock()
		data, cut := spend(&l.upBudget, data)
		if cut {
			l.p.mu.Lock()
			l.p.stats.Truncated++
			l.p.mu.Unlock()
		}
		return data, cut
	}
	l.mu.Lock()
	lose := l.loseAnswer
	cut := false
	if lose {
		data = nil
	} else {
		data, cut = spend(&l.budget, data)
	}
	l.mu.Unlock()
	if lose {
		l.p.mu.Lock()
		l.p.stats.LostAnswers++
		l.p.mu.Unlock()
	}
	return data, cut || lose
}

// spend takes data from a byte budget (<0: unlimited) and reports whether
// the budget ran out before the end of data.
func spend(budget *int64, data []byte) ([]byte, bool) {
	switch {
	case *budget < 0:
		return data, false
	case int64(len(data)) > *budget:
		data = data[:*budget]
		*budget = 0
		return data, true
	}
	*budget -= int64(len(data))
	return data, false
}

// matchTriggers fires the armed triggers whose pattern data (with the end
// of what came before) contains: a lost answer, or a request budget
// counted from the start of data.
func (l *link) matchTriggers(data []byte) {
	l.p.mu.Lock()
	defer l.p.mu.Unlock()
	if len(l.p.triggers) == 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	buf := append(l.tail, data...)
	keep := 0
	for _, tr := range l.p.triggers {
		keep = max(keep, len(tr.pattern)-1)
		if tr.count <= 0 || !bytes.Contains(buf, tr.pattern) {
			continue
		}
		switch {
		case tr.upBytes < 0 && !l.loseAnswer:
			l.loseAnswer = true
		case tr.upBytes >= 0 && l.upBudget < 0:
			l.upBudget = tr.upBytes
		default:
			continue
		}
		tr.count--
	}
	if len(buf) > keep {
		buf = buf[len(buf)-keep:]
	}
	l.tail = append([]byte(nil), buf...)
}
