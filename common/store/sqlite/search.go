package sqlite

import (
	"bytes"
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"dce/common/model"
)

// Limits of Search.
const (
	DefaultSearchLimit = 20
	MaxSearchLimit     = 100
	// ShortSearchWindow is how many of the newest messages a reader may
	// read (below before) a query of one or two characters looks through:
	// trigrams cannot find those, so they are matched by a scan, and the
	// scan is bounded.
	ShortSearchWindow = 10000
	// SearchExamined is the most candidate rows one search examines: index
	// hits read and verified, or messages of a small conversation read and
	// matched. A search that reaches it before its page is full replies
	// with what it found, more, and the id to go on below (Search's next),
	// so that its worst case (a phrase found only in conversations the
	// reader may not read) is a constant, not the size of the store.
	SearchExamined = 4096
)

// The queries of an indexed search (searchIndexed; the contract is in
// indexer.go). searchHitsSQL, on the index file, yields the rowids
// matching ?1 (an FTS5 phrase) below id ?2, newest first, so a page stops
// as soon as it is full. On the store file, searchVerifySQL keeps of the
// ids in the JSON array ?1 the messages ?2 may read whose current seq is
// at most the watermark ?3 (the others changed since they were indexed),
// in conversation ?4 when %CONV% is byConversation; searchTailSQL reads
// the changes above the watermark ?1 below id ?3 that ?2 may read, to be
// matched in the server. The conversation's condition is "+m.conv_key"
// so that neither uses the conversation index instead of the rowids or
// the seq.
const (
	searchHitsSQL = `SELECT rowid FROM messages_search WHERE messages_search MATCH ?1 AND rowid < ?2 ORDER BY rowid DESC`

	searchVerifySQL = `SELECT ` + messageColumns + `
FROM messages m JOIN users u ON u.id = m.sender
WHERE m.id IN (SELECT value FROM json_each(?1)) AND m.seq <= ?3 AND m.deleted = 0 AND %CONV% AND ` + readableBy + `
ORDER BY m.id DESC`

	searchTailSQL = `SELECT ` + messageColumns + `
FROM messages m JOIN users u ON u.id = m.sender
WHERE m.seq > ?1 AND m.id < ?3 AND m.deleted = 0 AND m.text <> '' AND %CONV% AND ` + readableBy + `
ORDER BY m.seq`

	byConversation = `+m.conv_key = ?4`
	inEveryConv    = `?4 = ''`
)

// searchVerifyBatch is how many index hits the first verification query
// of a search takes; each next one takes twice as many, up to
// maxSearchVerifyBatch.
const (
	searchVerifyBatch    = 32
	maxSearchVerifyBatch = 1024
)

// shortSearchSQL scans the newest ShortSearchWindow messages ?2 may read
// below id ?3, in conversation ?5 when %CONV% is inConversation, for one
// of the case variants given from ?6 on (caseVariants), newest first, at
// most ?4. ?1 is unused, so the parameters line up with
// scanConversationSQL's.
const shortSearchSQL = `SELECT ` + messageColumns + `
FROM (SELECT m.id FROM messages m
	WHERE m.id < ?3 AND %CONV% AND ` + readableBy + `
	ORDER BY m.id DESC LIMIT ` + "%d" + `) w
JOIN messages m ON m.id = w.id
JOIN users u ON u.id = m.sender
WHERE ?1 = ?1 AND m.deleted = 0 AND (%s)
ORDER BY m.id DESC LIMIT ?4`

// The condition on the conversation of shortSearchSQL: ?5 names it, or
// every conversation (so that the planner can use the conversation index
// when one is named).
const (
	inConversation = `m.conv_key = ?5`
	inEvery        = `?5 = ''`
)

