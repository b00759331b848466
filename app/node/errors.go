package node

import (
	"errors"
	"fmt"
	"net/http"
	"time"
)

// Error codes, PROTOCOL.md section 4. Clients act on these; they never change.
const (
	CodeBadFrame     = "bad_frame"
	CodeBadRequest   = "bad_request"
	CodeUnauthorized = "unauthorized"
	CodeAuthFailed   = "auth_failed"
	CodeForbidden    = "forbidden"
	CodeNotFound     = "not_found"
	CodeTooLarge     = "too_large"
	CodeRateLimited  = "rate_limited"
	CodeInternal     = "internal"
)

// Error is the one error type a node returns to a client. Message is for
// people; Code is for programs. Anything else a node returns becomes
// internal, with a generic message, and is logged with its cause.
type Error struct {
	Code       string
	Message    string
	RetryAfter time.Duration // for rate_limited
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// RetryAfterMS is RetryAfter in whole milliseconds, rounded up (a client
// that waits exactly that long must not be early), at least 1 when set.
func (e *Error) RetryAfterMS() int64 {
	if e.RetryAfter <= 0 {
		return 0
	}
	return max(1, (e.RetryAfter + time.Millisecond - 1).Milliseconds())
}

// Errorf builds an *Error with a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// RateLimited builds a rate_limited error that tells the client when to retry.
func RateLimited(retryAfter time.Duration, message string) *Error {
	return &Error{Code: CodeRateLimited, Message: message, RetryAfter: retryAfter}
}

// Shorthands for the common cases.
var (
	ErrUnauthorized = &Error{Code: CodeUnauthorized, Message: "log in first"}
	ErrForbidden    = &Error{Code: CodeForbidden, Message: "not allowed"}
	errInternal     = &Error{Code: CodeInternal, Message: "the server failed; nothing was changed"}
)

// AsError returns err as an *Error, and whether it was one. Anything that is
// not an *Error comes back as internal.
func AsError(err error) (*Error, bool) {
	var e *Error
	if errors.As(err, &e) {
		return e, true
	}
	return errInternal, false
}

// statusByCode is the one table that maps codes to HTTP statuses.
var statusByCode = map[string]int{
	CodeBadFrame:     http.StatusBadRequest,
	CodeBadRequest:   http.StatusBadRequest,
	CodeUnauthorized: http.StatusUnauthorized,
	CodeAuthFailed:   http.StatusUnauthorized,
	CodeForbidden:    http.StatusForbidden,
	CodeNotFound:     http.StatusNotFound,
	CodeTooLarge:     http.StatusRequestEntityTooLarge,
	CodeRateLimited:  http.StatusTooManyRequests,
	CodeInternal:     http.StatusInternalServerError,
}

// HTTPStatus is the HTTP status for an error code.
func HTTPStatus(code string) int {
	if s, ok := statusByCode[code]; ok {
		return s
	}
	return http.StatusInternalServerError
}
