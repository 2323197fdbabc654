package e2e

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// curl is a witness that is not ours: a chunked upload and keep-alive
// requests from curl inside the meshed client host.
func TestCurlThroughTheMesh(t *testing.T) {
	s := getShared(t)
	if _, err := os.Stat("/usr/bin/curl"); err != nil {
		t.Skip("curl not installed (scripts/setup.sh installs it)")
	}
	payload := make([]byte, 1<<20)
	rand.Read(payload)
	file := filepath.Join(t.TempDir(), "payload")
	if err := os.WriteFile(file, payload, 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(payload)
	base := "http://" + addrPort(s.vip, portHTTP).String()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	out, err := s.client.Command(ctx, "curl", "-sS", "--fail", "-D", "-", "-o", "/dev/null",
		"-H", "Transfer-Encoding: chunked", "--data-binary", "@"+file, base+"/echo").CombinedOutput()
	if err != nil {
		t.Fatalf("curl chunked upload: %v\n%s", err, out)
	}
	if !strings.Contains(strings.ToLower(string(out)), "x-body-sha256: "+hex.EncodeToString(sum[:])) {
		t.Errorf("the server did not receive curl's chunked body intact; response headers:\n%s", out)
	}

	// Three URLs on one command line share one keep-alive connection.
	out, err = s.client.Command(ctx, "curl", "-sS", "--fail", "-v", base+"/id", base+"/id", base+"/id").CombinedOutput()
	if err != nil {
		t.Fatalf("curl keep-alive: %v\n%s", err, out)
	}
	if n := strings.Count(string(out), "Re-using existing connection"); n != 2 {
		t.Errorf("curl re-used its connection %d times for 3 requests, want 2:\n%s", n, out)
	}
}
