package cluster

import (
	"fmt"
	"path/filepath"
	"strings"
)

const (
	// ServiceAccountIssuer is the issuer of the cluster's service-account
	// tokens (the "iss" claim).
	ServiceAccountIssuer = "https://kubernetes.default.svc.cluster.local"
	// ServiceCIDR is the range Service cluster IPs come from: inside the
	// range Skein's tests use, and never routed anywhere.
	ServiceCIDR = "198.19.128.0/17"
	// APIServerServiceIP is the first address of ServiceCIDR, which the API
	// server gives the "kubernetes" Service.
	APIServerServiceIP = "198.19.128.1"
)

// The components have the host to themselves, so their ports are fixed:
// etcd's on the host's loopback only, the API server's on every address.
const (
	hostName       = "kube-control-plane"
	etcdClientPort = 2379
	etcdPeerPort   = 2380
	apiServerPort  = 6443
)

// controllers are the kube-controller-manager loops a test cluster runs:
// enough for Services to get EndpointSlices from Pod status, for Deployments
// to make Pods, for namespaces and owned objects to be deleted, and for
// namespaces to get their default ServiceAccount and kube-root-ca.crt, and
// for PodDisruptionBudgets to get their status. Nothing schedules Pods or runs them: tests set spec.nodeName and the pod
// status themselves.
var controllers = []string{
	"endpointslice-controller",
	"endpoints-controller",
	"namespace-controller",
	"garbage-collector-controller",
	"deployment-controller",
	"replicaset-controller",
	"serviceaccount-controller",
	"root-ca-certificate-publisher-controller",
	"clusterrole-aggregation-controller",
	"disruption-controller",
}

// files are what Start writes into the cluster's directory.
type files struct {
	dir                         string
	caCert                      string
	apiServerCert               string
	apiServerKey                string
	serviceAccountKey           string
	serviceAccountPub           string
	adminKubeconfig             string
	controllerManagerKubeconfig string
}

func newFiles(dir string) files {
	at := func(name string) string { return filepath.Join(dir, name) }
	return files{
		dir:                         dir,
		caCert:                      at("ca.crt"),
		apiServerCert:               at("apiserver.crt"),
		apiServerKey:                at("apiserver.key"),
		serviceAccountKey:           at("sa.key"),
		serviceAccountPub:           at("sa.pub"),
		adminKubeconfig:             at("admin.kubeconfig"),
		controllerManagerKubeconfig: at("controller-manager.kubeconfig"),
	}
}

func etcdArgs(f files) []string {
	client := fmt.Sprintf("http://127.0.0.1:%d", etcdClientPort)
	peer := fmt.Sprintf("http://127.0.0.1:%d", etcdPeerPort)
	return []string{
		"--name=default",
		"--data-dir=" + filepath.Join(f.dir, "etcd"),
		"--listen-client-urls=" + client,
		"--advertise-client-urls=" + client,
		"--listen-peer-urls=" + peer,
		"--initial-advertise-peer-urls=" + peer,
		"--initial-cluster=default=" + peer,
		// The data lives as long as one test: durability buys nothing and
		// fsync costs seconds on a busy disk.
		"--unsafe-no-fsync",
		"--log-level=warn",
	}
}

func apiServerArgs(f files, hostIP string) []string {
	return []string{
		fmt.Sprintf("--etcd-servers=http://127.0.0.1:%d", etcdClientPort),
		"--bind-address=0.0.0.0",
		// The lease reconciler publishes this address as the endpoint of
		// the "kubernetes" Service, as in a real cluster.
		"--advertise-address=" + hostIP,
		fmt.Sprintf("--secure-port=%d", apiServerPort),
		"--cert-dir=" + f.dir,
		"--tls-cert-file=" + f.apiServerCert,
		"--tls-private-key-file=" + f.apiServerKey,
		"--client-ca-file=" + f.caCert,
		"--service-account-issuer=" + ServiceAccountIssuer,
		"--service-account-key-file=" + f.serviceAccountPub,
		"--service-account-signing-key-file=" + f.serviceAccountKey,
		"--authorization-mode=Node,RBAC",
		"--service-cluster-ip-range=" + ServiceCIDR,
		// The default admission plugins stay on, MutatingAdmissionWebhook and
		// ValidatingAdmissionWebhook among them.
		"--allow-privileged=true",
		"--profiling=false",
	}
}

func controllerManagerArgs(f files) []string {
	return []string{
		"--kubeconfig=" + f.controllerManagerKubeconfig,
		"--controllers=" + strings.Join(controllers, ","),
		"--root-ca-file=" + f.caCert,
		"--leader-elect=false",
		// Nothing needs its health or metrics endpoint; 0 turns it off and
		// so cannot clash with another cluster's port.
		"--secure-port=0",
	}
}
