package admin

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// AwaitReady asks url (an admin server's /ready) every interval until it
// answers 200 or ctx ends; then it says what it last heard. It is how a
// container that must not start before its proxy waits for it where the
// proxy cannot run as a native sidecar (a postStart hook).
func AwaitReady(ctx context.Context, url string, interval time.Duration) error {
	client := &http.Client{Timeout: interval + time.Second}
	last := "no answer yet"
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("%s: %s", resp.Status, strings.TrimSpace(string(body)))
		} else if ctx.Err() == nil {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready (%s): %w", url, last, context.Cause(ctx))
		case <-time.After(interval):
		}
	}
}
