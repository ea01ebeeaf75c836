package store_test

import (
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/phext/sq/phext"
	"github.com/phext/sq/store"
)

// changeLog records the changes published to it (copies).
type changeLog struct {
	mu sync.Mutex
	cs []store.Change
}

func (f *changeLog) Publish(c *store.Change) {
	cp := *c
	cp.Text = append([]byte(nil), c.Text...)
	f.mu.Lock()
	f.cs = append(f.cs, cp)
	f.mu.Unlock()
}

func (f *changeLog) all() []store.Change {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]store.Change(nil), f.cs...)
}

// TestFeedCompactAsPut: after a failed log fsync, a phext whose checkpoint
// fails in the repair is logged again from memory as one PUT record with a
// new position (carryFromMemory). Its watchers must hear of that position:
// a compact change carrying the whole document and its checksum. It was
// never published, so a watcher's last position stopped short of a record
// the log holds.
func TestFeedCompactAsPut(t *testing.T) {
	p := openPair(t, store.Options{Durability: store.DurabilityAlways})
	name := []byte("f")
	if _, err := p.victim.Insert(name, c9(1), []byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := p.victim.Insert(name, c9(2), []byte("yz")); err != nil {
		t.Fatal(err)
	}
	feed := &changeLog{}
	head := p.victim.SetFeed(feed)
	p.fs.arm("rename", "victim", syscall.ENOSPC) // the victim's checkpoints fail
	p.fs.armOnce("sync", logMatch, syscall.EIO)  // one transient log fault
	if _, err := p.bystander.Insert([]byte("g"), c9(1), []byte("lost")); err == nil {
		t.Fatal("the injected fsync failure was not reported")
	}
	var got []store.Change
	for range 100 {
		// The repair runs before the bystander's next write is taken.
		p.bystander.Insert([]byte("g"), c9(1), []byte("y"))
		if got = feed.all(); len(got) > 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	want, err := p.victim.AppendGet(nil, name)
	if err != nil {
		t.Fatal(err)
	}
	sum, _ := p.victim.AppendChecksum(nil, name)
	if len(got) != 1 {
		t.Fatalf("published %d changes, want one compact change: %+v", len(got), got)
	}
	g := got[0]
	if g.Op != store.ChangeCompact || g.Phext != "f" || g.Pos <= head || g.Coord != phext.Origin ||
		string(g.Text) != string(want) || g.TextOmitted || !g.HasSum || string(g.Sum[:]) != string(sum) || g.Len != 3 {
		t.Fatalf("change %+v (text %q), want compact above %d with text %q, checksum %s, len 3", g, g.Text, head, want, sum)
	}
}