// Search returns the messages reader may read (readableBy) whose text
// contains q, newest first, ids below before (when before > 0), in the
// conversation key when it is not "", at most limit (clamped to
// 1..MaxSearchLimit; DefaultSearchLimit when 0); more reports whether
// further matches may exist, and next is then the id to pass as before
// to go on (0 when more is false): the last message returned when the
// page is full, or, when the search examined SearchExamined candidates
// first, the oldest it examined (the page then holds every match at or
// above next, fewer than limit, possibly none). Deleted messages are
// never found. The match is
// case-insensitive (Unicode simple case folding) and works on any
// substring in any script.
//
// A q of three characters or more is looked up in the trigram index
// (searchIndexed), whatever the index has caught up with. One
// or two characters cannot be: they are matched by scanning the newest
// ShortSearchWindow messages reader may read below before, so older
// matches are found only by paging with before, and more then speaks of
// that window only.
func (db *DB) Search(ctx context.Context, reader int64, q string, key model.ConvKey, before int64, limit int) (msgs []model.Message, more bool, next int64, err error) {
	if err := db.checkOpen(); err != nil {
		return nil, false, 0, err
	}
	limit = clampLimit(limit, DefaultSearchLimit, MaxSearchLimit)
	if before <= 0 {
		before = math.MaxInt64
	}
	if key != "" && utf8.RuneCountInString(q) >= 3 {
		small, err := db.smallConversation(ctx, key, before)
		if err != nil {
			return nil, false, 0, err
		}
		if small {
			return db.scanConversation(ctx, reader, q, key, before, limit)
		}
	}
	if utf8.RuneCountInString(q) >= 3 {
		return db.searchIndexed(ctx, reader, q, key, before, limit)
	}
	args := []any{"", reader, before, limit + 1, string(key)}
	variants := caseVariants(q)
	match := make([]string, len(variants))
	for i, variant := range variants {
		match[i] = "instr(m.text, ?" + strconv.Itoa(6+i) + ") > 0"
		args = append(args, variant)
	}
	query := strings.Replace(strings.Replace(shortSearchSQL, "%d", strconv.Itoa(ShortSearchWindow), 1),
		"%s", strings.Join(match, " OR "), 1)
	conv := inEvery
	if key != "" {
		conv = inConversation
	}
	rows, err := db.reader.QueryContext(ctx, strings.Replace(query, "%CONV%", conv, 1), args...)
	if err != nil {
		return nil, false, 0, err
	}
	msgs, err = scanMessages(rows, limit)
	if err != nil {
		return nil, false, 0, err
	}
	return page(msgs, limit, 0)
}

// page cuts the matches msgs, newest first, to limit and says how to go
// on (Search's more and next): below the last one kept when there are
// more than limit, else below cutoff when the search stopped there
// (cutoff > 0), else nowhere.
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

// searchIndexed is Search for a q of three characters or more: the index
// hits whose message has not changed since the watermark, verified
// against the store file, and the changes above the watermark matched
// here, folding case as the index does (indexer.go's contract). Without
// an index (Options.withoutSearchIndex) the watermark is 0: everything is
// matched here.
//
// The hits read are at most SearchExamined; the tail is not bounded so,
// but by how far the indexer is behind (a few thousand changes at most
// while it keeps up; the whole store only while it indexes an upgraded
// store anew).
func (db *DB) searchIndexed(ctx context.Context, reader int64, q string, key model.ConvKey, before int64, limit int) ([]model.Message, bool, int64, error) {
	conv := inEveryConv
	if key != "" {
		conv = byConversation
	}
	// The index's snapshot begins with the watermark; the store's, with
	// the tail, after it: the store then holds every change up to the
	// watermark, and the hits are those of that watermark.
	var (
		index     *sql.Tx
		watermark int64
	)
	if db.index != nil {
		var err error
		if index, err = db.index.reader.BeginTx(ctx, &sql.TxOptions{ReadOnly: true}); err != nil {
			return nil, false, 0, err
		}
		defer index.Rollback()
		if err := index.QueryRowContext(ctx, watermarkSQL).Scan(&watermark); err != nil {
			return nil, false, 0, err
		}
	}
	store, err := db.reader.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, false, 0, err
	}
	defer store.Rollback()

	match := newFolder(q)
	rows, err := store.QueryContext(ctx, strings.Replace(searchTailSQL, "%CONV%", conv, 1), watermark, reader, before, string(key))
	if err != nil {
		return nil, false, 0, err
	}
	var tail []model.Message // the changes above the watermark that match, any id order
	for rows.Next() {
		msg, err := scanMessage(rows)
		if err != nil {
			rows.Close()
			return nil, false, 0, err
		}
		if match.contains(msg.Text) {
			tail = append(tail, msg)
		}
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return nil, false, 0, err
	}

	var (
		found  []model.Message // verified hits, newest first
		cutoff int64           // the oldest hit examined, when the hits were cut there
	)
	if index != nil {
		if found, cutoff, err = db.verifiedHits(ctx, index, store, q, conv, reader, key, before, watermark, limit, tail, match); err != nil {
			return nil, false, 0, err
		}
	}
	msgs := found
	for _, msg := range tail {
		if msg.ID >= cutoff { // those below are the next page's
			msgs = append(msgs, msg)
		}
	}
	slices.SortFunc(msgs, func(a, b model.Message) int { return cmp.Compare(b.ID, a.ID) })
	return page(msgs, limit, cutoff)
}

