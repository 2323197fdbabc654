package kubelet

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/skeinmesh/skein/internal/atomicfile"
)

// defaultTokenExpiration is what the API server gives a token whose
// request names no expiry.
const defaultTokenExpiration = int64(time.Hour / time.Second)

// prepareVolumes makes a directory for each of the pod's volumes and fills
// it: Secret and ConfigMap keys, downward API fields, and projected
// service-account tokens. The files belong to the pod's fsGroup, if any.
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
		if err := w.fillVolume(ctx, v, dir, tokens); err != nil {
			return nil, fmt.Errorf("volume %s: %w", v.Name, err)
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

// defaultFileMode is a volume file's mode when the pod names none.
const defaultFileMode = int32(0o644)

func (w *podWorker) fillVolume(ctx context.Context, v corev1.Volume, dir string, tokens *tokenRefresher) error {
	switch {
	case v.EmptyDir != nil:
		// Writable by whichever user the containers run as.
		return os.Chmod(dir, 0o777)
	case v.Secret != nil:
		return w.writeSecret(ctx, dir, v.Secret.SecretName, v.Secret.Items, v.Secret.DefaultMode, v.Secret.Optional)
	case v.ConfigMap != nil:
		return w.writeConfigMap(ctx, dir, v.ConfigMap.Name, v.ConfigMap.Items, v.ConfigMap.DefaultMode, v.ConfigMap.Optional)
	case v.DownwardAPI != nil:
		return w.writeDownwardAPI(dir, v.DownwardAPI.Items, v.DownwardAPI.DefaultMode)
	case v.Projected != nil:
		mode := v.Projected.DefaultMode
		for _, src := range v.Projected.Sources {
			var err error
			switch {
			case src.ServiceAccountToken != nil:
				t := src.ServiceAccountToken
				tokens.files = append(tokens.files, &tokenFile{
					path:       filepath.Join(dir, t.Path),
					audience:   t.Audience,
					expiration: t.ExpirationSeconds,
				})
			case src.Secret != nil:
				err = w.writeSecret(ctx, dir, src.Secret.Name, src.Secret.Items, mode, src.Secret.Optional)
			case src.ConfigMap != nil:
				err = w.writeConfigMap(ctx, dir, src.ConfigMap.Name, src.ConfigMap.Items, mode, src.ConfigMap.Optional)
			case src.DownwardAPI != nil:
				err = w.writeDownwardAPI(dir, src.DownwardAPI.Items, mode)
			}
			if err != nil {
				return err
			}
		}
	}
	return nil
}

func (w *podWorker) writeSecret(ctx context.Context, dir, name string, items []corev1.KeyToPath, mode *int32, optional *bool) error {
	secret, err := w.cfg.Client.CoreV1().Secrets(w.pod.Namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		if apierrors.IsNotFound(err) && optional != nil && *optional {
			return nil
		}
		return fmt.Errorf("reading Secret %s: %w", name, err)
	}
	return w.writeKeys(dir, "Secret "+name, secret.Data, items, mode)
}

func (w *podWorker) writeConfigMap(ctx context.Context, dir, name string, items []corev1.KeyToPath, mode *int32, optional *bool) error {
	cm, err := w.cfg.Client.CoreV1().ConfigMaps(w.pod.Namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		if apierrors.IsNotFound(err) && optional != nil && *optional {
			return nil
		}
		return fmt.Errorf("reading ConfigMap %s: %w", name, err)
	}
	data := map[string][]byte{}
	for k, v := range cm.Data {
		data[k] = []byte(v)
	}
	maps.Copy(data, cm.BinaryData)
	return w.writeKeys(dir, "ConfigMap "+name, data, items, mode)
}

// writeKeys writes the listed keys of data to their paths, or every key
// to a file of its name when no items are listed.
func (w *podWorker) writeKeys(dir, what string, data map[string][]byte, items []corev1.KeyToPath, mode *int32) error {
	if len(items) == 0 {
		for key := range data {
			items = append(items, corev1.KeyToPath{Key: key, Path: key})
		}
	}
	for _, item := range items {
		value, ok := data[item.Key]
		if !ok {
			return fmt.Errorf("%s has no key %q", what, item.Key)
		}
		fileMode := item.Mode
		if fileMode == nil {
			fileMode = mode
		}
		if err := w.writeVolumeFile(filepath.Join(dir, item.Path), value, fileMode); err != nil {
			return err
		}
	}
	return nil
}

func (w *podWorker) writeDownwardAPI(dir string, items []corev1.DownwardAPIVolumeFile, mode *int32) error {
	for _, item := range items {
		if item.FieldRef == nil {
			return fmt.Errorf("downward API file %s: only fieldRef is supported", item.Path)
		}
		var value string
		switch path := item.FieldRef.FieldPath; path {
		case "metadata.name":
			value = w.pod.Name
		case "metadata.namespace":
			value = w.pod.Namespace
		case "metadata.uid":
			value = string(w.pod.UID)
		default:
			return fmt.Errorf("downward API file %s: fieldRef %s is not supported", item.Path, path)
		}
		fileMode := item.Mode
		if fileMode == nil {
			fileMode = mode
		}
		if err := w.writeVolumeFile(filepath.Join(dir, item.Path), []byte(value), fileMode); err != nil {
			return err
		}
	}
	return nil
}

// writeVolumeFile writes one file of a volume with the given mode (default
// 0644), group-owned by the pod's fsGroup when it has one.
func (w *podWorker) writeVolumeFile(path string, data []byte, mode *int32) error {
	if err := writeFileAtomically(path, data); err != nil {
		return err
	}
	perm := defaultFileMode
	if mode != nil {
		perm = *mode
	}
	if err := os.Chmod(path, os.FileMode(perm)&os.ModePerm); err != nil {
		return err
	}
	if sc := w.pod.Spec.SecurityContext; sc != nil && sc.FSGroup != nil {
		if err := os.Chown(path, -1, int(*sc.FSGroup)); err != nil {
			return fmt.Errorf("giving %s to group %d: %w", path, *sc.FSGroup, err)
		}
	}
	return nil
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
// file, making its directory first.
func writeFileAtomically(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("creating directory of %s: %w", path, err)
	}
	return atomicfile.Write(path, data, 0o644)
}
