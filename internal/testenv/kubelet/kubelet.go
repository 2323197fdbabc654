// Package kubelet is a stand-in kubelet for tests against the test cluster
// (internal/testenv/cluster): it registers one Node, binds unscheduled pods
// to it (there is no scheduler), and runs each of the node's pods for real
// in its own test host (internal/netns), reporting pod IP and readiness so
// that the real endpoint-slice controller publishes the pods. It also plays
// kube-proxy and the cluster DNS: Service cluster IPs are DNATed in the
// network's hub to ready endpoints, and every pod's /etc/hosts names every
// Service (NAME.NAMESPACE.svc.cluster.local).
//
// It is not a container runtime. An image names a binary on this machine
// (Config.Images), and all pods share the machine's filesystem, except that
// each container runs in a mount namespace of its own where its volumes are
// bind-mounted at their mount paths. A volume is a directory
// TokenDir/<pod-uid>/<volume>; a missing mount point is created on the
// machine and removed when the kubelet stops. Volumes: emptyDir, Secret,
// ConfigMap, downward API (name, namespace, uid) and projected ones of
// these and of service-account tokens, which are requested through the
// TokenRequest API and refreshed at 80% of their life. The API server's
// own projected volume (kube-api-access-*) and KUBERNETES_SERVICE_HOST and
// _PORT let client-go's in-cluster configuration work.
//
// Supported: init containers in order (restartPolicy Always makes a native
// sidecar: started, awaited until ready, kept running), containers, args,
// env with $(VAR) references and fieldRefs, runAsUser/runAsGroup with added
// capabilities, fsGroup on volume files, httpGet and tcpSocket startup,
// readiness and liveness probes and postStart hooks, sent from the node
// (the network's hub, the Node's address) as a kubelet sends them, so that
// they pass through a meshed pod's inbound proxy (see probe.go), and a
// deleted pod's containers stopped in a kubelet's order (SIGTERM to the
// regular containers, then to the native sidecars, last started first,
// each once those before have exited; SIGKILL 5 s after a SIGTERM). Not
// supported: restarts (a container that exits, or that a liveness or
// startup probe kills, stays terminated), resources, exec and gRPC probes
// (treated as passing), subPaths that name files. For tests only.
package kubelet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/skeinmesh/skein/internal/netns"
)

// Config says which node the kubelet plays and what it runs pods with.
type Config struct {
	Client   kubernetes.Interface
	NodeName string
	// Network is where each pod gets its test host.
	Network *netns.Network
	// Images maps a container image name to the path of the binary that
	// runs for it (its entrypoint) with the container's args. A container
	// that sets a command runs the binary named by command[0] from the same
	// directory, with command[1:] followed by args.
	Images map[string]string
	// TokenDir holds each pod's volumes as TokenDir/<pod-uid>/<volume> and
	// the containers' logs as TokenDir/<pod-uid>/<container>.log.
	TokenDir string
	Log      *slog.Logger
}

// Validate names the first missing field.
func (c *Config) Validate() error {
	switch {
	case c.Client == nil:
		return errors.New("kubelet config: Client is required")
	case c.NodeName == "":
		return errors.New("kubelet config: NodeName is required")
	case c.Network == nil:
		return errors.New("kubelet config: Network is required")
	case c.TokenDir == "":
		return errors.New("kubelet config: TokenDir is required")
	}
	return nil
}

// defaultScheduler is the schedulerName of pods that ask for no particular
// scheduler; those are the ones the kubelet binds to its node.
const defaultScheduler = "default-scheduler"