// verifiedHits reads the index hits of q below before, newest first, and
// keeps those the store (in its snapshot store) says reader may read and
// have not changed since watermark, until, with the tail's matches above
// them, they fill a page and one more, or SearchExamined hits have been
// read: cutoff is then the id of the last (the oldest) of them, and 0
// when the hits were not cut.
func (db *DB) verifiedHits(ctx context.Context, index, store *sql.Tx, q, conv string, reader int64, key model.ConvKey, before, watermark int64, limit int, tail []model.Message, match *folder) (found []model.Message, cutoff int64, err error) {
	hits, err := index.QueryContext(ctx, searchHitsSQL, ftsPhrase(q), before)
	if err != nil {
		return nil, 0, err
	}
	defer hits.Close()
	verify := strings.Replace(searchVerifySQL, "%CONV%", conv, 1)
	var (
		read  int // hits read
		batch []int64
		size  = searchVerifyBatch
	)
	// full reports whether the page is full whatever the hits still to
	// come: they are all older than the last one kept.
	full := func() bool {
		if len(found) == 0 {
			return false
		}
		n, oldest := len(found), found[len(found)-1].ID
		for _, msg := range tail {
			if msg.ID > oldest {
				n++
			}
		}
		return n > limit
	}
	flush := func() error {
		list, _ := json.Marshal(batch)
		batch = batch[:0]
		rows, err := store.QueryContext(ctx, verify, string(list), reader, watermark, string(key))
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			msg, err := scanMessage(rows)
			if err != nil {
				return err
			}
			if match.contains(msg.Text) { // whatever the index's state
				found = append(found, msg)
			}
		}
		return rows.Err()
	}
	for hits.Next() {
		var id int64
		if err := hits.Scan(&id); err != nil {
			return nil, 0, err
		}
		read++
		batch = append(batch, id)
		if last := read == SearchExamined; last || len(batch) == size {
			if err := flush(); err != nil {
				return nil, 0, err
			}
			if full() {
				return found, 0, nil
			}
			if last {
				return found, id, nil
			}
			size = min(2*size, maxSearchVerifyBatch)
		}
	}
	if err := hits.Err(); err != nil {
		return nil, 0, err
	}
	if len(batch) > 0 {
		if err := flush(); err != nil {
			return nil, 0, err
		}
	}
	return found, 0, nil
}

// SmallConversation is the most messages (below before) a conversation
// may have for a search within it to read them all rather than the index:
// the index yields the matches of the whole store newest first, and in a
// private chat of a few hundred messages a common phrase would be checked
// against hundreds of thousands of other conversations' matches first.
const SmallConversation = 5000

// conversationSizeSQL counts up to SmallConversation+1 messages of ?1
// below ?2, from the conversation index alone.
const conversationSizeSQL = `SELECT COUNT(*) FROM (SELECT 1 FROM messages WHERE conv_key = ?1 AND id < ?2 LIMIT ?3)`

// scanConversationSQL reads conversation ?5 below ?3, newest first, for
// reader ?2 (?1 and ?4 unused, so the parameters line up with searchSQL's).
const scanConversationSQL = `SELECT ` + messageColumns + `
FROM messages m JOIN users u ON u.id = m.sender
WHERE ?1 = ?1 AND ?4 = ?4 AND m.conv_key = ?5 AND m.id < ?3 AND m.deleted = 0 AND ` + readableBy + `
ORDER BY m.id DESC`

