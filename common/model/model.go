// Package model holds the nouns every part of the server shares: users,
// messages, addresses and sessions, in the shapes PROTOCOL.md section 3 gives.
package model

import "time"

// User is the public view of an account.
type User struct {
	ID       int64  `json:"id"`
	Nickname string `json:"nickname"`
	Brief    string `json:"brief"`
	Avatar   string `json:"avatar"`
	Admin    bool   `json:"admin"`
}

// Online is a user with the number of live connections ("places") they hold.
type Online struct {
	User
	Places int `json:"places"`
}

// Account is a user as the store keeps it, secrets included. It never goes
// on the wire; User does.
type Account struct {
	User
	PasswordHash string
	BannedUntil  time.Time
	MutedUntil   time.Time
	Created      time.Time
}

// Banned reports whether the account is banned at now.
func (a Account) Banned(now time.Time) bool { return now.Before(a.BannedUntil) }

// Muted reports whether the account is muted at now.
func (a Account) Muted(now time.Time) bool { return now.Before(a.MutedUntil) }

// Message kinds.
const (
	KindText  = "text"
	KindImage = "image"
	KindFile  = "file"
	KindAudio = "audio"
	KindVideo = "video"
)

// Message is one chat message. Conv is the conversation as one reader sees
// it; the store fills it with the canonical key (Key) and the service turns
// it into the reader's view before it leaves the server.
type Message struct {
	ID      int64   `json:"id"`
	Seq     int64   `json:"seq"`
	Conv    string  `json:"conv"`
	From    User    `json:"from"`
	To      string  `json:"to"`
	Kind    string  `json:"kind"`
	Text    string  `json:"text"`
	File    *File   `json:"file"`
	CID     string  `json:"cid,omitempty"`
	TS      int64   `json:"ts"`
	Edited  bool    `json:"edited"`
	Deleted bool    `json:"deleted"`
	Key     ConvKey `json:"-"`
	ToUser  int64   `json:"-"`
}

// File is an uploaded file's metadata.
type File struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	MIME   string `json:"mime"`
	URL    string `json:"url"`
	Thumb  string `json:"thumb,omitempty"`
	Width  int    `json:"width,omitempty"`
	Height int    `json:"height,omitempty"`
}

// NewMessage is what a sender asks the store to append.
type NewMessage struct {
	Key    ConvKey
	Sender int64
	To     string // the address as the sender wrote it
	ToUser int64  // the addressee of a private message, else 0
	Kind   string
	Text   string
	FileID string
	CID    string // optional idempotency key, unique per sender
	TS     int64  // Unix milliseconds, the server's time of acceptance
}

// Session is a logged-in session. The sid itself is never stored: the store
// keys sessions by SIDHash.
type Session struct {
	SID     string
	UserID  int64
	Created time.Time
	Expires time.Time
}

// Conversation summarises one conversation for its reader.
type Conversation struct {
	Conv   string  `json:"conv"`
	Last   Message `json:"last"`
	Unread int     `json:"unread"`
}
