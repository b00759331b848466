package service

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/argon2"
)

// ArgonParams are argon2id's cost parameters.
type ArgonParams struct {
	MemoryKiB uint32
	Time      uint32
	Threads   uint8
}

const (
	saltBytes = 16
	keyBytes  = 32
)

var errBadHash = errors.New("stored password hash is malformed")

// Hasher hashes and checks passwords with argon2id, at most slots at a time:
// each hash takes tens of milliseconds and MemoryKiB of memory, so a login
// flood must wait a little or be told to come back, never pile up.
type Hasher struct {
	params ArgonParams
	slots  chan struct{}
	wait   time.Duration

	garbage    atomic.Int64 // bytes of argon2 memory dropped since the last collection asked for
	collecting atomic.Bool
}

// ErrBusy is returned when no hashing slot came free within the wait.
var ErrBusy = errors.New("password hashing is busy")

// NewHasher makes a hasher with slots concurrent hashes.
func NewHasher(p ArgonParams, slots int, wait time.Duration) *Hasher {
	return &Hasher{params: p, slots: make(chan struct{}, max(1, slots)), wait: wait}
}

func (h *Hasher) acquire(ctx context.Context) error {
	select {
	case h.slots <- struct{}{}:
		return nil
	default:
	}
	t := time.NewTimer(h.wait)
	defer t.Stop()
	select {
	case h.slots <- struct{}{}:
		return nil
	case <-t.C:
		return ErrBusy
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (h *Hasher) release() { <-h.slots }

// collectIfDue runs a garbage collection, while the caller still holds its
// hashing slot, once the hashes since the last one have dropped the slots'
// worth of memory (argon2id allocates all of MemoryKiB afresh on every call
// and drops it on return). Left to the pacer, a login flood piles up as much
// of that garbage as the whole live heap (the session cache alone is 64 MiB)
// before anything is collected, and every byte of it becomes resident;
// holding the slot meanwhile keeps the other hashes from outrunning the
// collection.
func (h *Hasher) collectIfDue(kib uint32) {
	threshold := max(int64(cap(h.slots))*int64(h.params.MemoryKiB)<<10, 32<<20)
	if h.garbage.Add(int64(kib)<<10) < threshold || !h.collecting.CompareAndSwap(false, true) {
		return
	}
	h.garbage.Store(0)
	runtime.GC()
	h.collecting.Store(false)
}

// Hash returns the PHC string of password:
// $argon2id$v=19$m=...,t=...,p=...$salt$hash (unpadded standard base64).
func (h *Hasher) Hash(ctx context.Context, password string) (string, error) {
	salt := make([]byte, saltBytes)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	if err := h.acquire(ctx); err != nil {
		return "", err
	}
	key := argon2.IDKey([]byte(password), salt, h.params.Time, h.params.MemoryKiB, h.params.Threads, keyBytes)
	h.collectIfDue(h.params.MemoryKiB)
	h.release()
	return encodePHC(h.params, salt, key), nil
}

// Verify checks password against a PHC string. stale reports that the hash
// was made with weaker parameters than the hasher's, so the caller should
// store a new one.
func (h *Hasher) Verify(ctx context.Context, phc, password string) (ok, stale bool, err error) {
	p, salt, want, err := decodePHC(phc)
	if err != nil {
		return false, false, err
	}
	if err := h.acquire(ctx); err != nil {
		return false, false, err
	}
	got := argon2.IDKey([]byte(password), salt, p.Time, p.MemoryKiB, p.Threads, uint32(len(want)))
	h.collectIfDue(p.MemoryKiB)
	h.release()
	ok = subtle.ConstantTimeCompare(got, want) == 1
	stale = p.MemoryKiB < h.params.MemoryKiB || p.Time < h.params.Time || p.Threads != h.params.Threads
	return ok, stale, nil
}

func encodePHC(p ArgonParams, salt, key []byte) string {
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, p.MemoryKiB, p.Time, p.Threads,
		b64.EncodeToString(salt), b64.EncodeToString(key))
}

func decodePHC(s string) (ArgonParams, []byte, []byte, error) {
	var p ArgonParams
	parts := strings.Split(s, "$")
	if len(parts) != 6 || parts[1] != "argon2id" || parts[2] != fmt.Sprintf("v=%d", argon2.Version) {
		return p, nil, nil, errBadHash
	}
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &p.MemoryKiB, &p.Time, &p.Threads); err != nil {
		return p, nil, nil, errBadHash
	}
	salt, err1 := base64.RawStdEncoding.DecodeString(parts[4])
	key, err2 := base64.RawStdEncoding.DecodeString(parts[5])
	if err1 != nil || err2 != nil || len(salt) < 8 || len(key) < 16 || p.Time == 0 || p.Threads == 0 {
		return p, nil, nil, errBadHash
	}
	return p, salt, key, nil
}
