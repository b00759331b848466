package postgres

import (
	"context"
	"math"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"dce/common/model"
)

// Limits of Search, the embedded engine's.
const (
	DefaultSearchLimit = 20
	MaxSearchLimit     = 100
	// ShortSearchWindow is how many of the newest messages a reader may
	// read (below before) a query of one or two characters looks through:
	// trigrams cannot find those, so they are matched by a bounded scan.
	ShortSearchWindow = 10000
	// SearchExamined is the most index hits one search examines; a search
	// that reaches it before its page is full replies with what it found,
	// more, and the oldest id examined as next.
	SearchExamined = 4096
)

// The search reads messages.fold, the text as foldCase folds it (written
// by the engine with the text, so the match never depends on the
// database's locale), through the trigram index messages_fold: a LIKE
// '%q%' on it is a substring match in any script, Chinese included, with
// no word segmentation. $1 is the LIKE pattern, $2 the id to stay below,
// $3 the reader, $4 the conversation (” for every one); %CONV% is the
// condition on it.
var (
	// The index hits, newest first, at most SearchExamined, kept if the
	// reader may read them; the outer LIMIT stops reading hits once the
	// page and one more are found.
	searchSQL = `SELECT ` + messageColumns + `
FROM (SELECT id FROM messages WHERE fold LIKE $1 AND id < $2 AND deleted = false AND %CONV%
	ORDER BY id DESC LIMIT ` + itoa(SearchExamined) + `) h
JOIN messages m ON m.id = h.id
JOIN users u ON u.id = m.sender
WHERE ` + readableBy(3) + `
ORDER BY m.id DESC LIMIT $5`

	// How many hits the search above examined, and the oldest of them.
	searchExaminedSQL = `SELECT COUNT(*), COALESCE(MIN(id), 0)
FROM (SELECT id FROM messages WHERE fold LIKE $1 AND id < $2 AND deleted = false AND %CONV%
	ORDER BY id DESC LIMIT ` + itoa(SearchExamined) + `) h WHERE $3::bigint = $3::bigint`

	// A short query: the newest ShortSearchWindow messages the reader may
	// read below $2, matched.
	shortSearchSQL = `SELECT ` + messageColumns + `
FROM (SELECT m.id FROM messages m WHERE m.id < $2 AND %CONV% AND ` + readableBy(3) + `
	ORDER BY m.id DESC LIMIT ` + itoa(ShortSearchWindow) + `) w
JOIN messages m ON m.id = w.id
JOIN users u ON u.id = m.sender
WHERE m.deleted = false AND m.fold LIKE $1
ORDER BY m.id DESC LIMIT $5`
)

const (
	inConversation = `conv_key = $4`
	inEvery        = `$4::text = ''`
)

// Search returns the messages reader may read whose text contains q,
// newest first, with the embedded engine's contract (sqlite.DB.Search):
// case-insensitive (Unicode simple case folding), any substring in any
// script, never a deleted message, at most SearchExamined index hits
// examined (more and next then say where to go on), and a query of one
// or two characters matched in the newest ShortSearchWindow readable
// messages below before.
func (db *DB) Search(ctx context.Context, reader int64, q string, key model.ConvKey, before int64, limit int) (msgs []model.Message, more bool, next int64, err error) {
	if err := db.checkOpen(); err != nil {
		return nil, false, 0, err
	}
	limit = clampLimit(limit, DefaultSearchLimit, MaxSearchLimit)
	if before <= 0 {
		before = math.MaxInt64
	}
	conv := inEvery
	if key != "" {
		conv = inConversation
	}
	pattern := "%" + escapeLike(foldCase(q)) + "%"
	if utf8.RuneCountInString(q) < 3 {
		rows, err := db.pool.Query(ctx, strings.Replace(shortSearchSQL, "%CONV%", conv, 1), pattern, before, reader, string(key), limit+1)
		if err != nil {
			return nil, false, 0, err
		}
		msgs, err := scanMessages(rows)
		if err != nil {
			return nil, false, 0, err
		}
		return page(msgs, limit, 0)
	}
	tx, err := db.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, false, 0, err
	}
	defer tx.Rollback(context.Background())
	rows, err := tx.Query(ctx, strings.Replace(searchSQL, "%CONV%", conv, 1), pattern, before, reader, string(key), limit+1)
	if err != nil {
		return nil, false, 0, err
	}
	if msgs, err = scanMessages(rows); err != nil {
		return nil, false, 0, err
	}
	if len(msgs) > limit {
		return page(msgs, limit, 0)
	}
	var (
		examined int
		oldest   int64
	)
	if err := tx.QueryRow(ctx, strings.Replace(searchExaminedSQL, "%CONV%", conv, 1), pattern, before, reader, string(key)).
		Scan(&examined, &oldest); err != nil {
		return nil, false, 0, err
	}
	if examined < SearchExamined {
		oldest = 0
	}
	return page(msgs, limit, oldest)
}

// page cuts the matches to limit and says how to go on, as the embedded
// engine's: below the last one kept when there are more than limit, else
// below cutoff when the search stopped there (cutoff > 0), else nowhere.
func page(msgs []model.Message, limit int, cutoff int64) ([]model.Message, bool, int64, error) {
	if len(msgs) > limit {
		msgs = msgs[:limit]
		return msgs, true, msgs[limit-1].ID, nil
	}
	if cutoff > 0 {
		return msgs, true, cutoff, nil
	}
	return msgs, false, 0, nil
}

// escapeLike quotes LIKE's metacharacters (backslash is LIKE's escape).
func escapeLike(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

// foldRune is the smallest of the runes Unicode simple case folding makes
// equal to r: the embedded engine's fold, so both find the same.
func foldRune(r rune) rune {
	smallest := r
	for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
		smallest = min(smallest, f)
	}
	return smallest
}

// foldCase folds every rune of s (foldRune).
func foldCase(s string) string { return strings.Map(foldRune, s) }

// Fold is the text messages.fold holds for a message's text: what search
// matches. A copy into this store (common/store/storecopy) writes it.
func Fold(text string) string { return foldCase(text) }

func itoa(n int) string { return strconv.Itoa(n) }
