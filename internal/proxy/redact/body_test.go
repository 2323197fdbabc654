package redact

import (
	"strings"
	"testing"
)

func TestBodyHidesJSONFieldsAtAnyDepthWhateverTheirCase(t *testing.T) {
	b, err := NewBody([]string{"password", "Token"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	in := `{"user": "ann", "Password": "hunter2", "nested": {"a": [1, {"token": {"x": "s3cret"}}]}, "n": 3}` + "\n" + `{"pass\u0077ord":"again"}`
	want := `{"user": "ann", "Password": "[REDACTED]", "nested": {"a": [1, {"token": "[REDACTED]"}]}, "n": 3}` + "\n" + `{"pass\u0077ord":"[REDACTED]"}`
	got, cut := b.Apply([]byte(in))
	if string(got) != want || cut {
		t.Errorf("Apply =\n%s (cut %t)\nwant\n%s", got, cut, want)
	}
}

// Cut anywhere, a prefix never shows any byte of a hidden value, and what
// it shows is what was sent up to where it stops.
func TestBodyTruncatedJSONPrefixNeverShowsAHiddenValue(t *testing.T) {
	b, _ := NewBody([]string{"password"}, nil)
	in := `{"user":"ann","password":"hunter2-very-secret","list":["x","y"],"deep":{"password":{"v":"hunter2-very-secret"}}}`
	for n := 1; n <= len(in); n++ {
		got, cut := b.Apply([]byte(in[:n]))
		if strings.Contains(string(got), "hunter") || strings.Contains(string(got), "secret") {
			t.Fatalf("prefix of %d bytes shows the hidden value: %s", n, got)
		}
		if n < len(in) && !cut {
			t.Errorf("prefix of %d bytes not reported as cut: %s", n, got)
		}
		plain := strings.ReplaceAll(string(got), `"[REDACTED]"`, "")
		if !strings.HasPrefix(strings.ReplaceAll(in, `"hunter2-very-secret"`, ""), plain) &&
			!strings.HasPrefix(strings.ReplaceAll(strings.ReplaceAll(in, `"hunter2-very-secret"`, ""), `{"v":}`, ""), plain) {
			t.Errorf("prefix of %d bytes: %s is not what was sent", n, got)
		}
	}
	// A key cut short is left out: it might be the hidden one.
	if got, _ := b.Apply([]byte(`{"user":"ann","passw`)); string(got) != `{"user":"ann",` {
		t.Errorf("cut key: %s", got)
	}
}

func TestBodyLeavesNonJSONToPatterns(t *testing.T) {
	b, err := NewBody([]string{"password"}, []string{`\b\d{4}-\d{4}-\d{4}-\d{4}\b`, `(?i)bearer [a-z0-9.]+`})
	if err != nil {
		t.Fatal(err)
	}
	got, cut := b.Apply([]byte(`password=x card 1234-5678-9012-3456 Bearer abc.def`))
	if want := `password=x card [REDACTED] [REDACTED]`; string(got) != want || cut {
		t.Errorf("Apply = %s (cut %t), want %s", got, cut, want)
	}
	got, _ = b.Apply([]byte(`{"password":"p","card":"1234-5678-9012-3456"}`))
	if want := `{"password":"[REDACTED]","card":"[REDACTED]"}`; string(got) != want {
		t.Errorf("Apply = %s, want %s", got, want)
	}
	if _, err := NewBody(nil, []string{"("}); err == nil {
		t.Error("a pattern that does not compile was taken")
	}
}

func TestBodyWithoutRulesIsACopy(t *testing.T) {
	in := []byte(`{"password":"p"}`)
	got, cut := (&Body{}).Apply(in)
	if string(got) != string(in) || cut {
		t.Errorf("Apply = %s", got)
	}
	got[0] = 'x'
	if in[0] != '{' {
		t.Error("Apply shares the caller's bytes")
	}
}

func TestHeadersHideCredentialsAndNamedFields(t *testing.T) {
	h := NewHeaders([]string{"X-Api-Key"})
	for name, want := range map[string]string{"authorization": Redacted, "x-api-key": Redacted, "X-API-KEY": Redacted, "accept": "v"} {
		if got := h.Value(name, "v"); got != want {
			t.Errorf("Value(%s) = %s, want %s", name, got, want)
		}
	}
	if got := (Headers{}).Value("cookie", "c"); got != Redacted {
		t.Errorf("zero Headers show a cookie: %s", got)
	}
}
