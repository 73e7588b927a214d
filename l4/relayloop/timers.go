//go:build linux

package relayloop

// timers holds the deadlines of a loop's flows that have a timeout (the
// idle timeout, or the connect timeout while connecting) in a binary
// min-heap, so the sweep looks only at flows that are due: O(expiring),
// not a walk over every flow. A flow that moved bytes since it was
// scheduled is found not yet due when its entry comes up and is scheduled
// again at its real deadline: at most one look per idle period.
//
// It is hand-written rather than container/heap, whose Push and Pop take
// an interface value: boxing an entry would allocate on every connection.
// Only the loop's goroutine uses it.
type timers struct {
	items []timerEntry
	pos   []int32 // by flow id: index in items + 1; 0 when not scheduled
}

type timerEntry struct {
	at int64 // unix nanos
	f  *Flow
}

// index returns f's position in items, or -1.
func (t *timers) index(f *Flow) int {
	if int(f.id) >= len(t.pos) {
		return -1
	}
	return int(t.pos[f.id]) - 1
}

// schedule sets f's deadline, adding f if it is not scheduled.
func (t *timers) schedule(f *Flow, at int64) {
	if i := t.index(f); i >= 0 {
		t.items[i].at = at
		t.down(t.up(i))
		return
	}
	for int(f.id) >= len(t.pos) {
		t.pos = append(t.pos, 0)
	}
	t.items = append(t.items, timerEntry{at, f})
	t.up(len(t.items) - 1)
}

// cancel removes f if it is scheduled.
func (t *timers) cancel(f *Flow) {
	i := t.index(f)
	if i < 0 {
		return
	}
	last := len(t.items) - 1
	t.swap(i, last)
	t.pos[f.id] = 0
	t.items[last] = timerEntry{}
	t.items = t.items[:last]
	if i < last {
		t.down(t.up(i))
	}
}

// popDue removes and returns the flow with the earliest deadline if it is
// at or before now, else nil.
func (t *timers) popDue(now int64) *Flow {
	if len(t.items) == 0 || t.items[0].at > now {
		return nil
	}
	f := t.items[0].f
	t.cancel(f)
	return f
}

// next returns the earliest deadline, if any flow is scheduled.
func (t *timers) next() (at int64, ok bool) {
	if len(t.items) == 0 {
		return 0, false
	}
	return t.items[0].at, true
}

func (t *timers) swap(i, j int) {
	t.items[i], t.items[j] = t.items[j], t.items[i]
	t.pos[t.items[i].f.id] = int32(i + 1)
	t.pos[t.items[j].f.id] = int32(j + 1)
}

// up moves entry i towards the root while it is earlier than its parent
// and returns where it ended.
func (t *timers) up(i int) int {
	t.pos[t.items[i].f.id] = int32(i + 1)
	for i > 0 {
		parent := (i - 1) / 2
		if t.items[parent].at <= t.items[i].at {
			break
		}
		t.swap(i, parent)
		i = parent
	}
	return i
}

// down moves entry i towards the leaves while a child is earlier.
func (t *timers) down(i int) {
	for {
		least, l, r := i, 2*i+1, 2*i+2
		if l < len(t.items) && t.items[l].at < t.items[least].at {
			least = l
		}
		if r < len(t.items) && t.items[r].at < t.items[least].at {
			least = r
		}
		if least == i {
			return
		}
		t.swap(i, least)
		i = least
	}
}