// smallConversation reports whether key has at most SmallConversation
// messages below before.
func (db *DB) smallConversation(ctx context.Context, key model.ConvKey, before int64) (bool, error) {
	var count int
	err := db.reader.QueryRowContext(ctx, conversationSizeSQL, string(key), before, SmallConversation+1).Scan(&count)
	return count <= SmallConversation, err
}

// scanConversation is Search within a small conversation: its messages
// are read, newest first, and matched here, folding case as the index
// does, until the page is full or SearchExamined of them have been read.
func (db *DB) scanConversation(ctx context.Context, reader int64, q string, key model.ConvKey, before int64, limit int) ([]model.Message, bool, int64, error) {
	rows, err := db.reader.QueryContext(ctx, scanConversationSQL, "", reader, before, 0, string(key))
	if err != nil {
		return nil, false, 0, err
	}
	defer rows.Close()
	match := newFolder(q)
	var msgs []model.Message
	for read := 1; rows.Next(); read++ {
		msg, err := scanMessage(rows)
		if err != nil {
			return nil, false, 0, err
		}
		if match.contains(msg.Text) {
			if len(msgs) == limit {
				return page(append(msgs, msg), limit, 0)
			}
			msgs = append(msgs, msg)
		}
		if read == SearchExamined {
			return page(msgs, limit, msg.ID)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, false, 0, err
	}
	return msgs, false, 0, nil
}

// folder matches texts against one query as foldCase folds them, in a
// buffer it reuses, so that matching a row allocates nothing once the
// buffer has grown to the longest text: ASCII bytes are folded directly
// (foldCase makes an ASCII letter its upper case), other runes by
// foldRune.
type folder struct {
	q   []byte // foldCase of the query
	buf []byte // the folded text last matched
}

func newFolder(q string) *folder { return &folder{q: []byte(foldCase(q))} }

// contains reports whether foldCase(text) contains the query's fold.
func (f *folder) contains(text string) bool {
	buf := f.buf[:0]
	i := 0
	for ; i < len(text); i++ {
		c := text[i]
		if c >= utf8.RuneSelf {
			break
		}
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		buf = append(buf, c)
	}
	for _, r := range text[i:] {
		buf = utf8.AppendRune(buf, foldRune(r))
	}
	f.buf = buf
	return bytes.Contains(buf, f.q)
}

// foldRune is the smallest of the runes Unicode simple case folding
// makes equal to r.
func foldRune(r rune) rune {
	smallest := r
	for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
		smallest = min(smallest, f)
	}
	return smallest
}

// foldCase maps every rune to the smallest of the runes Unicode simple
// case folding makes equal to it, so that two texts that differ only in
// case become equal (as caseVariants lists them for short queries).
func foldCase(s string) string { return strings.Map(foldRune, s) }

// ftsPhrase quotes q as one FTS5 phrase: with the trigram tokenizer a
// phrase matches the texts that contain it as a substring.
func ftsPhrase(q string) string {
	return `"` + strings.ReplaceAll(q, `"`, `""`) + `"`
}

// caseVariants lists every spelling of a short q that Unicode simple case
// folding makes equal to it ("ok": ok, oK, Ok, OK), for the scan of a
// short query. A rune has at most four such spellings (θ ϑ Θ ϴ), so two
// runes give at most sixteen.
func caseVariants(q string) []string {
	variants := []string{""}
	for _, r := range q {
		orbit := []rune{r}
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			orbit = append(orbit, f)
		}
		next := make([]string, 0, len(variants)*len(orbit))
		for _, v := range variants {
			for _, o := range orbit {
				next = append(next, v+string(o))
			}
		}
		variants = next
	}
	return variants
}

// IndexBytes is the size of the search index of the store file at path:
// the pages of messages_search's shadow tables in its index file
// (SearchIndexPath), as the dbstat table counts them. The store must not
// be open for writing elsewhere.
func IndexBytes(ctx context.Context, path string) (int64, error) {
	db, err := sql.Open("sqlite", "file:"+SearchIndexPath(path)+"?mode=ro")
	if err != nil {
		return 0, err
	}
	defer db.Close()
	var size int64
	err = db.QueryRowContext(ctx, `SELECT COALESCE(SUM(pgsize), 0) FROM dbstat WHERE name LIKE 'messages\_search%' ESCAPE '\'`).Scan(&size)
	return size, err
}
