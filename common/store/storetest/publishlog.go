package storetest

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"dce/common/model"
)

// publishLog is an after-commit action for the store's writes that
// records what it was called with and checks the contract on each call:
// one call at a time, and only once the change it reports is committed
// (a reader sees its seq).
type publishLog struct {
	t       *testing.T
	db      Engine
	mu      sync.Mutex
	list    []model.Message
	running atomic.Int32
}

func newPublishLog(t *testing.T, db Engine) *publishLog { return &publishLog{t: t, db: db} }

// publish is the action to hand the store.
func (p *publishLog) publish(msg model.Message) {
	if p.running.Add(1) != 1 {
		p.t.Errorf("published called for seq %d while another call was running", msg.Seq)
	}
	defer p.running.Add(-1)
	if last, err := p.db.LastSeq(context.Background()); err != nil || last < msg.Seq {
		p.t.Errorf("published called for seq %d before its commit: the last committed seq is %d (%v)", msg.Seq, last, err)
	}
	p.mu.Lock()
	p.list = append(p.list, msg)
	p.mu.Unlock()
}

// has reports whether a published message matches.
func (p *publishLog) has(match func(model.Message) bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.ContainsFunc(p.list, match)
}

// messages is a copy of what was published so far, in call order.
func (p *publishLog) messages() []model.Message {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.list)
}
