package service

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"
)

var cheap = ArgonParams{MemoryKiB: 64, Time: 1, Threads: 1}

var phc = regexp.MustCompile(`^\$argon2id\$v=19\$m=(\d+),t=(\d+),p=(\d+)\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$`)

func TestHashIsSaltedPHC(t *testing.T) {
	h := NewHasher(ArgonParams{MemoryKiB: 256, Time: 2, Threads: 1}, 2, time.Second)
	a, err := h.Hash(context.Background(), "same password")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := h.Hash(context.Background(), "same password")
	for _, s := range []string{a, b} {
		if g := phc.FindStringSubmatch(s); g == nil || g[1] != "256" || g[2] != "2" || g[3] != "1" {
			t.Fatalf("hash %q is not $argon2id$v=19$m=256,t=2,p=1$<16-byte salt>$<32-byte key>", s)
		}
	}
	if a == b {
		t.Fatal("two hashes of one password are equal: no salt")
	}
}

func TestVerify(t *testing.T) {
	ctx := context.Background()
	h := NewHasher(cheap, 1, time.Second)
	long := strings.Repeat("é", 128)
	for _, pw := range []string{"password", long, "密码密码密码密码"} {
		hash, err := h.Hash(ctx, pw)
		if err != nil {
			t.Fatal(err)
		}
		ok, stale, err := h.Verify(ctx, hash, pw)
		if !ok || stale || err != nil {
			t.Fatalf("Verify(own hash of %q) = %v %v %v", pw, ok, stale, err)
		}
		for _, wrong := range []string{pw + "x", pw[:len(pw)-1], strings.ToUpper(pw), ""} {
			if wrong == pw {
				continue
			}
			if ok, _, err := h.Verify(ctx, hash, wrong); ok || err != nil {
				t.Fatalf("Verify accepted %q for a hash of %q (err %v)", wrong, pw, err)
			}
		}
	}
}

// A hash made with weaker parameters verifies and is reported stale.
func TestVerifyReportsStaleParameters(t *testing.T) {
	ctx := context.Background()
	old, _ := NewHasher(cheap, 1, time.Second).Hash(ctx, "password")
	for _, p := range []ArgonParams{
		{MemoryKiB: 128, Time: 1, Threads: 1},
		{MemoryKiB: 64, Time: 2, Threads: 1},
		{MemoryKiB: 64, Time: 1, Threads: 2},
	} {
		ok, stale, err := NewHasher(p, 1, time.Second).Verify(ctx, old, "password")
		if !ok || !stale || err != nil {
			t.Fatalf("params %+v: Verify = %v stale=%v %v; want ok and stale", p, ok, stale, err)
		}
	}
	if _, stale, _ := NewHasher(ArgonParams{MemoryKiB: 32, Time: 1, Threads: 1}, 1, time.Second).Verify(ctx, old, "password"); stale {
		t.Fatal("a hash stronger than the configuration is reported stale")
	}
}

func TestMalformedHashesAreRefused(t *testing.T) {
	good, _ := NewHasher(cheap, 1, time.Second).Hash(context.Background(), "password")
	parts := strings.Split(good, "$")
	for _, bad := range []string{
		"",
		"plaintext",
		strings.Replace(good, "argon2id", "argon2i", 1),
		strings.Replace(good, "v=19", "v=16", 1),
		strings.Replace(good, "t=1", "t=0", 1),
		strings.Replace(good, "p=1", "p=0", 1),
		strings.Replace(good, "m=64", "m=x", 1),
		"$" + strings.Join([]string{parts[1], parts[2], parts[3], "c2FsdA", parts[5]}, "$"), // 4-byte salt
		"$" + strings.Join([]string{parts[1], parts[2], parts[3], parts[4], "a2V5"}, "$"),   // 3-byte key
		"$" + strings.Join([]string{parts[1], parts[2], parts[3], parts[4] + "!", parts[5]}, "$"),
		good + "$extra",
	} {
		if _, _, err := NewHasher(cheap, 1, time.Second).Verify(context.Background(), bad, "password"); !errors.Is(err, errBadHash) {
			t.Errorf("Verify(%q): %v, want errBadHash", bad, err)
		}
	}
}

// With every slot taken, a hash waits at most the configured wait and is
// then told ErrBusy; a cancelled context ends the wait too.
func TestBusyHasherAnswersWithinTheWait(t *testing.T) {
	const wait = 30 * time.Millisecond
	h := NewHasher(cheap, 2, wait)
	h.slots <- struct{}{}
	h.slots <- struct{}{}
	start := time.Now()
	if _, err := h.Hash(context.Background(), "password"); !errors.Is(err, ErrBusy) {
		t.Fatalf("Hash with no free slot: %v, want ErrBusy", err)
	}
	if took := time.Since(start); took < wait || took > wait+time.Second {
		t.Fatalf("ErrBusy after %v; want after the %v wait", took, wait)
	}
	good, err := NewHasher(cheap, 1, time.Second).Hash(context.Background(), "password")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := h.Verify(context.Background(), good, "password"); !errors.Is(err, ErrBusy) {
		t.Fatalf("Verify with no free slot: %v, want ErrBusy", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := NewHasherWithSlotsTaken(cheap, time.Hour).Hash(ctx, "password"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Hash with a cancelled context: %v", err)
	}
	<-h.slots // one comes free
	if _, err := h.Hash(context.Background(), "password"); err != nil {
		t.Fatalf("Hash with a free slot: %v", err)
	}
	if len(h.slots) != 1 {
		t.Fatalf("%d slots taken after the hash, want the 1 still held", len(h.slots))
	}
}

// NewHasherWithSlotsTaken is a hasher whose only slot is taken.
func NewHasherWithSlotsTaken(p ArgonParams, wait time.Duration) *Hasher {
	h := NewHasher(p, 1, wait)
	h.slots <- struct{}{}
	return h
}

// Each hash's dropped memory is counted; once the slots' worth (at least
// 32 MiB) has been dropped a collection runs and the count starts over.
func TestCollectionAfterTheSlotsWorthOfHashes(t *testing.T) {
	h := NewHasher(ArgonParams{MemoryKiB: 1024, Time: 1, Threads: 1}, 1, time.Second)
	for i := 1; i < 32; i++ {
		if _, err := h.Hash(context.Background(), "password"); err != nil {
			t.Fatal(err)
		}
		if got := h.garbage.Load(); got != int64(i)<<20 {
			t.Fatalf("after %d hashes of 1 MiB the hasher counts %d bytes dropped", i, got)
		}
	}
	if _, err := h.Hash(context.Background(), "password"); err != nil {
		t.Fatal(err)
	}
	if got := h.garbage.Load(); got != 0 {
		t.Fatalf("after 32 MiB dropped the count is %d; want a collection and 0", got)
	}
}