// Run registers the node and runs its pods until ctx ends; then it stops
// every pod's processes and removes their hosts (the pod objects stay).
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	cfg.Log = cfg.Log.With("node", cfg.NodeName)
	if err := os.MkdirAll(cfg.TokenDir, 0o755); err != nil {
		return fmt.Errorf("creating token directory: %w", err)
	}
	if err := registerNode(ctx, cfg.Client, cfg.NodeName); err != nil {
		return err
	}
	k := &kubelet{
		cfg:         cfg,
		ctx:         ctx,
		services:    newServiceProxy(cfg),
		mountPoints: &mountPoints{log: cfg.Log},
		workers:     map[types.UID]*podWorker{},
	}
	if err := k.services.start(ctx); err != nil {
		return err
	}
	var proxy sync.WaitGroup
	proxy.Go(func() { k.services.run(ctx) })
	defer proxy.Wait()
	defer k.mountPoints.removeAll()
	defer k.wg.Wait()

	unscheduled := podInformer(cfg.Client, fields.OneTermEqualSelector("spec.nodeName", ""))
	unscheduled.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { k.bind(obj) },
		UpdateFunc: func(_, obj any) { k.bind(obj) },
	})
	mine := podInformer(cfg.Client, fields.OneTermEqualSelector("spec.nodeName", cfg.NodeName))
	mine.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { k.sync(obj) },
		UpdateFunc: func(_, obj any) { k.sync(obj) },
		DeleteFunc: k.forget,
	})
	var informers sync.WaitGroup
	for _, inf := range []cache.SharedIndexInformer{unscheduled, mine} {
		informers.Go(func() { inf.RunWithContext(ctx) })
	}
	cfg.Log.Info("kubelet running")
	<-ctx.Done()
	informers.Wait()
	return nil
}

func podInformer(client kubernetes.Interface, selector fields.Selector) cache.SharedIndexInformer {
	lw := cache.NewListWatchFromClient(client.CoreV1().RESTClient(), "pods", metav1.NamespaceAll, selector)
	return cache.NewSharedIndexInformer(lw, &corev1.Pod{}, 0, cache.Indexers{})
}

// kubelet keeps one worker per pod on its node.
type kubelet struct {
	cfg         Config
	ctx         context.Context // Run's: every worker's parent
	wg          sync.WaitGroup  // the workers
	services    *serviceProxy   // nil in unit tests
	mountPoints *mountPoints

	mu      sync.Mutex
	workers map[types.UID]*podWorker
}

// bind places an unscheduled pod on the kubelet's node.
func (k *kubelet) bind(obj any) {
	pod, ok := obj.(*corev1.Pod)
	if !ok || pod.Spec.NodeName != "" || pod.DeletionTimestamp != nil {
		return
	}
	if s := pod.Spec.SchedulerName; s != "" && s != defaultScheduler {
		return
	}
	err := k.cfg.Client.CoreV1().Pods(pod.Namespace).Bind(k.ctx, &corev1.Binding{
		ObjectMeta: metav1.ObjectMeta{Name: pod.Name, Namespace: pod.Namespace, UID: pod.UID},
		Target:     corev1.ObjectReference{Kind: "Node", Name: k.cfg.NodeName},
	}, metav1.CreateOptions{})
	switch {
	case err == nil:
		k.cfg.Log.Debug("pod bound", "pod", pod.Namespace+"/"+pod.Name)
	case apierrors.IsConflict(err) || apierrors.IsNotFound(err) || k.ctx.Err() != nil:
		// Already bound, or gone: the informers will tell.
	default:
		k.cfg.Log.Warn("binding pod", "pod", pod.Namespace+"/"+pod.Name, "err", err)
	}
}

// sync starts a worker for a new pod and stops the worker of a pod being
// deleted.
func (k *kubelet) sync(obj any) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	if pod.DeletionTimestamp != nil {
		k.forget(pod)
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if _, running := k.workers[pod.UID]; running || k.ctx.Err() != nil {
		return
	}
	w := newPodWorker(k, pod)
	k.workers[pod.UID] = w
	k.wg.Go(w.run)
}

// forget stops the worker of a deleted pod; the worker then deletes what
// is left of the pod object.
func (k *kubelet) forget(obj any) {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	k.mu.Lock()
	w := k.workers[pod.UID]
	delete(k.workers, pod.UID)
	k.mu.Unlock()
	if w != nil {
		w.stop(errPodDeleted)
	}
}
