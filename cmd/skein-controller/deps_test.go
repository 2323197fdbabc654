package main

import (
	"os/exec"
	"strings"
	"testing"
)

// The destination service encodes each update once and sends those bytes on
// every stream, uncompressed; that is right only while no compressor is
// registered, so that no client can negotiate one.
func TestControllerRegistersNoCompressor(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, pkg := range strings.Fields(string(out)) {
		if strings.HasPrefix(pkg, "google.golang.org/grpc/encoding/") &&
			pkg != "google.golang.org/grpc/encoding/proto" && pkg != "google.golang.org/grpc/encoding/internal" {
			t.Errorf("skein-controller links %s: a registered compressor breaks the shared encoding of destination updates (internal/controller/destination)", pkg)
		}
	}
}
