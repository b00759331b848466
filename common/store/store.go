// Package store holds what every store engine shares: the errors callers
// test for. The engines live in the folders below (sqlite, the embedded
// default; postgres for several nodes), and storetest is the conformance
// suite every engine must pass.
package store

import (
	"errors"

	"dce/common/model"
)

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

// ChangeKind is what a stored change did.
type ChangeKind int

// The kinds of change, each of which takes a seq.
const (
	ChangeMessage ChangeKind = iota + 1 // a new message
	ChangeEdit                          // a message's text changed
	ChangeDelete                        // a message deleted
	ChangeGroup                         // a group created, joined or left, renamed
)

// GroupOp is which group write a ChangeGroup was.
type GroupOp int

// The group writes (service.Store's CreateGroup, AddGroupMember,
// RemoveGroupMember and RenameGroup).
const (
	GroupCreate GroupOp = iota + 1
	GroupAdd
	GroupRemove
	GroupRename
)

// Change is one stored change as an engine shared by several nodes hands
// it to the nodes that did not make it, in seq order with their own
// (after-commit actions included), so every node pushes every change and
// keeps its group membership as of each commit.
type Change struct {
	Seq     int64
	Kind    ChangeKind
	Message model.Message     // a message, edit or deletion: as stored, sender joined in
	Group   model.GroupChange // a group change: what the write reported
	GroupOp GroupOp
	By      int64 // a group change: who asked (the by of the write; the owner for a creation)
}
