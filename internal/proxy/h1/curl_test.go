package h1

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// curl runs curl (a third-party client) and returns its stdout and stderr.
func curl(t *testing.T, args ...string) (string, string) {
	t.Helper()
	path, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl not installed (scripts/setup.sh installs it)")
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(path, append([]string{"-sS", "--max-time", "30"}, args...)...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("curl %v: %v\n%s", args, err, stderr.String())
	}
	return stdout.String(), stderr.String()
}

// hashingBackend answers every request with the SHA-256 of its body and
// what it saw of the framing.
func hashingBackend(t *testing.T) *backend {
	return startBackend(t, func(w http.ResponseWriter, r *http.Request) {
		sum := sha256.New()
		n, err := io.Copy(sum, r.Body)
		if err != nil {
			t.Errorf("backend reading body: %v", err)
		}
		_, _ = io.WriteString(w, strings.Join([]string{
			hex.EncodeToString(sum.Sum(nil)),
			strings.Join(r.TransferEncoding, ","),
			"expect=" + r.Header.Get("Expect"),
			"len=" + fmtInt(n),
		}, " "))
	})
}

func fmtInt(n int64) string { return strconv.FormatInt(n, 10) }

func payloadFile(t *testing.T, size int) (string, string) {
	data := bytes.Repeat([]byte("skein-"), size/6)
	path := filepath.Join(t.TempDir(), "payload")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	return path, hex.EncodeToString(sum[:])
}

func TestCurlChunkedUpload(t *testing.T) {
	be := hashingBackend(t)
	p := startProxy(t, Config{}, be.hostPort())
	path, sum := payloadFile(t, 300_000)
	out, _ := curl(t, "-H", "Transfer-Encoding: chunked", "--data-binary", "@"+path, "http://"+p.addr+"/up")
	if want := sum + " chunked expect= len=" + fmtInt(300_000); out != want {
		t.Errorf("backend saw %q, want %q", out, want)
	}
}

func TestCurlExpectContinue(t *testing.T) {
	be := hashingBackend(t)
	p := startProxy(t, Config{}, be.hostPort())
	path, sum := payloadFile(t, 2<<20)
	// A long expect timeout: curl sends the body only on the proxy's 100.
	out, trace := curl(t, "-v", "--expect100-timeout", "30", "-H", "Expect: 100-continue",
		"--data-binary", "@"+path, "http://"+p.addr+"/up")
	if !strings.Contains(trace, "< HTTP/1.1 100 Continue") {
		t.Errorf("curl saw no 100 Continue:\n%s", trace)
	}
	if want := sum + "  expect= len=" + fmtInt(int64(len(bytes.Repeat([]byte("skein-"), (2<<20)/6)))); out != want {
		t.Errorf("backend saw %q, want %q (no Expect upstream)", out, want)
	}
}

func TestCurlReusesOneConnection(t *testing.T) {
	be := hashingBackend(t)
	p := startProxy(t, Config{}, be.hostPort())
	out, _ := curl(t, "http://"+p.addr+"/a", "http://"+p.addr+"/b")
	if strings.Count(out, "len=0") != 2 {
		t.Errorf("curl output %q, want two answers", out)
	}
	if n := p.accepts.Load(); n != 1 {
		t.Errorf("the proxy accepted %d connections for curl's two URLs, want 1", n)
	}
}
