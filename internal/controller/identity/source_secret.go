package identity

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
)

// SecretSource reads issuer material from one Kubernetes Secret (keys
// tls.crt, tls.key, ca.crt, as cert-manager writes them) and follows its
// changes with a watch.
type SecretSource struct {
	issuerHolder
	client          kubernetes.Interface
	namespace, name string
}

// NewSecretSource gets the Secret and loads its issuer; it fails if that
// issuer is not valid. A Secret that does not exist yet (cert-manager
// writes it a moment after its Certificate is applied, maybe after the
// controller starts) is waited for: the source then has no issuer, which
// keeps the controller unready and refuses every certificate, until Run
// finds it. Call Run to follow changes. A nil now means time.Now.
func NewSecretSource(ctx context.Context, client kubernetes.Interface, namespace, name string, log *slog.Logger, now func() time.Time) (*SecretSource, error) {
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = slog.Default()
	}
	s := &SecretSource{client: client, namespace: namespace, name: name}
	s.issuerHolder = issuerHolder{now: now, log: log, origin: "secret " + namespace + "/" + name}
	if _, err := s.get(ctx); apierrors.IsNotFound(err) {
		log.Warn("issuer secret not found yet; waiting for it", "source", s.origin)
		return s, nil
	} else if err != nil {
		return nil, err
	}
	if s.Issuer() == nil {
		return nil, fmt.Errorf("secret %s/%s: %w", namespace, name, errNoIssuer)
	}
	return s, nil
}

// Run watches the Secret until ctx is done, re-getting it and watching
// again with back-off whenever the watch ends.
func (s *SecretSource) Run(ctx context.Context) error {
	backoff := time.Second
	for {
		rv, err := s.get(ctx)
		if err == nil {
			backoff = time.Second
			err = s.watch(ctx, rv)
		}
		if ctx.Err() != nil {
			return nil
		}
		if apierrors.IsNotFound(err) {
			// Look again each second until it is made.
			backoff = time.Second / 2
		} else if err != nil {
			s.log.Warn("watching issuer secret, retrying", "source", s.origin, "err", err, "in", backoff)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 30*time.Second)
	}
}

// get reads the Secret, applies it and returns its resource version.
func (s *SecretSource) get(ctx context.Context) (string, error) {
	secret, err := s.client.CoreV1().Secrets(s.namespace).Get(ctx, s.name, metav1.GetOptions{})
	if err != nil {
		return "", fmt.Errorf("getting secret %s/%s: %w", s.namespace, s.name, err)
	}
	s.apply(secret)
	return secret.ResourceVersion, nil
}

func (s *SecretSource) watch(ctx context.Context, resourceVersion string) error {
	w, err := s.client.CoreV1().Secrets(s.namespace).Watch(ctx, metav1.ListOptions{
		FieldSelector:   fields.OneTermEqualSelector("metadata.name", s.name).String(),
		ResourceVersion: resourceVersion,
	})
	if err != nil {
		return fmt.Errorf("watching secret %s/%s: %w", s.namespace, s.name, err)
	}
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case event, ok := <-w.ResultChan():
			if !ok {
				return errors.New("watch closed")
			}
			switch event.Type {
			case watch.Added, watch.Modified:
				if secret, ok := event.Object.(*corev1.Secret); ok && secret.Name == s.name {
					s.apply(secret)
				}
			case watch.Deleted:
				s.log.Warn("issuer secret deleted, keeping the current issuer", "source", s.origin)
			case watch.Error:
				return fmt.Errorf("watch error: %v", event.Object)
			}
		}
	}
}

func (s *SecretSource) apply(secret *corev1.Secret) {
	_ = s.replace(secret.Data[IssuerCertFile], secret.Data[IssuerKeyFile], secret.Data[TrustAnchorFile])
}
