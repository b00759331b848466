package model

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// FuzzNickname (TESTPLAN Z4): a nickname NormalizeNickname accepts is valid
// UTF-8, 1-32 characters (and within the configured maximum), has no
// control, format, surrogate, private-use or unassigned character and no
// space but the plain one inside, and is a fixed point. Its fold, the
// store's uniqueness key, is deterministic, and equal for the same name in
// another case (each character moved along its case-folding orbit, as
// variant picks) or another Unicode normal form: two such spellings collide
// in the store. Seeds: testdata/fuzz/FuzzNickname.
func FuzzNickname(f *testing.F) {
	f.Fuzz(func(t *testing.T, nickname string, max int8, variant []byte) {
		out, err := NormalizeNickname(nickname, int(max))
		if err != nil {
			if out != "" {
				t.Fatalf("error %v with output %+q", err, out)
			}
			return
		}
		limit := int(max)
		if limit <= 0 || limit > MaxNickname {
			limit = MaxNickname
		}
		if !utf8.ValidString(out) {
			t.Fatalf("output %+q is not UTF-8", out)
		}
		if n := utf8.RuneCountInString(out); n < 1 || n > limit {
			t.Fatalf("output %+q has %d characters, limit %d", out, n, limit)
		}
		if strings.HasPrefix(out, " ") || strings.HasSuffix(out, " ") {
			t.Fatalf("output %+q has surrounding spaces", out)
		}
		for _, r := range out {
			if unicode.In(r, unicode.Cc, unicode.Cf, unicode.Cs, unicode.Co) || !unicode.IsGraphic(r) ||
				unicode.IsSpace(r) && r != ' ' || r == utf8.RuneError {
				t.Fatalf("output %+q has %U", out, r)
			}
		}
		if again, err := NormalizeNickname(out, int(max)); err != nil || again != out {
			t.Fatalf("not a fixed point: %+q -> %+q, %v", out, again, err)
		}
		fold := FoldNickname(out)
		if FoldNickname(out) != fold {
			t.Fatalf("fold of %+q is not deterministic", out)
		}
		// The same name in other normal forms collides.
		for _, form := range []norm.Form{norm.NFD, norm.NFKC, norm.NFKD} {
			other, err := NormalizeNickname(form.String(out), MaxNickname)
			if err == nil && FoldNickname(other) != fold {
				t.Fatalf("%+q and its %v form %+q do not collide: %+q vs %+q", out, form, other, fold, FoldNickname(other))
			}
		}
		// The same name in another case collides.
		if len(variant) == 0 {
			return
		}
		var b strings.Builder
		i := 0
		for _, r := range out {
			for k := 0; k < int(variant[i%len(variant)]%4); k++ {
				r = unicode.SimpleFold(r)
			}
			b.WriteRune(r)
			i++
		}
		other, err := NormalizeNickname(b.String(), MaxNickname)
		if err == nil && FoldNickname(other) != fold {
			t.Fatalf("%+q and %+q differ only in case but do not collide: %+q vs %+q", out, other, fold, FoldNickname(other))
		}
	})
}
