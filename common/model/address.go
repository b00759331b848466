package model

import (
	"errors"
	"strconv"
	"strings"
)

// Address kinds, as they appear before the colon in "room:lobby",
// "user:7" and "group:3".
const (
	AddrRoom  = "room"
	AddrUser  = "user"
	AddrGroup = "group"
)

// Lobby is the public room every logged-in user is in.
const Lobby = "room:lobby"

// ErrBadAddress is returned for an address that is not room:lobby, user:ID
// or group:ID.
var ErrBadAddress = errors.New("address must be room:lobby, user:ID or group:ID")

// Address is a parsed `to`, `with` or `conv` value.
type Address struct {
	Kind string // AddrRoom, AddrUser or AddrGroup
	ID   int64  // the user or group id; 0 for the lobby
}

// ParseAddress parses "room:lobby", "user:ID" or "group:ID" with ID a
// positive decimal integer without sign or leading zeros.
func ParseAddress(s string) (Address, error) {
	if s == Lobby {
		return Address{Kind: AddrRoom}, nil
	}
	kind, rest, ok := strings.Cut(s, ":")
	if !ok || (kind != AddrUser && kind != AddrGroup) {
		return Address{}, ErrBadAddress
	}
	id, err := parseID(rest)
	if err != nil {
		return Address{}, ErrBadAddress
	}
	return Address{Kind: kind, ID: id}, nil
}

func parseID(s string) (int64, error) {
	if s == "" || len(s) > 19 || s[0] == '0' {
		return 0, ErrBadAddress
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, ErrBadAddress
		}
	}
	return strconv.ParseInt(s, 10, 64)
}

// String formats the address back to its wire form.
func (a Address) String() string {
	if a.Kind == AddrRoom {
		return Lobby
	}
	return a.Kind + ":" + strconv.FormatInt(a.ID, 10)
}

// ConvKey names a conversation the same way for all its readers:
// "room:lobby", "dm:LOW:HIGH" for two users, "group:ID".
type ConvKey string

// LobbyKey is the lobby's conversation key.
const LobbyKey ConvKey = Lobby

// Key returns the conversation key of a message from sender to a.
func (a Address) Key(sender int64) ConvKey {
	switch a.Kind {
	case AddrUser:
		return DirectKey(sender, a.ID)
	case AddrGroup:
		return ConvKey(a.String())
	}
	return LobbyKey
}

// DirectKey is the key of the private conversation between two users.
func DirectKey(a, b int64) ConvKey {
	if a > b {
		a, b = b, a
	}
	return ConvKey("dm:" + strconv.FormatInt(a, 10) + ":" + strconv.FormatInt(b, 10))
}

// ViewFor returns the conversation address as reader sees it: the other
// party for a private conversation, the room or group otherwise.
func (k ConvKey) ViewFor(reader int64) string {
	s := string(k)
	if !strings.HasPrefix(s, "dm:") {
		return s
	}
	lo, hi, _ := strings.Cut(s[3:], ":")
	if lo == strconv.FormatInt(reader, 10) {
		return "user:" + hi
	}
	return "user:" + lo
}
