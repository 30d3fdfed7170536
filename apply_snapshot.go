package litefs

// snapshotSink takes a snapshot's pages in the order they are decoded and,
// in a second goroutine, checksums them and writes them into the staged
// database file: decoding the stream (file checksum, decompression) and
// checksumming and writing the pages run on two cores at once. Pages travel
// in a few reused batches of about 256 KiB, so memory stays flat.
type snapshotSink struct {
	stage    *stagedDB
	pageSize int
	batches  chan *pageBatch
	free     chan *pageBatch
	done     chan struct{}
	cur      *pageBatch
	// Owned by the goroutine until done is closed.
	pages []pageChange
	err   error
}

// pageBatch is a run of consecutive decoded pages.
type pageBatch struct {
	pgnos []uint32
	data  []byte
}

// snapshotBatches is how many batches circulate between the two goroutines.
const snapshotBatches = 4

func newSnapshotSink(stage *stagedDB, commit uint32) *snapshotSink {
	ps := int(stage.pageSize)
	per := max(1, (256<<10)/ps)
	s := &snapshotSink{
		stage: stage, pageSize: ps,
		batches: make(chan *pageBatch, snapshotBatches),
		free:    make(chan *pageBatch, snapshotBatches),
		done:    make(chan struct{}),
		// commit comes from the sender: it only sizes the first allocation.
		pages: make([]pageChange, 0, min(commit, 1<<20)),
	}
	for range snapshotBatches {
		s.free <- &pageBatch{pgnos: make([]uint32, 0, per), data: make([]byte, per*ps)}
	}
	go s.run()
	return s
}

// run checksums and writes each batch, then hands it back. After an error
// it only hands batches back, so the decoding side never blocks.
func (s *snapshotSink) run() {
	defer close(s.done)
	for b := range s.batches {
		for i, pgno := range b.pgnos {
			if s.err != nil {
				break
			}
			data := b.data[i*s.pageSize : (i+1)*s.pageSize]
			s.pages = append(s.pages, pageChange{pgno: pgno, sum: PageChecksum(pgno, data)})
			s.err = s.stage.write(pgno, data)
		}
		b.pgnos = b.pgnos[:0]
		s.free <- b
	}
}

// add queues a copy of page pgno.
func (s *snapshotSink) add(pgno uint32, data []byte) {
	if s.cur == nil {
		s.cur = <-s.free
	}
	n := len(s.cur.pgnos)
	copy(s.cur.data[n*s.pageSize:], data)
	s.cur.pgnos = append(s.cur.pgnos, pgno)
	if len(s.cur.pgnos) == cap(s.cur.pgnos) {
		s.batches <- s.cur
		s.cur = nil
	}
}

// finish waits until every queued page is written and returns the pages'
// checksums and the first error. It must be called exactly once, also on
// error paths, so the goroutine ends.
func (s *snapshotSink) finish() ([]pageChange, error) {
	if s.cur != nil && len(s.cur.pgnos) > 0 {
		s.batches <- s.cur
	}
	s.cur = nil
	close(s.batches)
	<-s.done
	return s.pages, s.err
}
