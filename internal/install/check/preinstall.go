package check

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	authorizationv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skeinmesh/skein/internal/controller/inject"
)

// MinMinor is the oldest Kubernetes 1.x that Skein expects: native sidecar
// containers (the injected proxy) are on by default from 1.29 (GA in 1.33).
// Older servers get the proxy as a regular container.
const MinMinor = inject.NativeSidecarsMinMinor

// PreInstall checks that Skein can be installed: the API server answers,
// is recent enough, the caller may create what `skein install` renders,
// and nothing is in the way.
func (c *Checker) PreInstall(ctx context.Context) []Result {
	version := c.checkVersion()
	if version[0].Status == Fail {
		return version // nothing else can work
	}
	results := version
	results = append(results, c.checkPermissions(ctx)...)
	results = append(results, c.checkNoNamespace(ctx))
	if c.Dynamic != nil {
		// Whether to add --gateway-api-crds to the install.
		results = append(results, c.checkGatewayAPI(ctx))
	}
	return results
}

// checkVersion returns the reachability result, then the version one.
func (c *Checker) checkVersion() []Result {
	const reach, name = "API server is reachable", "Kubernetes version is at least 1.29"
	info, err := c.Client.Discovery().ServerVersion()
	if err != nil {
		return []Result{failed(reach, "check --kubeconfig, the current context and that the cluster is up", "%v", err)}
	}
	minor, err := strconv.Atoi(strings.TrimRight(info.Minor, "+"))
	if err != nil || info.Major != "1" {
		return []Result{ok(reach), warned(name, "", "cannot read the server version %q.%q", info.Major, info.Minor)}
	}
	if minor < MinMinor {
		return []Result{ok(reach), warned(name, "upgrade the cluster: below 1.29 the proxy is injected as a regular container, which Jobs wait for forever and which stops before the application does",
			"the server is %s", info.GitVersion)}
	}
	return []Result{ok(reach), ok(name)}
}

// required are the kinds `skein install` creates, each checked with a
// SelfSubjectAccessReview.
var required = []struct {
	group, resource string
	namespaced      bool
}{
	{"", "namespaces", false},
	{"apiextensions.k8s.io", "customresourcedefinitions", false},
	{"rbac.authorization.k8s.io", "clusterroles", false},
	{"rbac.authorization.k8s.io", "clusterrolebindings", false},
	{"admissionregistration.k8s.io", "mutatingwebhookconfigurations", false},
	{"rbac.authorization.k8s.io", "roles", true},
	{"rbac.authorization.k8s.io", "rolebindings", true},
	{"", "serviceaccounts", true},
	{"", "secrets", true},
	{"", "configmaps", true},
	{"", "services", true},
	{"apps", "deployments", true},
	{"policy", "poddisruptionbudgets", true}, // with --replicas above 1
}

func (c *Checker) checkPermissions(ctx context.Context) []Result {
	var results []Result
	for _, r := range required {
		name := "can create " + r.resource
		attrs := &authorizationv1.ResourceAttributes{Verb: "create", Group: r.group, Resource: r.resource}
		if r.namespaced {
			attrs.Namespace = c.Namespace
		}
		review := &authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: attrs}}
		callCtx, cancel := context.WithTimeout(ctx, timeout)
		got, err := c.Client.AuthorizationV1().SelfSubjectAccessReviews().Create(callCtx, review, metav1.CreateOptions{})
		cancel()
		switch {
		case err != nil:
			results = append(results, failed(name, "", "asking the API server: %v", err))
		case !got.Status.Allowed:
			detail := "not allowed"
			if got.Status.Reason != "" {
				detail += ": " + got.Status.Reason
			}
			results = append(results, failed(name, "install as a cluster administrator (cluster-admin)", "%s", detail))
		default:
			results = append(results, ok(name))
		}
	}
	return results
}

func (c *Checker) checkNoNamespace(ctx context.Context) Result {
	name := fmt.Sprintf("namespace %s does not exist yet", c.Namespace)
	callCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	_, err := c.Client.CoreV1().Namespaces().Get(callCtx, c.Namespace, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return ok(name)
	case err != nil:
		return failed(name, "", "getting namespace: %v", err)
	default:
		return failed(name, "Skein may already be installed: run `skein check`; or remove it with `skein uninstall | kubectl delete --ignore-not-found -f -`",
			"namespace %s exists", c.Namespace)
	}
}
