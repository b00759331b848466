package cluster

// Kill stops c's loops and its Redis client without leaving the live
// nodes, as a process killed with SIGKILL would: its heartbeat, mirror and
// counts stay in Redis until they expire or the others drop them.
func Kill(c *Cluster) {
	c.stopOnce.Do(func() { close(c.stop) })
	c.wg.Wait()
	_ = c.rdb.Close()
}

// Others lists the live nodes c knows, itself excluded.
func Others(c *Cluster) []string { return c.pres.others() }
