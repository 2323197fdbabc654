package cluster

import (
	"encoding/base64"
	"fmt"
	"os"

	"k8s.io/client-go/rest"
)

// kubeconfigTemplate is a kubeconfig with one cluster, one user and one
// context, credentials inline so the file stands alone.
const kubeconfigTemplate = `apiVersion: v1
kind: Config
clusters:
- name: skein-test
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: %s
  user:
    client-certificate-data: %s
    client-key-data: %s
contexts:
- name: skein-test
  context:
    cluster: skein-test
    user: %s
current-context: skein-test
`

// writeKubeconfig writes a kubeconfig for server, trusting caPEM, that
// authenticates as user with the client certificate.
func writeKubeconfig(path, server string, caPEM []byte, user string, client keyPair) error {
	b64 := base64.StdEncoding.EncodeToString
	content := fmt.Sprintf(kubeconfigTemplate, server, b64(caPEM), user,
		b64(client.certPEM), b64(client.keyPEM), user)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		return fmt.Errorf("writing kubeconfig %s: %w", path, err)
	}
	return nil
}

// restConfig is the client-go equivalent of the kubeconfig.
func restConfig(server string, caPEM []byte, client keyPair) *rest.Config {
	return &rest.Config{
		Host: server,
		TLSClientConfig: rest.TLSClientConfig{
			CAData:   caPEM,
			CertData: client.certPEM,
			KeyData:  client.keyPEM,
		},
		// Tests create objects in bursts; client-go's default of 5 QPS would
		// make them wait on the client, not the server.
		QPS:   100,
		Burst: 200,
	}
}
