package kubelet

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// defaultTokenExpiration is what the API server gives a token whose
// request names no expiry.
const defaultTokenExpiration = int64(time.Hour / time.Second)

// prepareVolumes makes a directory for each of the pod's volumes and
// writes its projected service-account tokens there.
func (w *podWorker) prepareVolumes(ctx context.Context) (*tokenRefresher, error) {
	tokens := &tokenRefresher{client: w.cfg.Client, pod: w.pod, log: w.log}
	if err := os.MkdirAll(w.dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating pod directory: %w", err)
	}
	for _, v := range w.pod.Spec.Volumes {
		dir := filepath.Join(w.dir, v.Name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("volume %s: %w", v.Name, err)
		}
		if v.Projected == nil {
			continue
		}
		for _, src := range v.Projected.Sources {
			if t := src.ServiceAccountToken; t != nil {
				tokens.files = append(tokens.files, &tokenFile{
					path:       filepath.Join(dir, t.Path),
					audience:   t.Audience,
					expiration: t.ExpirationSeconds,
				})
			}
		}
	}
	// Everything but the refreshes happens before the containers start, so
	// that they find their tokens.
	for _, f := range tokens.files {
		if err := tokens.write(ctx, f); err != nil {
			return nil, err
		}
	}
	return tokens, nil
}

// tokenRefresher keeps a pod's projected service-account tokens fresh.
type tokenRefresher struct {
	client kubernetes.Interface
	pod    *corev1.Pod
	log    *slog.Logger
	files  []*tokenFile
}

type tokenFile struct {
	path       string
	audience   string // empty: the API server's own
	expiration *int64 // seconds
	refreshAt  time.Time
}

// refreshUntilDone rewrites each token at 80% of its life until ctx ends.
// A failed refresh is retried a few seconds later; the old token stays
// meanwhile.
func (r *tokenRefresher) refreshUntilDone(ctx context.Context) {
	for len(r.files) > 0 {
		next := r.files[0]
		for _, f := range r.files[1:] {
			if f.refreshAt.Before(next.refreshAt) {
				next = f
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Until(next.refreshAt)):
		}
		if err := r.write(ctx, next); err != nil && ctx.Err() == nil {
			r.log.Warn("refreshing service-account token", "path", next.path, "err", err)
			next.refreshAt = time.Now().Add(5 * time.Second)
		}
	}
}

// write requests a token bound to the pod and writes it to f.path.
func (r *tokenRefresher) write(ctx context.Context, f *tokenFile) error {
	expiration := defaultTokenExpiration
	if f.expiration != nil {
		expiration = *f.expiration
	}
	req := &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{
			ExpirationSeconds: &expiration,
			BoundObjectRef: &authenticationv1.BoundObjectReference{
				Kind: "Pod", APIVersion: "v1", Name: r.pod.Name, UID: r.pod.UID,
			},
		},
	}
	if f.audience != "" {
		req.Spec.Audiences = []string{f.audience}
	}
	sa := r.pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	resp, err := r.client.CoreV1().ServiceAccounts(r.pod.Namespace).CreateToken(ctx, sa, req, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("requesting token for service account %s/%s: %w", r.pod.Namespace, sa, err)
	}
	if err := writeFileAtomically(f.path, []byte(resp.Status.Token)); err != nil {
		return err
	}
	life := time.Until(resp.Status.ExpirationTimestamp.Time)
	f.refreshAt = time.Now().Add(life * 8 / 10)
	r.log.Debug("service-account token written", "path", f.path, "refresh_at", f.refreshAt)
	return nil
}

// writeFileAtomically replaces path so that a reader never sees half a
// token.
func writeFileAtomically(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("creating directory of %s: %w", path, err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("replacing %s: %w", path, err)
	}
	return nil
}
