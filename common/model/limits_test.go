package model

import (
	"errors"
	"strings"
	"testing"
	"unicode"
)

func TestNormalizeNickname(t *testing.T) {
	tests := []struct {
		in   string
		max  int
		want string
		err  error
	}{
		{"ann", 32, "ann", nil},
		{"  Ann Lee  ", 32, "Ann Lee", nil},
		{"Zoe\u0308", 32, "Zo\u00eb", nil}, // NFC
		{"\u212bngstr\u00f6m", 32, "\u00c5ngstr\u00f6m", nil},
		{"中文名字", 32, "中文名字", nil},
		{strings.Repeat("中", 32), 32, strings.Repeat("中", 32), nil},
		{strings.Repeat("😀", 32), 32, strings.Repeat("😀", 32), nil},
		{strings.Repeat("a", 32), 0, strings.Repeat("a", 32), nil},        // 0: the default
		{strings.Repeat("a", 33), 64, "", ErrNicknameLong},                // the column's ceiling
		{strings.Repeat("e\u0301", 32), 32, strings.Repeat("é", 32), nil}, // 64 runes in, 32 after NFC
		{strings.Repeat("中", 33), 32, "", ErrNicknameLong},
		{"abcdef", 5, "", ErrNicknameLong},
		{"", 32, "", ErrNicknameEmpty},
		{"   ", 32, "", ErrNicknameEmpty},
		{"a\xffb", 32, "", ErrNotUTF8},
		{"\xed\xa0\x80", 32, "", ErrNotUTF8},
	}
	for _, tt := range tests {
		got, err := NormalizeNickname(tt.in, tt.max)
		if got != tt.want || !errors.Is(err, tt.err) {
			t.Errorf("NormalizeNickname(%+q, %d) = %+q, %v; want %+q, %v", tt.in, tt.max, got, err, tt.want, tt.err)
		}
	}
	// Control, format, invisible, private-use, unassigned and odd spaces.
	for _, bad := range []string{"\x00", "\x07", "\t", "\n", "\r", "\x1b", "\x7f", "\u0085", "\u00a0", "\u00ad", "\u061c",
		"\u180e", "\u200b", "\u200c", "\u200d", "\u200e", "\u202a", "\u202e", "\u2028", "\u2029", "\u2060", "\u2066", "\u3000",
		"\ufeff", "\ufff9", "\ue000", "\U000f0000", "\U000e0001", "\U000e0041", "\u0378", "\U0010ffff"} {
		if got, err := NormalizeNickname("a"+bad+"b", 32); !errors.Is(err, ErrNicknameControl) {
			t.Errorf("nickname with %+q: %+q, %v; want ErrNicknameControl", bad, got, err)
		}
	}
}

// TestFoldNickname: nicknames are unique without regard to case (and to
// Unicode normalisation), which is what the store's UNIQUE fold column
// enforces.
func TestFoldNickname(t *testing.T) {
	same := [][]string{
		{"Ann", "ann", "ANN", "aNn"},
		{"Zo\u00eb", "ZO\u00cb", "zoe\u0308"},
		{"Stra\u00dfe", "STRASSE", "strasse", "STRA\u1e9eE"},
		{"\u03a3\u038a\u03a3\u03a5\u03a6\u039f\u03a3", "\u03c3\u03af\u03c3\u03c5\u03c6\u03bf\u03c2"}, // ΣΊΣΥΦΟΣ, σίσυφος
		{"\u212aelvin", "kelvin"},                                                                    // the Kelvin sign
		{"\uff21\uff2e\uff2e", "ann"},                                                                // fullwidth (NFKC)
		{"\ufb01sh", "fish"},                                                                         // the fi ligature (NFKC)
		{"\u00c5", "\u212b", "a\u030a"},                                                              // Å, the Ångström sign, a + ring
		{"\u13a0\u13a1", "\uab70\uab71"},                                                             // Cherokee, whose fold is upper case
		{"\u0130", "i\u0307", "I\u0307"},                                                             // İ folds to i + dot
		{"\u1f88", "\u1f00\u03b9", "\u1f08\u0399"},                                                   // ᾈ
	}
	for _, group := range same {
		for _, n := range group[1:] {
			if FoldNickname(n) != FoldNickname(group[0]) {
				t.Errorf("fold(%+q) = %+q, fold(%+q) = %+q: want equal", n, FoldNickname(n), group[0], FoldNickname(group[0]))
			}
		}
	}
	different := [][2]string{{"ann", "anne"}, {"ann", "an n"}, {"\u0130", "i"}, {"\u0131", "i"}, {"a", "\u0430"}, {"o", "0"}}
	for _, pair := range different {
		if FoldNickname(pair[0]) == FoldNickname(pair[1]) {
			t.Errorf("fold(%+q) == fold(%+q): want different", pair[0], pair[1])
		}
	}
}

func TestCheckText(t *testing.T) {
	tests := []struct {
		text string
		err  error
	}{
		{strings.Repeat("😀", 4000), nil},
		{strings.Repeat("a", 4000), nil},
		{strings.Repeat("😀", 4001), ErrTooLong},
		{strings.Repeat("a", 3999) + "e\u0301", ErrTooLong}, // characters are runes
		{"", nil},
		{"a\x00b", ErrNUL},
		{"a\xffb", ErrNotUTF8},
		{"\u202e\u200d\u2028", nil}, // free text: readers render it safely
	}
	for _, tt := range tests {
		if err := CheckText(tt.text, 4000); !errors.Is(err, tt.err) {
			t.Errorf("CheckText(%d bytes) = %v, want %v", len(tt.text), err, tt.err)
		}
	}
}

// TestFoldNicknameEveryCharacter: for every character a nickname may hold,
// every other case of it (its unicode.SimpleFold orbit) has the same fold,
// and the fold is a fixed point. This is how the Cherokee gap in x/text
// (golang/go#46101) was found.
func TestFoldNicknameEveryCharacter(t *testing.T) {
	checked := 0
	for r := rune(0); r <= unicode.MaxRune; r++ {
		s, err := NormalizeNickname(string(r), MaxNickname)
		if err != nil {
			continue
		}
		checked++
		fold := FoldNickname(s)
		if again := FoldNickname(fold); again != fold {
			t.Errorf("%U: fold %+q is not a fixed point (%+q)", r, fold, again)
		}
		for other := unicode.SimpleFold(r); other != r; other = unicode.SimpleFold(other) {
			if o, err := NormalizeNickname(string(other), MaxNickname); err == nil && FoldNickname(o) != fold {
				t.Errorf("%U and %U are one letter in two cases, but fold to %+q and %+q", r, other, fold, FoldNickname(o))
			}
		}
	}
	t.Logf("%d characters a nickname may hold", checked)
}
