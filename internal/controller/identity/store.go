package identity

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/skeinmesh/skein/internal/atomicfile"
)

// IssuerPEM is the issuer material an anchor rotation edits, as PEM: the
// anchors proxies trust (ca.crt), the issuer's certificate (tls.crt) and
// its key (tls.key).
type IssuerPEM struct {
	Anchors, Cert, Key []byte
}

// IssuerStore is where the controller reads its issuer from: an issuer
// directory (-identity-dir) or a Kubernetes Secret (-identity-secret).
// A controller follows either without a restart.
type IssuerStore interface {
	// Load reads the material; Anchors is nil when the store has no
	// ca.crt yet.
	Load(ctx context.Context) (IssuerPEM, error)
	// Save writes the material so that a controller following the store
	// never loads a key with another certificate, and fails when the
	// store changed since Load.
	Save(ctx context.Context, m IssuerPEM) error
	// String names the store in messages.
	String() string
}

// DirStore is an issuer directory.
type DirStore string

func (d DirStore) String() string { return string(d) }

func (d DirStore) Load(context.Context) (IssuerPEM, error) {
	var m IssuerPEM
	var err error
	if m.Cert, err = os.ReadFile(filepath.Join(string(d), IssuerCertFile)); err != nil {
		return m, err
	}
	if m.Key, err = os.ReadFile(filepath.Join(string(d), IssuerKeyFile)); err != nil {
		return m, err
	}
	m.Anchors, err = os.ReadFile(filepath.Join(string(d), TrustAnchorFile))
	if errors.Is(err, fs.ErrNotExist) {
		return m, nil
	}
	return m, err
}

// Save writes the key first, each file renamed into place: a watcher that
// reads between two renames sees a key and certificate that do not match,
// refuses them and keeps the old issuer until the certificate lands.
func (d DirStore) Save(_ context.Context, m IssuerPEM) error {
	for _, f := range []trustFile{
		{filepath.Join(string(d), IssuerKeyFile), m.Key, 0o600},
		{filepath.Join(string(d), IssuerCertFile), m.Cert, 0o644},
		{filepath.Join(string(d), TrustAnchorFile), m.Anchors, 0o644},
	} {
		if err := atomicfile.Write(f.path, f.data, f.mode); err != nil {
			return err
		}
	}
	return nil
}

// SecretStore is the issuer Secret of a Kubernetes install and the
// ConfigMap that holds a copy of its anchors (for `skein inject` and
// `skein install` run offline or again), kept equal to ca.crt.
type SecretStore struct {
	Client                     kubernetes.Interface
	Namespace, Name, ConfigMap string

	loaded *corev1.Secret // by Load: Save updates this version only
}

// certManagerAnnotation marks a Secret that cert-manager writes.
const certManagerAnnotation = "cert-manager.io/certificate-name"

// kubeTimeout bounds each API call of a SecretStore.
const kubeTimeout = 10 * time.Second

func (s *SecretStore) String() string { return "secret " + s.Namespace + "/" + s.Name }

func (s *SecretStore) Load(ctx context.Context) (IssuerPEM, error) {
	ctx, cancel := context.WithTimeout(ctx, kubeTimeout)
	defer cancel()
	secret, err := s.Client.CoreV1().Secrets(s.Namespace).Get(ctx, s.Name, metav1.GetOptions{})
	if err != nil {
		return IssuerPEM{}, fmt.Errorf("reading %s: %w", s, err)
	}
	if cert := secret.Annotations[certManagerAnnotation]; cert != "" {
		return IssuerPEM{}, fmt.Errorf("%s is written by cert-manager (Certificate %s), which would undo an edit: rotate the anchor of its CA Issuer instead (docs/install.md)", s, cert)
	}
	s.loaded = secret
	m := IssuerPEM{Cert: secret.Data[IssuerCertFile], Key: secret.Data[IssuerKeyFile], Anchors: secret.Data[TrustAnchorFile]}
	if len(m.Cert) == 0 || len(m.Key) == 0 {
		return IssuerPEM{}, fmt.Errorf("%s has no %s or no %s", s, IssuerCertFile, IssuerKeyFile)
	}
	return m, nil
}

// Save updates the Secret (refused by the API server when it changed
// since Load), then the ConfigMap's copy of the anchors.
func (s *SecretStore) Save(ctx context.Context, m IssuerPEM) error {
	if s.loaded == nil {
		return fmt.Errorf("saving %s before loading it", s)
	}
	ctx, cancel := context.WithTimeout(ctx, kubeTimeout)
	defer cancel()
	secret := s.loaded.DeepCopy()
	if secret.Data == nil {
		secret.Data = map[string][]byte{}
	}
	secret.Data[IssuerCertFile], secret.Data[IssuerKeyFile], secret.Data[TrustAnchorFile] = m.Cert, m.Key, m.Anchors
	updated, err := s.Client.CoreV1().Secrets(s.Namespace).Update(ctx, secret, metav1.UpdateOptions{})
	if apierrors.IsConflict(err) {
		return fmt.Errorf("%s changed while this ran; nothing was written, run it again: %w", s, err)
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", s, err)
	}
	s.loaded = updated
	if s.ConfigMap == "" {
		return nil
	}
	cm, err := s.Client.CoreV1().ConfigMaps(s.Namespace).Get(ctx, s.ConfigMap, metav1.GetOptions{})
	if err == nil {
		if cm.Data == nil {
			cm.Data = map[string]string{}
		}
		cm.Data[TrustAnchorFile] = string(m.Anchors)
		_, err = s.Client.CoreV1().ConfigMaps(s.Namespace).Update(ctx, cm, metav1.UpdateOptions{})
	}
	if err != nil {
		// The controller and new pods follow the Secret, so traffic is
		// safe; what reads the ConfigMap refuses the mismatch until fixed.
		return fmt.Errorf("%s is written, but its copy of the anchors in configmap %s/%s is not (run the step again to copy them): %w", s, s.Namespace, s.ConfigMap, err)
	}
	return nil
}
