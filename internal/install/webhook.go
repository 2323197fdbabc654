package install

import (
	admissionv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// webhookConfiguration sends pod creations to the controller's injector.
// Every pod outside the skein namespace and kube-system goes there; the
// injector decides from the skein.io/inject annotations of the pod and its
// namespace. Failures are ignored so that a webhook outage never blocks a
// pod, at the price of a pod that asked for injection starting without its
// proxy (`skein check` reports an unready controller, `skein check --proxy`
// the pods left without a proxy).
func webhookConfiguration(cfg Config) *admissionv1.MutatingWebhookConfiguration {
	path := WebhookPath
	port := int32(WebhookServicePort)
	failurePolicy := admissionv1.Ignore
	sideEffects := admissionv1.SideEffectClassNone
	reinvocation := admissionv1.NeverReinvocationPolicy
	matchPolicy := admissionv1.Equivalent
	scope := admissionv1.NamespacedScope
	return &admissionv1.MutatingWebhookConfiguration{
		TypeMeta:   typeMeta("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration"),
		ObjectMeta: clusterObjectMeta(WebhookConfigurationName),
		Webhooks: []admissionv1.MutatingWebhook{{
			Name: WebhookName,
			ClientConfig: admissionv1.WebhookClientConfig{
				Service:  &admissionv1.ServiceReference{Namespace: cfg.Namespace, Name: ControllerName, Path: &path, Port: &port},
				CABundle: cfg.Webhook.CACertPEM,
			},
			Rules: []admissionv1.RuleWithOperations{{
				Operations: []admissionv1.OperationType{admissionv1.Create},
				Rule: admissionv1.Rule{
					APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}, Scope: &scope,
				},
			}},
			FailurePolicy: &failurePolicy,
			MatchPolicy:   &matchPolicy,
			NamespaceSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
				Key:      "kubernetes.io/metadata.name",
				Operator: metav1.LabelSelectorOpNotIn,
				Values:   []string{cfg.Namespace, "kube-system"},
			}}},
			SideEffects:             &sideEffects,
			TimeoutSeconds:          ptr(int32(5)),
			AdmissionReviewVersions: []string{"v1"},
			ReinvocationPolicy:      &reinvocation,
		}},
	}
}
