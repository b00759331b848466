package boot_test

import (
	"context"
	"testing"
	"time"

	"dce/app/boot"
	"dce/app/servertest"
)

// TestCloseRightAfterOpen: a server closed at once after it opened, before
// its listeners' goroutines may have begun to serve, still stops, every
// time, within the close's own deadline.
func TestCloseRightAfterOpen(t *testing.T) {
	for i := range 20 {
		cfg := servertest.Config(t)
		srv, err := boot.Open(context.Background(), cfg, boot.Options{})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		done := make(chan error, 1)
		go func() { done <- srv.Close(ctx) }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("close %d: %v", i, err)
			}
		case <-time.After(15 * time.Second):
			t.Fatalf("close %d right after open has not returned after 15 s", i)
		}
		cancel()
	}
}
