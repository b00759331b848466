package imtest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"dce/app/servertest"
	"dce/common/config"
	"dce/common/model"
)

// l4Reader is one group member's record of the group messages pushed to
// it: each message's push bytes by id.
type l4Reader struct {
	transport string
	self      int64
	mu        sync.Mutex
	bodies    map[int64]string
	dup       int
	other     int // pushes that are not a group message of this group
}

func (r *l4Reader) onPush(f servertest.Frame, conv string) {
	if f.Path != "im/message" {
		return
	}
	var m struct {
		ID   int64  `json:"id"`
		Conv string `json:"conv"`
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if json.Unmarshal(f.Body, &m) != nil || m.Conv != conv {
		r.other++
		return
	}
	if _, seen := r.bodies[m.ID]; seen {
		r.dup++
	}
	r.bodies[m.ID] = string(f.Body)
}

// TestL4GroupMixedTransports (TESTPLAN L4): 50 WebSocket, 50 TCP and 50
// UDP members of one group; 5 senders × 2 msg/s for 30 s. WebSocket and
// TCP members get every message, UDP members at least 99.9 % (each gap
// recoverable by im/load), and every push is the same bytes on every
// transport.
func TestL4GroupMixedTransports(t *testing.T) {
	loadSkipTiming(t)
	const (
		perTransport = 50
		users        = 3 * perTransport
		senders      = 5
		perSec       = 2
		duration     = 30 * time.Second
		perSend      = int(duration / time.Second * perSec)
	)
	// As L2: the disk's occasional fsync stall says nothing of fan-out.
	s := servertest.Start(t, func(c *config.Config) { c.Store.Synchronous = "NORMAL" })
	sids, ids := make([]string, users), make([]int64, users)
	loadParallel(t, users, 8, func(i int) (err error) {
		sids[i], ids[i], err = loadLogin(s, fmt.Sprintf("l4-%d", i))
		return err
	})
	resp, body := s.Post(t, "im/group/create", map[string]any{"name": "l4", "members": ids[1:]}, "Authorization", "Bearer "+sids[0])
	var created struct {
		Group model.Group `json:"group"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &created) != nil || created.Group.Members != users {
		t.Fatalf("create the group: %d %s", resp.StatusCode, body)
	}
	conv := fmt.Sprint("group:", created.Group.ID)

	readers := make([]*l4Reader, users)
	clients := make([]*servertest.Client, users)
	var udpClients []*servertest.Client
	var mu sync.Mutex
	loadParallel(t, users, 8, func(i int) error {
		r := &l4Reader{self: ids[i], bodies: map[int64]string{}}
		readers[i] = r
		onPush := func(f servertest.Frame) { r.onPush(f, conv) }
		var c *servertest.Client
		var err error
		switch i % 3 {
		case 0:
			r.transport = "ws"
			c, err = s.DialWSPushes(t, "presence=0&sid="+sids[i], onPush)
		case 1:
			r.transport = "tcp"
			if c, err = s.DialTCPPushes(t, onPush); err == nil {
				_, err = resumeQuietly(c, sids[i])
			}
		case 2:
			r.transport = "udp"
			c = s.DialUDP(t) // keeps its pushes; read after the run
			_, err = resumeQuietly(c, sids[i])
			mu.Lock()
			udpClients = append(udpClients, c)
			mu.Unlock()
		}
		clients[i] = c
		return err
	})
	servertest.Eventually(t, 20*time.Second, "every member online", func() bool { return s.Hub.Stats().Online == users })

	var ackLatency servertest.Latencies
	var failed atomic.Int64
	acked := make([][]int64, senders)
	var wg sync.WaitGroup
	start := time.Now()
	for k := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := clients[k] // ws, tcp, udp, ws, tcp
			time.Sleep(time.Duration(k) * time.Second / perSec / senders)
			tick := time.NewTicker(time.Second / perSec)
			defer tick.Stop()
			for n := range perSend {
				sent := time.Now()
				f, err := c.Call("im/send", map[string]string{"to": conv, "cid": fmt.Sprintf("l4-%d-%d", k, n),
					"text": fmt.Sprintf("message %d from sender %d", n, k)}, 10*time.Second)
				var r struct {
					ID int64 `json:"id"`
				}
				if err != nil || f.ErrorCode() != "" || json.Unmarshal(f.Body, &r) != nil || r.ID == 0 {
					failed.Add(1)
					t.Errorf("send %d/%d: %v %s", k, n, err, f.Body)
				} else {
					ackLatency.Add(time.Since(sent))
					acked[k] = append(acked[k], r.ID)
				}
				<-tick.C
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	sentBy := map[int64][]int64{}
	var all []int64
	for k := range senders {
		sentBy[ids[k]] = acked[k]
		all = append(all, acked[k]...)
	}
	expect := func(r *l4Reader) []int64 {
		var list []int64
		for _, id := range all {
			if !containsID(sentBy[r.self], id) {
				list = append(list, id)
			}
		}
		return list
	}
	for _, c := range udpClients { // hand the UDP clients' kept pushes to their readers
		for i := range clients {
			if clients[i] == c {
				servertest.Eventually(t, 10*time.Second, "a UDP member's pushes", func() bool {
					for _, f := range c.Pushes() {
						readers[i].onPush(f, conv)
					}
					c.Drain()
					readers[i].mu.Lock()
					defer readers[i].mu.Unlock()
					return len(readers[i].bodies) >= len(expect(readers[i]))*999/1000
				})
			}
		}
	}
	deadline := time.Now().Add(15 * time.Second)
	for _, r := range readers {
		for r.transport != "udp" && time.Now().Before(deadline) {
			r.mu.Lock()
			n := len(r.bodies)
			r.mu.Unlock()
			if n >= len(expect(r)) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	time.Sleep(200 * time.Millisecond) // UDP stragglers
	for i, c := range clients {
		if readers[i].transport == "udp" {
			for _, f := range c.Pushes() {
				readers[i].onPush(f, conv)
			}
		}
	}

	// Count, compare bytes, and recover every UDP gap with im/load.
	want := map[int64]string{} // the bytes every transport must carry
	lost := map[string]int{}
	delivered := map[string]int{}
	var mismatched, dup, other, recovered int
	for i, r := range readers {
		r.mu.Lock()
		dup, other = dup+r.dup, other+r.other
		for _, id := range expect(r) {
			b, ok := r.bodies[id]
			if !ok {
				lost[r.transport]++
				if r.transport == "udp" {
					var page struct {
						Messages []struct {
							ID int64 `json:"id"`
						} `json:"messages"`
					}
					f, err := clients[i].Call("im/load", map[string]any{"with": conv, "after": id - 1, "limit": 1}, 5*time.Second)
					if err == nil && f.ErrorCode() == "" && json.Unmarshal(f.Body, &page) == nil && len(page.Messages) == 1 && page.Messages[0].ID == id {
						recovered++
					}
				}
				continue
			}
			delivered[r.transport]++
			if w, ok := want[id]; !ok {
				want[id] = b
			} else if w != b {
				mismatched++
			}
		}
		r.mu.Unlock()
	}
	expected := map[string]int{}
	for _, r := range readers {
		expected[r.transport] += len(expect(r))
	}
	t.Logf("L4: members=%d (ws/tcp/udp %d each) senders=%d rate=%d/s duration=%v sends=%d acked=%d pushes ws=%d/%d tcp=%d/%d udp=%d/%d (recovered by im/load %d) dup=%d other=%d mismatched=%d ack_p50=%v ack_p99=%v",
		users, perTransport, senders, perSec, elapsed.Round(time.Millisecond), senders*perSend, len(all),
		delivered["ws"], expected["ws"], delivered["tcp"], expected["tcp"], delivered["udp"], expected["udp"], recovered,
		dup, other, mismatched, ackLatency.Percentile(50).Round(10*time.Microsecond), ackLatency.Percentile(99).Round(10*time.Microsecond))
	if len(all) != senders*perSend || failed.Load() != 0 {
		t.Errorf("acked %d of %d sends", len(all), senders*perSend)
	}
	if lost["ws"] != 0 || lost["tcp"] != 0 {
		t.Errorf("lost %d WebSocket and %d TCP pushes, want 0", lost["ws"], lost["tcp"])
	}
	if float64(delivered["udp"]) < 0.999*float64(expected["udp"]) || recovered != lost["udp"] {
		t.Errorf("UDP: %d of %d delivered (want ≥ 99.9 %%), %d of %d gaps recovered by im/load", delivered["udp"], expected["udp"], recovered, lost["udp"])
	}
	if mismatched != 0 || dup != 0 || other != 0 || len(want) != len(all) {
		t.Errorf("%d pushes differ in bytes between readers, %d duplicates, %d stray pushes; %d of %d messages seen", mismatched, dup, other, len(want), len(all))
	}
}

// resumeQuietly resumes sid on c without presence events.
func resumeQuietly(c *servertest.Client, sid string) (servertest.Frame, error) {
	f, err := c.TryRequest("im/resume", map[string]any{"sid": sid, "presence": false}, 10*time.Second) // verifies a UDP address
	if err == nil && f.ErrorCode() != "" {
		err = fmt.Errorf("resume: %s", f)
	}
	return f, err
}

func containsID(list []int64, id int64) bool {
	for _, x := range list {
		if x == id {
			return true
		}
	}
	return false
}
