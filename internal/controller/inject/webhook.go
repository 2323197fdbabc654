package inject

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// NamespaceLister reads a namespace from a cache an informer keeps; a
// client-go NamespaceLister is one. The webhook never asks the API server
// per pod.
type NamespaceLister interface {
	Get(name string) (*corev1.Namespace, error)
}

// MaxReviewBytes bounds a request body, as the API server bounds the
// admission requests it accepts (1 MiB by default for a pod's review is far
// above any real pod); a larger body is answered 413 unread.
const MaxReviewBytes = 1 << 20

// namespaceWait is how long a review waits for a namespace the cache does
// not hold yet (created a moment ago) before it denies the pod; a pod's
// controller creates it again.
const namespaceWait = time.Second

// NewWebhook returns the mutating admission webhook for pods: it answers an
// admission.k8s.io/v1 AdmissionReview with a JSON Patch made by Inject.
// Pods that need nothing are allowed unchanged. A pod that asks for
// injection which cannot be done (a bad annotation) is denied with the
// reason, rather than started outside the mesh.
func NewWebhook(cfg Config, namespaces NamespaceLister, log *slog.Logger) http.Handler {
	return &webhook{cfg: cfg, namespaces: namespaces, log: log}
}

type webhook struct {
	cfg        Config
	namespaces NamespaceLister
	log        *slog.Logger
}

func (h *webhook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST an AdmissionReview", http.StatusMethodNotAllowed)
		return
	}
	if r.ContentLength > MaxReviewBytes {
		http.Error(w, fmt.Sprintf("request body over %d bytes", MaxReviewBytes), http.StatusRequestEntityTooLarge)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxReviewBytes))
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		http.Error(w, fmt.Sprintf("request body over %d bytes", MaxReviewBytes), http.StatusRequestEntityTooLarge)
		return
	case err != nil:
		http.Error(w, "reading request: "+err.Error(), http.StatusBadRequest)
		return
	}
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &review); err != nil || review.Request == nil {
		http.Error(w, fmt.Sprintf("not an AdmissionReview with a request: %v", err), http.StatusBadRequest)
		return
	}
	response := h.review(r.Context(), review.Request)
	response.UID = review.Request.UID
	out := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Response: response,
	}
	w.Header().Set("Content-Type", "application/json")
	if err := json.NewEncoder(w).Encode(out); err != nil {
		h.log.Warn("writing admission response", "err", err)
	}
}

func (h *webhook) review(ctx context.Context, req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	allow := &admissionv1.AdmissionResponse{Allowed: true}
	if req.Kind.Group != "" || req.Kind.Kind != "Pod" || req.Operation != admissionv1.Create || req.SubResource != "" {
		return allow
	}
	var original corev1.Pod
	if err := json.Unmarshal(req.Object.Raw, &original); err != nil {
		return deny(http.StatusBadRequest, fmt.Sprintf("decoding pod: %v", err))
	}
	pod := original.DeepCopy()
	if pod.Namespace == "" {
		// Pods made by controllers arrive without one; the request has it.
		pod.Namespace = req.Namespace
	}
	log := h.log.With("namespace", pod.Namespace, "pod", podName(pod))
	ns, err := h.namespaceIfNeeded(ctx, pod)
	if err != nil {
		log.Warn("reading the pod's namespace", "err", err)
		return deny(http.StatusServiceUnavailable, fmt.Sprintf("skein injector: reading namespace %s to see whether it asks for injection: %v; try again", pod.Namespace, err))
	}
	patched, injected, err := Inject(pod, ns, h.cfg)
	if err != nil {
		log.Info("refusing pod", "err", err)
		return deny(http.StatusUnprocessableEntity, "skein injector: "+err.Error())
	}
	if !injected {
		return allow
	}
	ops, err := Patch(pod, patched)
	if err != nil {
		return deny(http.StatusInternalServerError, "skein injector: "+err.Error())
	}
	patch, err := json.Marshal(ops)
	if err != nil {
		return deny(http.StatusInternalServerError, "skein injector: encoding patch: "+err.Error())
	}
	log.Info("injected proxy", "serviceAccount", serviceAccountName(pod))
	jsonPatch := admissionv1.PatchTypeJSONPatch
	return &admissionv1.AdmissionResponse{Allowed: true, Patch: patch, PatchType: &jsonPatch}
}

// namespaceIfNeeded reads the pod's namespace from the cache only when the
// pod itself does not say whether it wants the proxy. A namespace the
// cache does not hold yet is waited for, for namespaceWait at most.
func (h *webhook) namespaceIfNeeded(ctx context.Context, pod *corev1.Pod) (*corev1.Namespace, error) {
	if _, decided := pod.Annotations[AnnotationInject]; decided || h.namespaces == nil {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(ctx, namespaceWait)
	defer cancel()
	for {
		ns, err := h.namespaces.Get(pod.Namespace)
		if !apierrors.IsNotFound(err) {
			return ns, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("namespace %s is not in the injector's cache yet", pod.Namespace)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func deny(code int32, message string) *admissionv1.AdmissionResponse {
	return &admissionv1.AdmissionResponse{
		Allowed: false,
		Result:  &metav1.Status{Status: metav1.StatusFailure, Code: code, Message: message},
	}
}
