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
	// apiServerServiceIP is the first address of ServiceCIDR, which the API
	// server gives the "kubernetes" Service.
	apiServerServiceIP = "198.19.128.1"
)

// controllers are the kube-controller-manager loops a test cluster runs:
// enough for Services to get EndpointSlices from Pod status, for Deployments
// to make Pods, for namespaces and owned objects to be deleted, and for
// namespaces to get their default ServiceAccount and kube-root-ca.crt.
// Nothing schedules Pods or runs them: tests set spec.nodeName and the pod
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
}

// ports are the loopback ports the components listen on.
type ports struct {
	etcdClient, etcdPeer, apiServer int
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

func etcdArgs(f files, p ports) []string {
	client := fmt.Sprintf("http://127.0.0.1:%d", p.etcdClient)
	peer := fmt.Sprintf("http://127.0.0.1:%d", p.etcdPeer)
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

func apiServerArgs(f files, p ports) []string {
	return []string{
		fmt.Sprintf("--etcd-servers=http://127.0.0.1:%d", p.etcdClient),
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		fmt.Sprintf("--secure-port=%d", p.apiServer),
		"--cert-dir=" + f.dir,
		"--tls-cert-file=" + f.apiServerCert,
		"--tls-private-key-file=" + f.apiServerKey,
		"--client-ca-file=" + f.caCert,
		"--service-account-issuer=" + ServiceAccountIssuer,
		"--service-account-key-file=" + f.serviceAccountPub,
		"--service-account-signing-key-file=" + f.serviceAccountKey,
		"--authorization-mode=Node,RBAC",
		"--service-cluster-ip-range=" + ServiceCIDR,
		// The default reconciler publishes the advertise address as the
		// endpoint of the "kubernetes" Service and refuses loopback.
		"--endpoint-reconciler-type=none",
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
