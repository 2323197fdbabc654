package dashboard

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"
	"k8s.io/streaming/pkg/httpstream"
)

// ControllerPod picks the controller pod to forward to: a running, ready
// pod that selector selects in namespace, the first by name.
func ControllerPod(ctx context.Context, client kubernetes.Interface, namespace string, selector map[string]string) (string, error) {
	pods, err := client.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: labels.SelectorFromSet(selector).String()})
	if err != nil {
		return "", fmt.Errorf("listing the controller's pods in %s: %w", namespace, err)
	}
	var ready []string
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning && podReady(p) {
			ready = append(ready, p.Name)
		}
	}
	if len(ready) == 0 {
		return "", fmt.Errorf("no ready controller pod (%s) in namespace %s: is Skein installed there? (skein check)",
			labels.SelectorFromSet(selector), namespace)
	}
	slices.Sort(ready)
	return ready[0], nil
}

func podReady(p corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// PortForward forwards a free port on 127.0.0.1 to port of pod in
// namespace through the API server, as kubectl port-forward does
// (WebSockets, falling back to SPDY), until ctx ends. It returns the
// local address once the forward listens, and a channel closed when the
// forward has stopped.
func PortForward(ctx context.Context, config *rest.Config, namespace, pod string, port int) (string, <-chan error, error) {
	client, err := kubernetes.NewForConfig(config)
	if err != nil {
		return "", nil, fmt.Errorf("port-forward: %w", err)
	}
	target := client.CoreV1().RESTClient().Post().Resource("pods").Namespace(namespace).Name(pod).SubResource("portforward").URL()
	transport, upgrader, err := spdy.RoundTripperFor(config)
	if err != nil {
		return "", nil, fmt.Errorf("port-forward: %w", err)
	}
	dialer := spdy.NewDialerForStreaming(upgrader, &http.Client{Transport: transport}, http.MethodPost, target)
	if ws, err := portforward.NewSPDYOverWebsocketDialerForStreaming(target, config); err == nil {
		dialer = portforward.NewFallbackDialerForStreaming(ws, dialer, func(err error) bool {
			return httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err)
		})
	}
	ready := make(chan struct{})
	errOut := &lockedBuffer{}
	fw, err := portforward.NewOnAddressesForStreamingWithContext(ctx, dialer, []string{"127.0.0.1"}, []string{fmt.Sprintf("0:%d", port)}, ready, io.Discard, errOut)
	if err != nil {
		return "", nil, fmt.Errorf("port-forward: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- fw.ForwardPorts() }()
	select {
	case <-ready:
	case err := <-done:
		return "", nil, fmt.Errorf("port-forward to %s/%s:%d: %w %s", namespace, pod, port, err, strings.TrimSpace(errOut.String()))
	case <-ctx.Done():
		return "", nil, ctx.Err()
	}
	ports, err := fw.GetPorts()
	if err != nil || len(ports) != 1 {
		fw.Close()
		return "", nil, errors.Join(errors.New("port-forward: no local port"), err)
	}
	return fmt.Sprintf("127.0.0.1:%d", ports[0].Local), done, nil
}

// lockedBuffer collects the forwarder's error output, written from its
// goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.buf.Len() > 4096 {
		return len(p), nil
	}
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
