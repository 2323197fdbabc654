package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// profileSidecars records a CPU profile of every sidecar that offers one,
// for seconds, into dir. It returns at once; wait blocks until every
// profile is written and returns the first error.
func profileSidecars(ctx context.Context, sidecars []sidecar, seconds int, dir, prefix string) (wait func() error) {
	var wg sync.WaitGroup
	errs := make([]error, len(sidecars))
	for i, s := range sidecars {
		if s.profileURL == "" {
			continue
		}
		path := filepath.Join(dir, prefix+"-"+s.role+".pprof")
		wg.Go(func() { errs[i] = fetchProfile(ctx, s, seconds, path) })
	}
	return func() error {
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				return err
			}
		}
		return nil
	}
}

// fetchProfile asks one sidecar for a CPU profile and writes it to path.
func fetchProfile(ctx context.Context, s sidecar, seconds int, path string) error {
	client := &http.Client{
		Transport: &http.Transport{DialContext: dialerIn(s.host)},
		Timeout:   time.Duration(seconds)*time.Second + 30*time.Second,
	}
	defer client.CloseIdleConnections()
	url := fmt.Sprintf("%s?seconds=%d", s.profileURL, seconds)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("profiling %s proxy: %w", s.role, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("profiling %s proxy: %s: %s", s.role, resp.Status, body)
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("writing profile: %w", err)
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return fmt.Errorf("profiling %s proxy: %w", s.role, err)
	}
	return f.Close()
}
