package check

import (
	"fmt"
	"io"
)

// Status is the outcome of one check.
type Status string

const (
	OK   Status = "ok"
	Warn Status = "warn"
	Fail Status = "FAIL"
)

// Result is one check's outcome. Its JSON is what `skein check -o json`
// prints.
type Result struct {
	Name   string `json:"name"`
	Status Status `json:"status"`
	Detail string `json:"detail,omitempty"` // what was found, on warn and FAIL
	Hint   string `json:"hint,omitempty"`   // what to do about it
}

func ok(name string) Result { return Result{Name: name, Status: OK} }

func failed(name, hint, format string, args ...any) Result {
	return Result{Name: name, Status: Fail, Detail: fmt.Sprintf(format, args...), Hint: hint}
}

func warned(name, hint, format string, args ...any) Result {
	return Result{Name: name, Status: Warn, Detail: fmt.Sprintf(format, args...), Hint: hint}
}

// Failed reports whether any result is a failure.
func Failed(results []Result) bool {
	for _, r := range results {
		if r.Status == Fail {
			return true
		}
	}
	return false
}

// Print writes one plain-ASCII line per result, "[ok] name" or
// "[FAIL] name: detail", and the hint indented under a warning or failure.
func Print(w io.Writer, results []Result) {
	for _, r := range results {
		if r.Detail == "" {
			fmt.Fprintf(w, "[%s] %s\n", r.Status, r.Name)
		} else {
			fmt.Fprintf(w, "[%s] %s: %s\n", r.Status, r.Name, r.Detail)
		}
		if r.Hint != "" && r.Status != OK {
			fmt.Fprintf(w, "    hint: %s\n", r.Hint)
		}
	}
}
