package install

import (
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// Objects returns every object of the installation in the order they are
// applied: namespace, CRDs (Skein's, then the Gateway API's when asked for), RBAC, Secrets and ConfigMaps (the
// recorded configuration, skein-config; the Grafana dashboards' too, when asked for), Service,
// Deployment (and its disruption budget), webhook configuration. The webhook comes last so that it is
// never registered before the controller that serves it exists. Missing
// trust material is generated (see Config).
func Objects(cfg Config) ([]runtime.Object, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	now := time.Now()
	var err error
	if cfg.Identity, err = cfg.Identity.complete(cfg.IdentityMode, cfg.TrustDomain, now); err != nil {
		return nil, err
	}
	if cfg.Webhook, err = cfg.Webhook.complete(cfg.Namespace, now); err != nil {
		return nil, err
	}
	crds, err := crdObjects(cfg.CRDs, partOfLabels())
	if err != nil {
		return nil, err
	}
	gatewayCRDs, err := crdObjects(cfg.GatewayAPICRDs, nil)
	if err != nil {
		return nil, fmt.Errorf("reading the Gateway API CRDs: %w", err)
	}
	crds = append(crds, gatewayCRDs...)
	objs := []runtime.Object{namespace(cfg)}
	objs = append(objs, crds...)
	objs = append(objs, rbacObjects(cfg)...)
	objs = append(objs, trustObjects(cfg)...)
	record, err := configObject(cfg)
	if err != nil {
		return nil, err
	}
	objs = append(objs, record)
	if len(cfg.GrafanaDashboards) > 0 {
		dashboards, err := grafanaDashboards(cfg)
		if err != nil {
			return nil, err
		}
		objs = append(objs, dashboards)
	}
	objs = append(objs, controllerObjects(cfg)...)
	objs = append(objs, webhookConfiguration(cfg))
	return objs, nil
}

func namespace(cfg Config) *corev1.Namespace {
	meta := clusterObjectMeta(cfg.Namespace)
	// The webhook's namespaceSelector already skips this namespace; the
	// label says so to a person, and the controller passes the restricted
	// pod-security profile.
	meta.Labels["skein.io/inject"] = "disabled"
	meta.Labels["pod-security.kubernetes.io/enforce"] = "restricted"
	return &corev1.Namespace{TypeMeta: typeMeta("v1", "Namespace"), ObjectMeta: meta}
}

func typeMeta(apiVersion, kind string) metav1.TypeMeta {
	return metav1.TypeMeta{APIVersion: apiVersion, Kind: kind}
}

// partOfLabels mark everything Skein installs (`kubectl get all -A -l
// app.kubernetes.io/part-of=skein`).
func partOfLabels() map[string]string {
	return map[string]string{"app.kubernetes.io/part-of": "skein"}
}

func objectMeta(cfg Config, name string) metav1.ObjectMeta {
	labels := partOfLabels()
	if name == ControllerName {
		for k, v := range ControllerSelector {
			labels[k] = v
		}
	}
	return metav1.ObjectMeta{Name: name, Namespace: cfg.Namespace, Labels: labels}
}

func clusterObjectMeta(name string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: name, Labels: partOfLabels()}
}
