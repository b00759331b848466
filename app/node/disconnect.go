package node

// CloseCode is why a connection is closed, as a WebSocket close frame
// carries it (PROTOCOL.md section 1). Stream transports have no close
// frame: they just close.
type CloseCode uint16

// The close codes the server sends.
const (
	CloseGoingAway     CloseCode = 1001 // the server is shutting down
	CloseInvalidUTF8   CloseCode = 1007 // a text message that is not UTF-8
	ClosePolicy        CloseCode = 1008 // too many bad frames, a sid past the anonymous cap
	CloseTooLarge      CloseCode = 1009 // a frame over the size limit
	CloseInternal      CloseCode = 1011 // the server failed
	CloseKicked        CloseCode = 4001 // an admin kicked the user; the client may reconnect
	CloseTooSlow       CloseCode = 4008 // the send queue overflowed; the client may reconnect
	CloseBanned        CloseCode = 4503 // the user is banned; the client does not reconnect
	CloseOverConnLimit CloseCode = 4509 // over a connection cap; the client does not reconnect
)

// Disconnect is an error that ends a connection: the close code and the
// reason its client is told. A service returns it where it would return
// any error, and the transport that must close finds it with errors.As.
// Err, when set, is what a request that met it is answered with: a banned
// user's im/resume is answered forbidden and the connection stays, while
// the same refusal of the sid a connection opened with closes it with
// 4503. AsError finds Err through Unwrap.
type Disconnect struct {
	Code   CloseCode
	Reason string // at most 123 bytes reach the client (RFC 6455)
	Err    *Error
}

// NewDisconnect is the Disconnect with code for the refusal e; its reason
// is e's message.
func NewDisconnect(code CloseCode, e *Error) *Disconnect {
	return &Disconnect{Code: code, Reason: e.Message, Err: e}
}

// Error is the reason, as people read it.
func (d *Disconnect) Error() string { return d.Reason }

// Unwrap is Err, for AsError.
func (d *Disconnect) Unwrap() error {
	if d.Err == nil {
		return nil // not a nil *Error in a non-nil interface
	}
	return d.Err
}
