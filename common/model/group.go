package model

import (
	"errors"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// Group is a group as PROTOCOL.md section 3 shows it: Members is how many
// members it has.
type Group struct {
	ID      int64  `json:"id"`
	Name    string `json:"name"`
	Owner   int64  `json:"owner"`
	Private bool   `json:"private"`
	Members int    `json:"members"`
}

// Key is the group's conversation key, "group:ID".
func (g Group) Key() ConvKey { return Address{Kind: AddrGroup, ID: g.ID}.Key(0) }

// GroupMembers is a group with its members' ids in join order (earliest
// first; those who joined in the same instant by lowest id).
type GroupMembers struct {
	Group
	MemberIDs []int64
}

// NewGroup is what a creator asks the store to create.
type NewGroup struct {
	Name    string // checked by NormalizeGroupName
	Owner   int64  // the creator: the owner and the first member
	Private bool
	Members []int64 // the others who become members at once; duplicates and the owner are ignored
}

// GroupChange is what one group write did, as the store reports it to its
// caller and to the write's after-commit action.
type GroupChange struct {
	// Group is the group after the change. For a dissolved group it is the
	// group as it was, with Members 0.
	Group Group
	// User is whom the change is about: the member added or removed; 0 for
	// a creation or a rename.
	User int64
	// Members are, for a creation, every member in join order (owner
	// first); nil otherwise.
	Members []int64
	// Changed is false when there was nothing to do: the user was already
	// a member (an add), or was not one (a removal). Nothing was written.
	Changed bool
	// Dissolved reports that the last member left: the group is gone.
	Dissolved bool
}

// MaxGroupName is the longest group name, in characters.
const MaxGroupName = 64

var (
	ErrGroupNameEmpty   = errors.New("name is empty")
	ErrGroupNameLong    = errors.New("name is over 64 characters")
	ErrGroupNameControl = errors.New("name has control or invisible characters")
)

// NormalizeGroupName returns a group name as it is stored and shown:
// Unicode NFC, surrounding spaces removed, 1 to MaxGroupName characters,
// with the characters a nickname may hold (no control, format, surrogate,
// private-use or unassigned ones). Names need not be unique.
func NormalizeGroupName(s string) (string, error) {
	if !utf8.ValidString(s) {
		return "", ErrNotUTF8
	}
	s = norm.NFC.String(trimSpace(s))
	n := utf8.RuneCountInString(s)
	if n == 0 {
		return "", ErrGroupNameEmpty
	}
	if n > MaxGroupName {
		return "", ErrGroupNameLong
	}
	for _, r := range s {
		if r == utf8.RuneError || !allowedNicknameRune(r) {
			return "", ErrGroupNameControl
		}
	}
	return s, nil
}

// GroupID returns the group a conversation key names, if it names one.
func (k ConvKey) GroupID() (int64, bool) {
	a, err := ParseAddress(string(k))
	if err != nil || a.Kind != AddrGroup {
		return 0, false
	}
	return a.ID, true
}
