// Package syncbuf is the tests' one locked buffer: a bytes.Buffer that a
// logger, a child process's output or a connection's goroutines write
// while the test reads it. It imports nothing of the program, so the
// kernel's own package tests can use it as well as servertest
// (servertest.LogBuffer is this type).
package syncbuf

import (
	"bytes"
	"strings"
	"sync"
)

// Buffer collects writes from any number of goroutines. The zero value is
// empty and ready.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String is everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Contains reports whether s was written.
func (b *Buffer) Contains(s string) bool { return strings.Contains(b.String(), s) }
