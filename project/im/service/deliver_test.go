package service

import (
	"slices"
	"testing"

	"dce/common/model"
)

// heldBus is a Stored bus that holds some users' connections and records
// what it is asked to deliver.
type heldBus struct {
	held      map[int64]bool
	delivered []int64
}

func (b *heldBus) Deliver(users []int64, _ []byte, _ uint64) {
	b.delivered = append(b.delivered, users...)
}
func (b *heldBus) Broadcast([]byte, uint64, int64) {}
func (b *heldBus) BroadcastPresence([]byte)        {}
func (b *heldBus) Holds(user int64) bool           { return b.held[user] }

// A private message is encoded and delivered only for the parties this
// node holds a connection of: each node follows every stored change, and
// most have no party on it.
func TestDeliverStoredPrivateOnlyToHeldParties(t *testing.T) {
	for _, c := range []struct {
		name string
		held []int64
		want []int64 // views encoded, in order
	}{
		{"neither party here", nil, nil},
		{"the addressee here", []int64{9}, []int64{9}},
		{"the sender here", []int64{7}, []int64{7}},
		{"both here", []int64{7, 9}, []int64{7, 9}},
	} {
		b := &heldBus{held: map[int64]bool{}}
		for _, u := range c.held {
			b.held[u] = true
		}
		s := &Service{Deps: Deps{Stored: b}}
		var views []string
		encode := func(m *model.Message) []byte { views = append(views, m.Conv); return []byte("im/message;{}") }
		msg := model.Message{ID: 1, From: model.User{ID: 7}, ToUser: 9, Key: model.DirectKey(7, 9)}
		s.deliverStored(msg, 0, encode)
		if !slices.Equal(b.delivered, c.want) || len(views) != len(c.want) {
			t.Errorf("%s: delivered to %v with %d encodings (%v), want %v", c.name, b.delivered, len(views), views, c.want)
		}
		for i, u := range c.want {
			if want := msg.Key.ViewFor(u); views[i] != want {
				t.Errorf("%s: user %d got the view %q, want %q", c.name, u, views[i], want)
			}
		}
	}
}
