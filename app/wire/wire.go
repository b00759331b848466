// Package wire is the Dce frame, PATH[:ID][;BODY], as bytes (PROTOCOL.md
// section 1). It knows nothing of nodes, sessions or transports.
package wire

import (
	"encoding/json"
	"errors"
	"strconv"
	"unicode/utf8"
)

// Limits of the frame's parts.
const (
	MaxPath = 64
	MaxID   = 20
	// DefaultMaxFrame is the largest frame accepted unless configured otherwise.
	DefaultMaxFrame = 64 << 10
)

// Parse errors. ErrTooLarge maps to too_large, every other one to bad_frame.
var (
	ErrTooLarge = errors.New("frame is too large")
	ErrEmpty    = errors.New("frame is empty")
	ErrPath     = errors.New("path must be 1-64 characters of [a-z0-9/_-] starting with a letter or digit")
	ErrID       = errors.New("id must be 1-20 characters of [A-Za-z0-9_-]")
	ErrBody     = errors.New("body is not valid JSON")
	ErrUTF8     = errors.New("frame is not valid UTF-8")
)

// emptyBody is what a missing or empty body means.
var emptyBody = []byte("{}")

// Frame is a parsed frame. Of its fields only Body can alias the buffer
// Parse was given:
//   - Path and ID are strings of their own (Parse converts them, which
//     copies): they may be kept as long as wanted.
//   - Body is b[i+1:], the rest of the input after the first ';' (trailing
//     whitespace included), and so shares b's memory: a caller that keeps
//     it, or any slice of it, past the moment b is reused (the transports
//     reuse their read buffers for the next frame) must copy it first.
//     Decoding it (json.Unmarshal into strings and numbers) copies.
//   - When the body is missing or blank, Body is a shared, read-only {}
//     that aliases nothing of b, and must never be written to.
type Frame struct {
	Path string
	ID   string
	Body []byte
}

// HasID reports whether the frame is a request that expects one reply.
func (f Frame) HasID() bool { return f.ID != "" }

// Parse splits b into a frame and validates it: the path and id charsets,
// the size limit, UTF-8, and that the body is JSON. On error the returned
// frame still carries whatever path and id could be read, so the caller can
// address its error reply (and, for ErrUTF8 and ErrBody, the body). The
// frame's Path and ID are copies; its Body is a slice of b (see Frame), so
// b must stay unchanged while the Body is in use. Parse never writes to b.
func Parse(b []byte, maxFrame int) (Frame, error) {
	var f Frame
	if maxFrame > 0 && len(b) > maxFrame {
		f.Path, f.ID = peekHead(b)
		return f, ErrTooLarge
	}
	if len(b) == 0 {
		return f, ErrEmpty
	}
	end := len(b)
	pathEnd := 0
	for pathEnd < end && b[pathEnd] != ':' && b[pathEnd] != ';' {
		pathEnd++
	}
	if !ValidPath(b[:pathEnd]) {
		return f, ErrPath
	}
	f.Path = string(b[:pathEnd])
	i := pathEnd
	if i < end && b[i] == ':' {
		idStart := i + 1
		i = idStart
		for i < end && b[i] != ';' {
			i++
		}
		if !validID(b[idStart:i]) {
			return f, ErrID
		}
		f.ID = string(b[idStart:i])
	}
	if i < end { // b[i] == ';'
		f.Body = b[i+1:]
	}
	if len(f.Body) == 0 || allSpace(f.Body) {
		f.Body = emptyBody
		return f, nil
	}
	if !utf8.Valid(f.Body) {
		return f, ErrUTF8
	}
	if !json.Valid(f.Body) {
		return f, ErrBody
	}
	return f, nil
}

// peekHead reads the path and id of an oversized frame, if they are well
// formed, so that its too_large reply can name them.
func peekHead(b []byte) (path, id string) {
	if len(b) > MaxPath+MaxID+2 {
		b = b[:MaxPath+MaxID+2]
	}
	f, err := Parse(b, 0)
	if err != nil && err != ErrBody && err != ErrUTF8 {
		return "", ""
	}
	return f.Path, f.ID
}

// ValidPath reports whether p is 1-64 characters of [a-z0-9/_-] starting
// with a letter or digit.
func ValidPath(p []byte) bool {
	if len(p) == 0 || len(p) > MaxPath {
		return false
	}
	if !isLowerAlnum(p[0]) {
		return false
	}
	for _, c := range p[1:] {
		if !isLowerAlnum(c) && c != '/' && c != '_' && c != '-' {
			return false
		}
	}
	return true
}

func validID(id []byte) bool {
	if len(id) == 0 || len(id) > MaxID {
		return false
	}
	for _, c := range id {
		if !isLowerAlnum(c) && !(c >= 'A' && c <= 'Z') && c != '_' && c != '-' {
			return false
		}
	}
	return true
}

func isLowerAlnum(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }

func allSpace(b []byte) bool {
	for _, c := range b {
		if c != ' ' && c != '\t' && c != '\r' && c != '\n' {
			return false
		}
	}
	return true
}

// AppendHead appends PATH[:ID]; to dst: a frame without its body.
func AppendHead(dst []byte, path, id string) []byte {
	dst = append(dst, path...)
	if id != "" {
		dst = append(dst, ':')
		dst = append(dst, id...)
	}
	return append(dst, ';')
}

// AppendFrame appends PATH[:ID];BODY to dst. An empty body is written as {}.
func AppendFrame(dst []byte, path, id string, body []byte) []byte {
	dst = AppendHead(dst, path, id)
	if len(body) == 0 {
		body = emptyBody
	}
	return append(dst, body...)
}

// AppendError appends the failure of a request: PATH:ID;{"error":{...}} when
// it had an id, else error;{"path":PATH,"error":{...}}.
func AppendError(dst []byte, path, id, code, message string, retryAfterMS int64) []byte {
	if id != "" {
		return AppendErrorBody(AppendHead(dst, path, id), code, message, retryAfterMS)
	}
	dst = append(dst, `error;{"path":`...)
	dst = strconv.AppendQuote(dst, path) // paths are [a-z0-9/_-]: quoting is JSON-safe
	dst = append(dst, `,"error":`...)
	dst = appendErrorObject(dst, code, message, retryAfterMS)
	return append(dst, '}')
}

// AppendErrorBody appends {"error":{"code":...,"message":...}} to dst: the
// body of an error reply, and of an HTTP error response.
func AppendErrorBody(dst []byte, code, message string, retryAfterMS int64) []byte {
	dst = append(dst, `{"error":`...)
	dst = appendErrorObject(dst, code, message, retryAfterMS)
	return append(dst, '}')
}

func appendErrorObject(dst []byte, code, message string, retryAfterMS int64) []byte {
	dst = append(dst, `{"code":"`...)
	dst = append(dst, code...)
	dst = append(dst, `","message":`...)
	dst = AppendJSONString(dst, message)
	if retryAfterMS > 0 {
		dst = append(dst, `,"retry_after_ms":`...)
		dst = strconv.AppendInt(dst, retryAfterMS, 10)
	}
	return append(dst, '}')
}

// AppendJSONString appends s as a JSON string literal.
func AppendJSONString(dst []byte, s string) []byte {
	b, err := json.Marshal(s)
	if err != nil { // strings always marshal; keep the frame well formed anyway
		return append(dst, `""`...)
	}
	return append(dst, b...)
}
