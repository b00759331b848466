package model

import (
	"errors"
	"testing"
)

func TestParseAddress(t *testing.T) {
	good := map[string]Address{
		"room:lobby":               {Kind: AddrRoom},
		"user:7":                   {Kind: AddrUser, ID: 7},
		"group:3":                  {Kind: AddrGroup, ID: 3},
		"user:9223372036854775807": {Kind: AddrUser, ID: 9223372036854775807},
	}
	for in, want := range good {
		got, err := ParseAddress(in)
		if err != nil || got != want || got.String() != in {
			t.Errorf("ParseAddress(%q) = %+v, %v (String %q)", in, got, err, got.String())
		}
	}
	for _, in := range []string{"", "room:other", "room:", "lobby", "user:", "user:0", "user:07", "user:-1", "user:+1",
		"user:1.0", "user: 1", "user:1 ", "user:9223372036854775808", "user:99999999999999999999", "USER:1", "group:x",
		"user:1:2", "user:\u0661"} {
		if got, err := ParseAddress(in); !errors.Is(err, ErrBadAddress) {
			t.Errorf("ParseAddress(%q) = %+v, %v; want ErrBadAddress", in, got, err)
		}
	}
	if k := (Address{Kind: AddrUser, ID: 9}).Key(7); k != "dm:7:9" || k.ViewFor(7) != "user:9" || k.ViewFor(9) != "user:7" {
		t.Errorf("direct key %q views %q / %q", k, k.ViewFor(7), k.ViewFor(9))
	}
	if DirectKey(9, 7) != DirectKey(7, 9) {
		t.Error("DirectKey is not symmetric")
	}
}
