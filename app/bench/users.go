package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// maxLoginWait is the longest rate_limited wait a setup login sits out;
// a longer one (the registrations-per-address limit) fails the run.
const maxLoginWait = 5 * time.Second

// connectOpts says how a bench connection joins.
type connectOpts struct {
	watch  bool // receive im/presence (false: ?presence=0)
	onPush func(path, body []byte, size int)
}

// connector opens logged-in connections for bench users: it resumes a
// remembered session when there is one and logs in (hashing) otherwise.
type connector struct {
	o      *Options
	sess   *sessions
	logins atomic.Int64 // password logins done
	resume atomic.Int64 // sessions resumed
}

func newConnector(o *Options) *connector {
	return &connector{o: o, sess: loadSessions(o.SessionFile, o.URLs)}
}

// target is the address to dial on node for a connection that resumes sid
// ("": none) and does or does not follow presence.
func (k *connector) target(node, sid string, watch bool) string {
	q := url.Values{}
	if sid != "" {
		q.Set("sid", sid)
	}
	if !watch {
		q.Set("presence", "0")
	}
	if len(q) == 0 {
		return node
	}
	return node + "?" + q.Encode()
}

// connect opens connection number slot as nick, logged in, on the slot's
// node (Options.Node) from the slot's source address.
func (k *connector) connect(ctx context.Context, slot int, nick string, co connectOpts) (*client, user, error) {
	node := k.o.Node(slot)
	if sid := k.sess.get(node, nick); sid != "" {
		c, err := dial(ctx, k.target(node, sid, co.watch), k.o.source(slot), co.onPush)
		if err != nil {
			return nil, user{}, err
		}
		body, err := c.call("im/signer", nil, 30*time.Second)
		if err != nil {
			c.close()
			return nil, user{}, err
		}
		var r struct {
			User *struct {
				ID int64 `json:"id"`
			} `json:"user"`
		}
		if json.Unmarshal(body, &r) == nil && r.User != nil {
			k.resume.Add(1)
			return c, user{nick: nick, id: r.User.ID, sid: sid}, nil
		}
		c.close() // the session is gone: log in again
	}
	c, err := dial(ctx, k.target(node, "", co.watch), k.o.source(slot), co.onPush)
	if err != nil {
		return nil, user{}, err
	}
	u, err := k.login(ctx, c, node, nick)
	if err != nil {
		c.close()
		return nil, user{}, err
	}
	return c, u, nil
}

// login logs in on c, a connection to node, waiting out rate_limited
// replies.
func (k *connector) login(ctx context.Context, c *client, node, nick string) (user, error) {
	req, _ := json.Marshal(map[string]string{"nickname": nick, "password": k.o.Password})
	for {
		body, err := c.call("im/login", req, 60*time.Second)
		var ae *apiError
		if errors.As(err, &ae) && ae.Code == "rate_limited" {
			wait := time.Duration(max(ae.RetryAfterMS, 50)) * time.Millisecond
			if wait > maxLoginWait {
				return user{}, fmt.Errorf("login %s: the server asks to wait %s (%s); raise its limits for bench runs "+
					"(README, Performance)", nick, wait.Round(time.Second), ae.Message)
			}
			select {
			case <-time.After(wait):
				continue
			case <-ctx.Done():
				return user{}, ctx.Err()
			}
		}
		if err != nil {
			return user{}, fmt.Errorf("login %s: %w", nick, err)
		}
		var r struct {
			User struct {
				ID int64 `json:"id"`
			} `json:"user"`
			SID string `json:"sid"`
		}
		if err := json.Unmarshal(body, &r); err != nil {
			return user{}, err
		}
		k.logins.Add(1)
		k.sess.put(node, nick, r.SID)
		return user{nick: nick, id: r.User.ID, sid: r.SID}, nil
	}
}

// connectMany opens n connections (nickname nick(i)) with Options.Logins at
// a time, calling each's onPush from co(i). Connection i is slot first+i
// of the run's spread over the nodes and source addresses: a workload
// numbers all its connections, of every kind, one after another, so that
// each kind is spread evenly. The first error stops it and closes what it
// opened.
func (k *connector) connectMany(ctx context.Context, n, first int, nick func(int) string, co func(int) connectOpts) ([]*client, []user, error) {
	clients, users, failed, err := k.tryConnectMany(ctx, n, first, nick, co, nil, false)
	if failed > 0 {
		closeAll(clients)
		return nil, nil, err
	}
	return clients, users, nil
}

// tryConnectMany is connectMany that, with tolerate, goes on past errors
// (their clients are nil) and reports how many failed and the first error.
// limit, when set, paces the connection attempts.
func (k *connector) tryConnectMany(ctx context.Context, n, first int, nick func(int) string, co func(int) connectOpts,
	limit *rate.Limiter, tolerate bool) ([]*client, []user, int, error) {
	clients := make([]*client, n)
	users := make([]user, n)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
		failed   atomic.Int64
		next     atomic.Int64
		done     atomic.Int64
	)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stopProgress := k.o.progressEvery(2*time.Second, func() string {
		return fmt.Sprintf("connected %d/%d (%d resumed, %d logins, %d failed)", done.Load(), n, k.resume.Load(),
			k.logins.Load(), failed.Load())
	})
	defer stopProgress()
	for w := 0; w < k.o.Logins; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				if limit != nil && limit.Wait(ctx) != nil {
					return
				}
				c, u, err := k.connect(ctx, first+i, nick(i), co(i))
				if err != nil {
					failed.Add(1)
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("connection %d: %w", i, err)
					}
					mu.Unlock()
					if !tolerate {
						cancel()
						return
					}
					continue
				}
				clients[i], users[i] = c, u
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	if err := k.sess.save(); err != nil {
		k.o.progress("could not save sessions: %v", err)
	}
	if firstErr == nil && int(done.Load()) < n {
		firstErr = ctx.Err()
		failed.Store(int64(n) - done.Load())
	}
	return clients, users, int(failed.Load()), firstErr
}

// closeAll closes the clients in parallel.
func closeAll(clients []*client) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for _, c := range clients {
		if c == nil {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			c.close()
			<-sem
		}()
	}
	wg.Wait()
}
