package service

import (
	"testing"

	"dce/app/node"

	"github.com/go-json-experiment/json"
)

// SendResult encodes itself exactly as json.Marshal does, and the router
// takes that path.
func TestSendResultAppendJSON(t *testing.T) {
	for _, r := range []SendResult{
		{},
		{ID: 1042, TS: 1763800000123, CID: "c-81", Conv: "user:7"},
		{ID: -1, TS: 1, CID: "quote \" back\\slash \u0001 ünï 😀 \u2028", Conv: "room:lobby"},
	} {
		want, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if got := r.AppendJSON(nil); string(got) != string(want) {
			t.Errorf("AppendJSON = %s, want %s", got, want)
		}
		if got, err := node.EncodeResult(r); err != nil || string(got) != string(want) {
			t.Errorf("EncodeResult = %s, %v; want %s", got, err, want)
		}
	}
}
