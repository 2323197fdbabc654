package redact

import "testing"

func TestCredentialsAreHiddenWhateverTheirCase(t *testing.T) {
	for _, c := range []struct {
		name, value, want string
	}{
		{"Authorization", "Bearer s3cret", Redacted},
		{"authorization", "Basic x", Redacted},
		{"Proxy-Authorization", "Basic y", Redacted},
		{"cookie", "session=abc", Redacted},
		{"Set-Cookie", "session=abc", Redacted},
		{"content-type", "text/plain", "text/plain"},
		{"x-authorization-hint", "keep", "keep"},
	} {
		if got := Value(c.name, c.value); got != c.want {
			t.Errorf("Value(%q, %q) = %q, want %q", c.name, c.value, got, c.want)
		}
	}
}
