package sqlite

import (
	"path/filepath"
	"testing"

	"dce/common/store/storetest"
)

// TestGroupIDNotReusedAfterReopen: a dissolved group's id is not taken
// again after the file is reopened (storetest.GroupIDNotReusedAfterReopen).
func TestGroupIDNotReusedAfterReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dce.db")
	storetest.GroupIDNotReusedAfterReopen(t, MustOpen(t, Options{Path: path}), func(db storetest.Engine) storetest.Engine {
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		return MustOpen(t, Options{Path: path})
	})
}
