// Package store holds what every store engine shares: the errors callers
// test for. The engines live in the folders below (sqlite, the embedded
// default; postgres for several nodes), and storetest is the conformance
// suite every engine must pass.
package store

import "errors"

var (
	// ErrNotFound: no such user, session or message.
	ErrNotFound = errors.New("store: not found")
	// ErrConflict: a unique value (a nickname, folded) is taken.
	ErrConflict = errors.New("store: conflict")
	// ErrClosed: the store is closed; nothing was written.
	ErrClosed = errors.New("store: closed")
)

// ErrFull: a group is at its member cap; nothing was written.
var ErrFull = errors.New("store: the group is full")

// ErrForbidden: the user asking a group write may not make it (not a
// member, not the owner), as the write's own transaction found; nothing
// was written.
var ErrForbidden = errors.New("store: forbidden")
