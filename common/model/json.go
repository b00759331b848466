package model

import (
	"strconv"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// AppendJSON appends m as JSON, byte for byte what json.Marshal writes for
// it (TestMessageAppendJSON compares the two), without reflection: every
// message is encoded once per view on the way to its readers. Invalid
// UTF-8, which the transports refuse before it gets here, would come out
// as U+FFFD.
func (m *Message) AppendJSON(b []byte) []byte {
	b = append(b, `{"id":`...)
	b = strconv.AppendInt(b, m.ID, 10)
	b = append(b, `,"seq":`...)
	b = strconv.AppendInt(b, m.Seq, 10)
	b = appendField(b, `,"conv":`, m.Conv)
	b = append(b, `,"from":`...)
	b = m.From.AppendJSON(b)
	b = appendField(b, `,"to":`, m.To)
	b = appendField(b, `,"kind":`, m.Kind)
	b = appendField(b, `,"text":`, m.Text)
	b = append(b, `,"file":`...)
	if m.File == nil {
		b = append(b, "null"...)
	} else {
		file, err := json.Marshal(m.File)
		if err != nil {
			panic("model: a File does not encode: " + err.Error()) // plain strings and numbers always encode
		}
		b = append(b, file...)
	}
	if m.CID != "" {
		b = appendField(b, `,"cid":`, m.CID)
	}
	b = append(b, `,"ts":`...)
	b = strconv.AppendInt(b, m.TS, 10)
	b = append(b, `,"edited":`...)
	b = strconv.AppendBool(b, m.Edited)
	b = append(b, `,"deleted":`...)
	b = strconv.AppendBool(b, m.Deleted)
	return append(b, '}')
}

// AppendJSON appends u as JSON, as json.Marshal writes it.
func (u *User) AppendJSON(b []byte) []byte {
	b = append(b, `{"id":`...)
	b = strconv.AppendInt(b, u.ID, 10)
	b = appendField(b, `,"nickname":`, u.Nickname)
	b = appendField(b, `,"brief":`, u.Brief)
	b = appendField(b, `,"avatar":`, u.Avatar)
	b = append(b, `,"admin":`...)
	b = strconv.AppendBool(b, u.Admin)
	return append(b, '}')
}

// appendField appends the name part (`,"name":`) and s as a JSON string.
func appendField(b []byte, name, s string) []byte {
	b = append(b, name...)
	b, _ = jsontext.AppendQuote(b, s) // invalid UTF-8 becomes U+FFFD (see AppendJSON)
	return b
}
