package inject

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// namespaces is a NamespaceLister over a fixed set.
type namespaces map[string]*corev1.Namespace

func (n namespaces) Get(name string) (*corev1.Namespace, error) {
	if ns, ok := n[name]; ok {
		return ns, nil
	}
	return nil, apierrors.NewNotFound(corev1.Resource("namespaces"), name)
}

func startWebhook(t *testing.T, cfg Config) *httptest.Server {
	t.Helper()
	nss := namespaces{"demo": namespace(InjectEnabled), "plain": {ObjectMeta: metav1.ObjectMeta{Name: "plain"}}}
	srv := httptest.NewTLSServer(NewWebhook(cfg, nss, slog.New(slog.NewTextHandler(io.Discard, nil))))
	t.Cleanup(srv.Close)
	return srv
}

// review sends pod for admission in namespace ns, as the API server does
// (pods made by a ReplicaSet carry no namespace of their own).
func review(t *testing.T, srv *httptest.Server, ns string, pod *corev1.Pod) *admissionv1.AdmissionResponse {
	t.Helper()
	raw, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	in := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID:       "3f1e0c9a-0000-4000-8000-000000000001",
			Kind:      metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
			Namespace: ns,
			Operation: admissionv1.Create,
			Object:    runtime.RawExtension{Raw: raw},
		},
	}
	body, _ := json.Marshal(in)
	resp, err := srv.Client().Post(srv.URL, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("webhook answered %s", resp.Status)
	}
	var out admissionv1.AdmissionReview
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	if out.APIVersion != "admission.k8s.io/v1" || out.Kind != "AdmissionReview" || out.Response == nil {
		t.Fatalf("answer is not an AdmissionReview response: %+v", out)
	}
	if out.Response.UID != in.Request.UID {
		t.Fatalf("response UID %q, want the request's %q", out.Response.UID, in.Request.UID)
	}
	return out.Response
}

func TestWebhookPatchGivesInjectsPod(t *testing.T) {
	cfg := testConfig()
	srv := startWebhook(t, cfg)
	pod := testPod(nil)
	pod.Namespace = "" // as a ReplicaSet's pods arrive
	pod.Spec.InitContainers = []corev1.Container{{Name: "migrate", Image: "migrate:1"}}

	resp := review(t, srv, "demo", pod)
	if !resp.Allowed || resp.PatchType == nil || *resp.PatchType != admissionv1.PatchTypeJSONPatch {
		t.Fatalf("response = %+v, want allowed with a JSON patch", resp)
	}
	patch, err := jsonpatch.DecodePatch(resp.Patch)
	if err != nil {
		t.Fatalf("patch %s: %v", resp.Patch, err)
	}
	original, _ := json.Marshal(pod)
	patchedJSON, err := patch.Apply(original)
	if err != nil {
		t.Fatalf("applying patch %s: %v", resp.Patch, err)
	}
	var got corev1.Pod
	if err := json.Unmarshal(patchedJSON, &got); err != nil {
		t.Fatal(err)
	}

	withNamespace := pod.DeepCopy()
	withNamespace.Namespace = "demo"
	want, injected, err := Inject(withNamespace, namespace(InjectEnabled), cfg)
	if err != nil || !injected {
		t.Fatalf("Inject = %v, %v", injected, err)
	}
	want.Namespace = "" // the patch leaves the pod's own fields alone
	if !reflect.DeepEqual(&got, want) {
		g, _ := json.MarshalIndent(&got, "", " ")
		w, _ := json.MarshalIndent(want, "", " ")
		t.Fatalf("patched pod differs from Inject's\n got: %s\nwant: %s", g, w)
	}
	if id := envOf(got.Spec.InitContainers[1])["SKEIN_PROXY_IDENTITY"]; id != "spiffe://mesh.test/ns/demo/sa/web-sa" {
		t.Errorf("identity = %q: the namespace must come from the admission request", id)
	}
}

func TestWebhookAllowsPodsThatNeedNothing(t *testing.T) {
	srv := startWebhook(t, testConfig())
	inPlain := testPod(nil)
	inPlain.Namespace = "plain"
	for _, tt := range []struct {
		name, ns string
		pod      *corev1.Pod
	}{
		{"namespace without annotation", "plain", inPlain},
		{"pod disabled", "demo", testPod(map[string]string{AnnotationInject: InjectDisabled})},
		{"already injected", "demo", testPod(map[string]string{AnnotationInjected: "true"})},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp := review(t, srv, tt.ns, tt.pod)
			if !resp.Allowed || len(resp.Patch) != 0 {
				t.Fatalf("allowed = %v, patch %s; want allowed without a patch", resp.Allowed, resp.Patch)
			}
		})
	}
}

func TestWebhookDeniesPodWithBadAnnotation(t *testing.T) {
	srv := startWebhook(t, testConfig())
	pod := testPod(map[string]string{AnnotationProxyMemoryLimit: "a lot"})
	resp := review(t, srv, "demo", pod)
	if resp.Allowed {
		t.Fatal("a pod asking for injection that cannot be done was allowed")
	}
	if resp.Result == nil || !strings.Contains(resp.Result.Message, AnnotationProxyMemoryLimit) {
		t.Fatalf("result = %+v, want a message naming %s", resp.Result, AnnotationProxyMemoryLimit)
	}
}

func TestWebhookRejectsWhatIsNotAReview(t *testing.T) {
	srv := startWebhook(t, testConfig())
	resp, err := srv.Client().Post(srv.URL, "application/json", strings.NewReader(`{"kind":"Pod"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("status = %s, want 400", resp.Status)
	}
}

// A body past MaxReviewBytes is refused with 413 before it is read whole,
// whether it says its length or not; one just under it is served.
func TestWebhookBoundsTheRequestBody(t *testing.T) {
	srv := startWebhook(t, testConfig())
	post := func(body io.Reader, length int64) *http.Response {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, srv.URL, body)
		if err != nil {
			t.Fatal(err)
		}
		req.ContentLength = length
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	big := bytes.Repeat([]byte{' '}, MaxReviewBytes+1)
	if resp := post(bytes.NewReader(big), int64(len(big))); resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("%d bytes with a Content-Length: %s, want 413", len(big), resp.Status)
	}
	// Chunked: no length to refuse up front, the read stops at the limit.
	if resp := post(io.MultiReader(bytes.NewReader(big)), -1); resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("%d bytes chunked: %s, want 413", len(big), resp.Status)
	}

	pod := testPod(map[string]string{AnnotationInject: InjectEnabled, "example.com/filler": strings.Repeat("x", MaxReviewBytes-4096)})
	if resp := review(t, srv, "demo", pod); !resp.Allowed || len(resp.Patch) == 0 {
		t.Errorf("a review just under the limit: allowed %v, patch %d bytes; want it injected", resp.Allowed, len(resp.Patch))
	}
}

// A namespace the informer's cache does not hold is waited for briefly,
// then the pod is denied with the reason (its controller retries), never
// let through without the proxy its namespace may ask for.
func TestWebhookDeniesAPodWhoseNamespaceIsNotCachedYet(t *testing.T) {
	srv := startWebhook(t, testConfig())
	pod := testPod(nil)
	pod.Namespace = "brand-new"
	resp := review(t, srv, "brand-new", pod)
	if resp.Allowed || resp.Result == nil || resp.Result.Code != http.StatusServiceUnavailable ||
		!strings.Contains(resp.Result.Message, "namespace brand-new is not in the injector's cache yet") {
		t.Fatalf("allowed %v, result %+v; want a 503 denial naming the namespace", resp.Allowed, resp.Result)
	}
}
