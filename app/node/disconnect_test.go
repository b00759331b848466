package node_test

import (
	"errors"
	"fmt"
	"testing"

	"dce/app/node"
)

// A Disconnect is found with errors.As however deep it is wrapped, and a
// request that meets one is answered with the refusal it carries; one
// without a refusal is internal to a request, never a nil *Error.
func TestDisconnectIsAnErrorWithItsRefusal(t *testing.T) {
	refusal := node.Errorf(node.CodeForbidden, "banned until %s", "tomorrow")
	err := fmt.Errorf("resume: %w", node.NewDisconnect(node.CloseBanned, refusal))
	var d *node.Disconnect
	if !errors.As(err, &d) || d.Code != node.CloseBanned || d.Reason != "banned until tomorrow" {
		t.Fatalf("errors.As: %v %+v", errors.As(err, &d), d)
	}
	if e, ok := node.AsError(err); !ok || e != refusal {
		t.Fatalf("AsError: %v %v, want the refusal", e, ok)
	}
	bare := &node.Disconnect{Code: node.CloseOverConnLimit, Reason: "full"}
	if bare.Unwrap() != nil {
		t.Fatal("Unwrap of a Disconnect without a refusal is a non-nil error")
	}
	if e, ok := node.AsError(bare); ok || e.Code != node.CodeInternal {
		t.Fatalf("AsError of a bare Disconnect: %v %v, want internal", e, ok)
	}
	if bare.Error() != "full" {
		t.Fatalf("Error() = %q, want the reason", bare.Error())
	}
}
