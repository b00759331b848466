package transport

import "net"

// SendBufferListener sets the kernel send buffer (SO_SNDBUF) of every
// connection ln accepts to bytes; 0 leaves the kernel's autotuning. Left
// alone, Linux grows a socket's send buffer up to net.ipv4.tcp_wmem's
// maximum (4 MiB by default), so a reader that stops reading can park that
// much in the kernel before its writer blocks and its send queue starts to
// fill; with a bound, a stalled reader reaches its queue limit (and is
// closed with 4008) after that many bytes instead.
func SendBufferListener(ln net.Listener, bytes int) net.Listener {
	if bytes <= 0 {
		return ln
	}
	return sendBufferListener{Listener: ln, bytes: bytes}
}

type sendBufferListener struct {
	net.Listener
	bytes int
}

func (l sendBufferListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(l.bytes)
	}
	return c, err
}
