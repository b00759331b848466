package store

import (
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
)

// Migration is one numbered file of an engine's migrations.
type Migration struct {
	Version int
	Name    string
	SQL     string
}

// Migrations lists the files matching pattern in fsys in version order. A
// file is named NNNN_what.sql; the number is its version, positive, and
// no two files share one. engine names the engine in errors.
func Migrations(engine string, fsys fs.FS, pattern string) ([]Migration, error) {
	names, err := fs.Glob(fsys, pattern)
	if err != nil {
		return nil, err
	}
	var list []Migration
	for _, name := range names {
		base := path.Base(name)
		number, _, _ := strings.Cut(base, "_")
		version, err := strconv.Atoi(number)
		if err != nil || version <= 0 {
			return nil, fmt.Errorf("%s: migration %s: name must start with a positive number", engine, base)
		}
		text, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, err
		}
		list = append(list, Migration{Version: version, Name: base, SQL: string(text)})
	}
	sort.Slice(list, func(i, j int) bool { return list[i].Version < list[j].Version })
	for i := 1; i < len(list); i++ {
		if list[i].Version == list[i-1].Version {
			return nil, fmt.Errorf("%s: two migrations numbered %d", engine, list[i].Version)
		}
	}
	return list, nil
}
