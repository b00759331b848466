package hub

// maxLater is how many requests a connection may have waiting to finish
// (messages waiting for their commit) before its reader stops reading.
const maxLater = 128

// Defer queues finish, a request that completes later, to run after the
// connection's earlier deferred requests, on a goroutine of its own that
// exists only while some are waiting; the frame finish returns (if any) is
// queued for the writer. Defer is called from the connection's reader, and
// blocks it while maxLater requests are unfinished, so a client that sends
// faster than the store commits is slowed by TCP, not buffered without end.
func (c *Conn) Defer(finish func() []byte) {
	c.lmu.Lock()
	for c.laterPending >= maxLater {
		if c.laterRoom == nil {
			c.laterRoom = make(chan struct{})
		}
		room := c.laterRoom
		c.lmu.Unlock()
		<-room
		c.lmu.Lock()
	}
	c.later = append(c.later, finish)
	c.laterPending++
	if !c.laterRunning {
		c.laterRunning = true
		c.laterDone.Add(1)
		go c.runLater()
	}
	c.lmu.Unlock()
}

// runLater finishes deferred requests in order until none is left.
func (c *Conn) runLater() {
	defer c.laterDone.Done()
	for {
		c.lmu.Lock()
		if len(c.later) == 0 {
			c.later, c.laterRunning = nil, false
			c.lmu.Unlock()
			return
		}
		finish := c.later[0]
		c.later[0] = nil
		c.later = c.later[1:]
		c.lmu.Unlock()
		if reply := finish(); reply != nil {
			c.Reply(reply)
		}
		c.lmu.Lock()
		c.laterPending--
		if c.laterRoom != nil {
			close(c.laterRoom)
			c.laterRoom = nil
		}
		c.lmu.Unlock()
	}
}
