package install

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/skeinmesh/skein/internal/controller/identity"
)

// trustObjects are the Secrets and the ConfigMaps that hold the mesh's
// trust: the issuer (generate mode only), the join-token key (for whoever
// mints join tokens; nothing mounts it) and its public half (what the
// controller mounts), the webhook's serving certificate, and the trust
// anchors every proxy needs.
func trustObjects(cfg Config) []runtime.Object {
	var objs []runtime.Object
	if cfg.IdentityMode == IdentityGenerate {
		objs = append(objs, &corev1.Secret{
			TypeMeta:   typeMeta("v1", "Secret"),
			ObjectMeta: objectMeta(cfg, IssuerSecretName),
			Type:       corev1.SecretTypeTLS,
			Data: map[string][]byte{
				identity.IssuerCertFile:  cfg.Identity.IssuerCertPEM,
				identity.IssuerKeyFile:   cfg.Identity.IssuerKeyPEM,
				identity.TrustAnchorFile: cfg.Identity.TrustAnchorPEM,
			},
		})
	}
	objs = append(objs,
		&corev1.Secret{
			TypeMeta:   typeMeta("v1", "Secret"),
			ObjectMeta: objectMeta(cfg, JoinTokenKeySecretName),
			Type:       corev1.SecretTypeOpaque,
			Data:       map[string][]byte{identity.JoinTokenKeyFile: cfg.Identity.JoinTokenKeyPEM},
		},
		&corev1.Secret{
			TypeMeta:   typeMeta("v1", "Secret"),
			ObjectMeta: objectMeta(cfg, WebhookSecretName),
			Type:       corev1.SecretTypeTLS,
			Data: map[string][]byte{
				corev1.TLSCertKey:       cfg.Webhook.CertPEM,
				corev1.TLSPrivateKeyKey: cfg.Webhook.KeyPEM,
				"ca.crt":                cfg.Webhook.CACertPEM,
			},
		},
		&corev1.ConfigMap{
			TypeMeta:   typeMeta("v1", "ConfigMap"),
			ObjectMeta: objectMeta(cfg, JoinTokenPublicKeyConfigMapName),
			Data:       map[string]string{identity.JoinTokenPublicKeyFile: string(cfg.Identity.joinTokenPublicKeyPEM)},
		},
		&corev1.ConfigMap{
			TypeMeta:   typeMeta("v1", "ConfigMap"),
			ObjectMeta: objectMeta(cfg, TrustAnchorsConfigMapName),
			Data:       map[string]string{identity.TrustAnchorFile: string(cfg.Identity.TrustAnchorPEM)},
		},
	)
	return objs
}
