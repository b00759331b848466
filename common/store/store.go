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

// Change is one entry of the store-wide change sequence, as an engine
// shared by several nodes (postgres) hands another node's changes to its
// Options.Remote: every change in seq order, each once.
type Change struct {
	// Seq is the change's place in the sequence.
	Seq  int64
	Kind ChangeKind
	// Message is, for ChangeMessage, ChangeEdit and ChangeDelete, the
	// message as stored when the change was read, its sender joined in.
	// When a later change has superseded this one (an edit or a deletion
	// of the message since), Message.Seq is above Seq: the later change
	// follows in the sequence, and this one may be skipped.
	Message model.Message
	// Group, GroupOp and By are set for ChangeGroup: the change as the
	// write's committed action got it (Members for a creation), which
	// write it was, and who asked (the by of the write; the owner for a
	// creation). A join is GroupAdd with By == Group.User, a leave
	// GroupRemove with By == Group.User; a dissolution is a GroupRemove
	// with Group.Dissolved.
	Group   model.GroupChange
	GroupOp GroupOp
	By      int64
}

// ChangeKind says what a Change is.
type ChangeKind int

const (
	ChangeMessage ChangeKind = iota + 1 // a message stored anew
	ChangeEdit                          // a message's text replaced
	ChangeDelete                        // a message deleted
	ChangeGroup                         // a group created, joined, left, renamed or dissolved
)

// GroupOp is the group write a ChangeGroup came from.
type GroupOp int

const (
	GroupCreate GroupOp = iota + 1
	GroupAdd
	GroupRemove
	GroupRename
)
