package model

import (
	"errors"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/cases"
	"golang.org/x/text/unicode/norm"
)

// Nickname rules (PROTOCOL.md section 4). The maximum is configurable;
// MaxNickname is the default and the hard ceiling of the store's column.
const MaxNickname = 32

var (
	ErrNicknameEmpty   = errors.New("nickname is empty")
	ErrNicknameLong    = errors.New("nickname is too long")
	ErrNicknameControl = errors.New("nickname has control or invisible characters")
	ErrNotUTF8         = errors.New("text is not valid UTF-8")
)

// NormalizeNickname returns the nickname in the form it is stored and shown:
// Unicode NFC, surrounding spaces removed. It rejects empty and over-long
// names, and any control, format (zero-width, bidi override), surrogate,
// private-use or unassigned character.
func NormalizeNickname(s string, max int) (string, error) {
	if !utf8.ValidString(s) {
		return "", ErrNotUTF8
	}
	s = norm.NFC.String(trimSpace(s))
	n := utf8.RuneCountInString(s)
	if n == 0 {
		return "", ErrNicknameEmpty
	}
	if max <= 0 || max > MaxNickname {
		max = MaxNickname
	}
	if n > max {
		return "", ErrNicknameLong
	}
	for _, r := range s {
		if r == utf8.RuneError || !allowedNicknameRune(r) {
			return "", ErrNicknameControl
		}
	}
	return s, nil
}

func allowedNicknameRune(r rune) bool {
	if unicode.IsSpace(r) {
		return r == ' ' // a plain space inside a name is fine; tabs and odd spaces are not
	}
	return !unicode.In(r, unicode.Cc, unicode.Cf, unicode.Cs, unicode.Co) && (unicode.IsPrint(r) || unicode.IsGraphic(r))
}

func trimSpace(s string) string {
	start, end := 0, len(s)
	for start < end && s[start] == ' ' {
		start++
	}
	for end > start && s[end-1] == ' ' {
		end--
	}
	return s[start:end]
}

// FoldNickname is the key under which nicknames are unique: two nicknames
// collide exactly when their folds are equal. Callers pass a nickname that
// NormalizeNickname accepted. A Caser keeps state, so each call makes one.
func FoldNickname(s string) string {
	folded := cases.Fold().String(norm.NFKC.String(s))
	// NFKC can turn a character into a space plus a combining mark (U+2017
	// becomes " \u0333"): trim as NormalizeNickname does, so that a name
	// and its compatibility form collide.
	return trimSpace(norm.NFKC.String(strings.Map(foldCherokee, folded)))
}

// foldCherokee finishes x/text's fold for Cherokee, which it swaps instead
// of folding (golang/go#46101: U+13A0 becomes U+AB70 and U+AB70 becomes
// U+13A0, so "Ꭰ" and "ꭰ" would be two nicknames). Unicode folds Cherokee
// to its upper case, the older letters: both end there.
func foldCherokee(r rune) rune {
	if r >= 0xAB70 && r <= 0xABBF || r >= 0x13F8 && r <= 0x13FD {
		return unicode.ToUpper(r)
	}
	return r
}

// CheckText validates free text (a message, a brief): valid UTF-8 and at
// most max characters (runes, not bytes). NUL is refused.
func CheckText(s string, max int) error {
	if !utf8.ValidString(s) {
		return ErrNotUTF8
	}
	if utf8.RuneCountInString(s) > max {
		return ErrTooLong
	}
	for i := 0; i < len(s); i++ {
		if s[i] == 0 {
			return ErrNUL
		}
	}
	return nil
}

var (
	ErrTooLong = errors.New("text is too long")
	ErrNUL     = errors.New("text contains NUL")
)
